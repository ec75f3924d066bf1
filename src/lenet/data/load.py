"""load_dataset: a registry name (IDX files found or downloaded, verified), folder:PATH or csv:PATH."""

from __future__ import annotations

import os

import torch

from lenet.data.dataset import Dataset
from lenet.data.idx import parse_idx, read_idx_bytes
from lenet.data.registry import DEFAULT, dataset_entry
from lenet.data.sources import _file_in, find_or_download, verified_digest


def load_dataset(
    name: str = DEFAULT,
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Find (or download), verify and decode a data set onto `device`: a registry name
    (fashion-mnist, mnist, kmnist), folder:PATH or csv:PATH."""
    if name.startswith(("folder:", "csv:")):
        # Imported here: a registry data set (what lenet train reads by default) needs no image decoding.
        from lenet.data.user import load_csv, load_folder

        kind, _, path = name.partition(":")
        return (load_folder(path) if kind == "folder" else load_csv(path)).to(device)
    entry = dataset_entry(name)
    directory = find_or_download(entry, data_dir, download)
    tensors, hashes = {}, {}
    for key, spec in entry.files.items():
        path = _file_in(directory, spec.stem)
        assert path is not None
        raw = read_idx_bytes(path)
        hashes[spec.stem] = verified_digest(path, raw, spec, entry)
        tensors[key] = parse_idx(raw, str(path))
    return Dataset.from_tensors(**tensors, source=str(directory), sha256=hashes, name=entry.name,
                                classes=entry.classes).to(device)  # fmt: skip


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu", download: bool = True
) -> Dataset:
    return load_dataset(DEFAULT, data_dir, device, download)

