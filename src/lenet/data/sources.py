"""Where a registry data set's files are: the places looked in, checksums, and downloading from mirrors.

A data set's files are an IDX set's four, or an archive data set's one archive (CIFAR-10). The
places are looked in in order (the first directory holding all of them wins):
  1. the `data_dir` argument (`--data-dir`), which must exist,
  2. the directory in the environment variable LENET_DATA_DIR, which must exist,
  3. the user cache directory, $XDG_CACHE_HOME/lenet/NAME (~/.cache/lenet/NAME),
  4. /usr/share/datasets/NAME (Debian's package `dataset-fashion-mnist` for Fashion-MNIST),
  5. otherwise the missing files are downloaded from the data set's mirrors (LENET_MIRRORS
     overrides them, comma-separated) into the first of 1-3 that was given.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from lenet.core.errors import DataError
from lenet.core.files import atomic_open
from lenet.data.cifar import MAX_ARCHIVE_BYTES
from lenet.data.idx import MAX_IDX_BYTES
from lenet.data.registry import DATASETS, DEFAULT, ArchiveDataset, IdxDataset, IdxFile, RegistryEntry

SYSTEM_DIR = Path("/usr/share/datasets")  # Debian installs data sets in sub-directories here


def verified_digest(path: Path, raw: bytes, spec: IdxFile, entry: IdxDataset) -> str:
    """The SHA-256 of the decompressed bytes, once the file is known to be the published one."""
    digest = hashlib.sha256(raw).hexdigest()
    if spec.sha256 and digest == spec.sha256:
        return digest
    if spec.gz_sha256 and hashlib.sha256(path.read_bytes()).hexdigest() == spec.gz_sha256:
        return digest
    raise _not_the_known_file(path, digest, spec.sha256 or spec.gz_sha256, entry.name)


def verified_archive(path: Path, entry: ArchiveDataset) -> bytes:
    """The bytes of an archive data set's file, once they are known to be the published ones: the bytes
    checked are the bytes then parsed, so the file cannot change in between."""
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_ARCHIVE_BYTES + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(blob) > MAX_ARCHIVE_BYTES:
        raise DataError(f"{path}: over {MAX_ARCHIVE_BYTES:,} bytes; {entry.archive} is {entry.size:,}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry.sha256:
        raise _not_the_known_file(path, digest, entry.sha256, entry.name)
    return blob


def _not_the_known_file(path: Path, digest: str, known: str, name: str) -> DataError:
    return DataError(f"{path}: SHA-256 {digest[:16]}... is not the known {name} file ({known[:16]}...); "
                     "delete it and run again to fetch a good copy")  # fmt: skip


# --- where the files are --------------------------------------------------------------


def cache_dir(name: str = DEFAULT) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lenet" / name


def candidate_dirs(entry: RegistryEntry, data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places looked in, in order, each with how it was chosen. A directory the user names must exist."""
    places = []
    for label, given in (("--data-dir", data_dir), ("$LENET_DATA_DIR", os.environ.get("LENET_DATA_DIR") or None)):
        if given is not None:
            if not Path(given).is_dir():
                raise DataError(f"{label} {given}: no such directory (create it first to download {entry.name} there)")
            places.append((label, Path(given)))
    places.append(("user cache", cache_dir(entry.name)))
    places.append(("system", SYSTEM_DIR / entry.name))
    return places


def file_in(directory: Path, stem: str) -> Path | None:
    """The IDX file `stem` in `directory`, gzipped or not (the .gz first); None when neither is there."""
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


class Published(NamedTuple):
    """A file as the mirrors publish it, with what download_file checks it by."""

    filename: str
    sha256: str  # of its decompressed bytes, or ""
    gz_sha256: str  # of the gzipped file itself, or ""
    max_bytes: int  # the most its decompressed bytes may be


