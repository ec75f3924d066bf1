"""The download path, against a real HTTP server on loopback."""

import gzip
import hashlib
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from conftest import idx_bytes
from lenet.data.sources import SYSTEM_DIR, candidate_dirs, download_file
from lenet.data.load import load_fashion_mnist
from lenet.data.registry import DATASETS
from lenet.core.errors import DataError

FILES = DATASETS["fashion-mnist"].files


class Files(BaseHTTPRequestHandler):
    routes: dict = {}  # path -> (behaviour, body)
    hits: list = []

    def do_GET(self):
        self.hits.append(self.path)
        behaviour, body = self.routes.get(self.path, ("missing", b""))
        if behaviour == "missing":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "drop":  # promise the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Files.routes, Files.hits = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _payload():
    plain = idx_bytes(torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8))
    return gzip.compress(plain), hashlib.sha256(plain).hexdigest()


def test_good_file_lands_whole(server, tmp_path):
    _, url = server
    blob, sha = _payload()
    Files.routes["/a/x.gz"] = ("ok", blob)
    path = download_file("x.gz", tmp_path, sha, [url + "/a/"], backoff_s=0)
    assert path.read_bytes() == blob
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gz"]  # no temporary file left


def test_corrupt_file_never_counts_and_the_next_mirror_is_tried(server, tmp_path):
    _, url = server
    blob, sha = _payload()
    bad = gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100)
    Files.routes["/bad/x.gz"] = ("ok", bad)
    Files.routes["/good/x.gz"] = ("ok", blob)
    path = download_file("x.gz", tmp_path, sha, [url + "/bad/", url + "/good/"], attempts=2, backoff_s=0)
    assert path.read_bytes() == blob
    assert Files.hits.count("/bad/x.gz") == 2  # retried, then moved on


def test_dropped_connection_leaves_nothing(server, tmp_path):
    _, url = server
    blob, sha = _payload()
    Files.routes["/a/x.gz"] = ("drop", blob)
    with pytest.raises(DataError, match="download of x.gz failed"):
        download_file("x.gz", tmp_path, sha, [url + "/a/"], attempts=3, backoff_s=0)
    assert Files.hits.count("/a/x.gz") == 3
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_not_retried(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match="HTTP 404"):
        download_file("x.gz", tmp_path, "0" * 64, [url + "/"], attempts=3, backoff_s=0)
    assert len(Files.hits) == 1


def test_full_download_of_the_real_set(server, tmp_path, monkeypatch, fmnist):
    """With no local copy, load_fashion_mnist fetches the four files into the cache."""
    _, url = server
    for spec in FILES.values():
        Files.routes[f"/m/{spec.stem}.gz"] = ("ok", (Path(fmnist.source) / f"{spec.stem}.gz").read_bytes())
    monkeypatch.setattr("lenet.data.sources.SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.setenv("LENET_MIRRORS", url + "/m")
    data = load_fashion_mnist()
    assert Path(data.source) == tmp_path / "cache" / "lenet" / "fashion-mnist"
    assert torch.equal(data.test_labels, fmnist.test_labels)
    assert data.sha256 == fmnist.sha256


def test_offline_without_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr("lenet.data.sources.SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.setenv("LENET_MIRRORS", "http://127.0.0.1:9/")  # the discard port: refused
    monkeypatch.setattr("lenet.data.sources.time.sleep", lambda s: None)
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError) as info:
        load_fashion_mnist(tmp_path / "mine")
    message = str(info.value)
    assert "--data-dir" in message and "user cache" in message and "no-system-copy" in message
    assert "apt-get install dataset-fashion-mnist" in message and "\n" not in message
    assert not (tmp_path / "mine").exists() or not any((tmp_path / "mine").iterdir())


def test_corrupt_local_file_is_named(tmp_path, fmnist):
    for spec in FILES.values():
        shutil.copy(Path(fmnist.source) / f"{spec.stem}.gz", tmp_path)
    target = tmp_path / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes())[:-1] + b"\x03"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        load_fashion_mnist(tmp_path, download=False)


@pytest.mark.parametrize("env", [False, True])
def test_a_data_directory_the_user_names_must_exist(tmp_path, monkeypatch, env):
    """Before, a missing --data-dir was silently passed over and the data came from elsewhere."""
    missing = tmp_path / "nonexistent"
    if env:
        monkeypatch.setenv("LENET_DATA_DIR", str(missing))
    with pytest.raises(DataError, match=f"{'LENET_DATA_DIR' if env else '--data-dir'} {missing}: no such directory"):
        load_fashion_mnist(None if env else missing, download=False)
    assert not missing.exists()


def _no_flag_env_or_cache(monkeypatch, tmp_path, server_url: str) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    monkeypatch.setenv("LENET_MIRRORS", server_url + "/m")  # anything downloaded would show in Files.hits


def test_the_system_copy_is_read_where_there_is_no_other(server, tmp_path, monkeypatch, fmnist):
    _, url = server
    system = tmp_path / "system" / "fashion-mnist"  # SYSTEM_DIR holds a directory per data set
    system.mkdir(parents=True)
    for spec in FILES.values():
        shutil.copy(Path(fmnist.source) / f"{spec.stem}.gz", system)
    monkeypatch.setattr("lenet.data.sources.SYSTEM_DIR", tmp_path / "system")
    _no_flag_env_or_cache(monkeypatch, tmp_path, url)
    assert Path(load_fashion_mnist().source) == system and Files.hits == []
    # A copy in the user cache comes first: the system directory is the last place looked in.
    shutil.copytree(system, tmp_path / "cache" / "lenet" / "fashion-mnist")
    assert Path(load_fashion_mnist().source) == tmp_path / "cache" / "lenet" / "fashion-mnist"


def test_system_dir_is_where_the_debian_package_puts_the_files():
    listing = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True) \
        if shutil.which("dpkg") else None  # fmt: skip
    if listing is None or listing.returncode != 0:
        pytest.skip("Debian's dataset-fashion-mnist package is not installed here")
    files = {Path(line) for line in listing.stdout.splitlines()}
    assert {SYSTEM_DIR / "fashion-mnist" / f"{spec.stem}.gz" for spec in FILES.values()} <= files