def missing_files(entry: RegistryEntry, directory: Path) -> list[Published]:
    """The files of `entry` that `directory` lacks (an IDX file counts gzipped or not)."""
    if isinstance(entry, ArchiveDataset):
        have = (directory / entry.archive).is_file()
        return [] if have else [Published(entry.archive, "", entry.sha256, MAX_ARCHIVE_BYTES)]
    return [Published(f"{spec.stem}.gz", spec.sha256, spec.gz_sha256, MAX_IDX_BYTES)
            for spec in entry.files.values() if file_in(directory, spec.stem) is None]  # fmt: skip


def find_or_download(entry: RegistryEntry, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    places = candidate_dirs(entry, data_dir)
    for _, directory in places:
        if not missing_files(entry, directory):
            return directory
    looked = "; ".join(f"{label}: {d}" for label, d in places)
    if not download:
        raise DataError(f"{entry.name} not found (looked in {looked}); {entry.how_to_get}")
    target = places[0][1] if places[0][0] != "user cache" else cache_dir(entry.name)
    try:
        for file in missing_files(entry, target):
            download_file(file.filename, target, file.sha256, mirrors(entry), gz_sha256=file.gz_sha256,
                          max_bytes=file.max_bytes)  # fmt: skip
    except DataError as e:
        raise DataError(f"{entry.name} not found (looked in {looked}) and {e}; {entry.how_to_get}") from None
    return target



# --- downloading ----------------------------------------------------------------------


def mirrors(entry: RegistryEntry | None = None) -> list[str]:
    env = os.environ.get("LENET_MIRRORS")
    chosen = [m.strip() for m in env.split(",") if m.strip()] if env else list((entry or DATASETS[DEFAULT]).mirrors)
    return [m if m.endswith("/") else m + "/" for m in chosen]


def download_file(
    filename: str,
    target_dir: Path,
    sha256: str,
    urls: Sequence[str],
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    gz_sha256: str = "",
    max_bytes: int = MAX_IDX_BYTES,
) -> Path:
    """Fetch a gzipped file (an IDX file, a .tar.gz archive) from the first mirror that serves the right bytes.

    The file is streamed into a temporary file beside its destination and renamed into
    place only after the SHA-256 of its decompressed content matches `sha256` (or that of
    the .gz bytes matches `gz_sha256`), so a half-finished or corrupt download never counts.
    A file that decompresses to more than `max_bytes` is refused as it arrives.
    """
    destination = Path(target_dir) / filename
    failures = {}  # each mirror once, with its last reason and how many tries it had
    for base in urls:
        for attempt in range(attempts):
            try:
                _fetch_verified(base + filename, destination, sha256, gz_sha256, max_bytes, timeout_s)
                return destination
            except (OSError, urllib.error.URLError, DataError, zlib.error, EOFError) as e:
                tries = "" if attempt == 0 else f", {attempt + 1} tries"
                failures[base + filename] = f"{base + filename}: {_reason(e)}{tries}"
                if isinstance(e, urllib.error.HTTPError) and e.code == 404:
                    break  # the mirror does not have it; retrying will not help
                if attempt + 1 < attempts:
                    time.sleep(backoff_s * 2**attempt)
    raise DataError(f"download of {filename} failed ({'; '.join(failures.values())})")


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _fetch_verified(url: str, destination: Path, sha256: str, gz_sha256: str, max_bytes: int, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "lenet"})
    digest, gz_digest = hashlib.sha256(), hashlib.sha256()
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    size = 0
    with urllib.request.urlopen(request, timeout=timeout_s) as response, atomic_open(destination) as out:
        while chunk := response.read(1 << 16):
            out.write(chunk)
            gz_digest.update(chunk)
            plain = inflate.decompress(chunk, max_bytes + 1 - size)
            size += len(plain)
            if size > max_bytes or inflate.unconsumed_tail:
                raise DataError("decompresses to too many bytes")
            digest.update(plain)
        if not inflate.eof:
            raise DataError("the connection ended before the end of the gzip stream")
        if not ((sha256 and digest.hexdigest() == sha256) or (gz_sha256 and gz_digest.hexdigest() == gz_sha256)):
            raise DataError(f"checksum mismatch (got {digest.hexdigest()[:16]}...)")

