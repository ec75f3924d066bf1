"""load_dataset: a registry name (IDX files or an archive, found or downloaded, verified), folder:PATH or csv:PATH."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lenet.data.cifar import read_archive
from lenet.data.dataset import Dataset
from lenet.data.idx import parse_idx, read_idx_bytes
from lenet.core.errors import DataError
from lenet.data.registry import (DEFAULT, ArchiveDataset, DataSpec, IdxDataset, dataset_entry, dataset_name,
                                 is_user_data, shown_name)  # fmt: skip
from lenet.data.sources import file_in, find_or_download, verified_archive, verified_digest


def load_dataset(
    name: str = DEFAULT,
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
    skip_bad: bool = False,
    channels: int | None = None,
    size: int | None = None,
) -> Dataset:
    """Find (or download), verify and decode a data set onto `device`.

    Args:
        name: a registry name (fashion-mnist, mnist, kmnist, cifar10), folder:PATH or csv:PATH.
        skip_bad: a folder's unreadable files are left out and listed in the data set's `skipped`,
            instead of refused.
        channels, size: a folder's images in grey (1) or colour (3), at side `size`; inferred from the
            folder where None. Any other data set has its own (a different one asked for is an error).
    """
    name = dataset_name(name)  # Fashion-MNIST is fashion-mnist; a bare path is refused with its folder: or csv:
    if name.startswith("folder:"):
        # Imported here: a registry data set (what lenet train reads by default) needs no image decoding.
        from lenet.data.user import FolderShape, load_folder

        return load_folder(name.partition(":")[2], skip_bad, FolderShape(channels, size)).to(device)
    if name.startswith("csv:"):
        from lenet.data.user import load_csv

        return _with_shape(load_csv(name.partition(":")[2]), channels, size).to(device)
    entry = dataset_entry(name)
    directory = find_or_download(entry, data_dir, download)
    data = _load_archive(entry, directory) if isinstance(entry, ArchiveDataset) else _load_idx(entry, directory)
    return _with_shape(data, channels, size).to(device)


def _load_idx(entry: IdxDataset, directory: Path) -> Dataset:
    tensors, hashes = {}, {}
    for key, spec in entry.files.items():
        path = file_in(directory, spec.stem)
        assert path is not None
        raw = read_idx_bytes(path)
        hashes[spec.stem] = verified_digest(path, raw, spec, entry)
        tensors[key] = parse_idx(raw, str(path))
    return Dataset.from_tensors(**tensors, source=str(directory), sha256=hashes, name=entry.name,
                                classes=entry.classes)  # fmt: skip


def _load_archive(entry: ArchiveDataset, directory: Path) -> Dataset:
    path = directory / entry.archive
    tensors = read_archive(verified_archive(path, entry), entry, str(path))
    return Dataset.from_tensors(**tensors, source=str(directory), sha256={entry.archive: entry.sha256},
                                name=entry.name, classes=entry.classes)  # fmt: skip


def _with_shape(data: Dataset, channels: int | None, size: int | None) -> Dataset:
    """The data set, once it is known to have the channels and side asked for (None: any)."""
    spec = data.spec
    if (channels or spec.channels) != spec.channels or (size or spec.image_size) != spec.image_size:
        kind = "colour" if spec.channels == 3 else "grey"
        raise DataError(f"{spec.name} has {kind} {spec.image_size}x{spec.image_size} images of its own; --channels "
                        "and --size choose how a folder's images are read")  # fmt: skip
    return data


def load_model_data(
    model: DataSpec,
    given: str | None = None,
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    own: bool = False,
) -> Dataset:
    """The data set a command runs a trained model on: `given` (the command line's --dataset),
    else the model's own when that is a registry data set.

    A checkpoint is a file from anywhere, so the data-set name in it never chooses a path on
    this machine to read (or a server to publish thumbnails of): a user's own data is read only
    when the user names it. When the data named is the one the model was trained on (the same
    path; with `own`, whatever the path, for commands that show the model's own test set), its
    digest must be the one the model recorded: a folder with one image more splits differently,
    and its test split could hold images the model trained on.
    """
    if given is None:
        if is_user_data(model.name):
            raise unnamed_data(model)
        given = model.name
    given = dataset_name(given)  # Fashion-MNIST is fashion-mnist
    same = _user_data_name(given) == model.name
    if own and not same and not (is_user_data(given) and is_user_data(model.name)):
        raise DataError(f"{given} is not the data set the model was trained on ({model.name}); "
                        "this command shows the model on its own data")  # fmt: skip
    # Any folder or CSV file named is checked, not only the one the model was trained from: a model's
    # figures are on its own test split, and another set of files would give other ones under its name.
    checked = is_user_data(given) and bool(model.sha256)
    data = load_dataset(given, data_dir, device, skip_bad=checked, **model_shape(given, model))
    if checked and data.spec.sha256 != model.sha256:
        left_out = f"; {len(data.skipped)} unreadable files left out now" if data.skipped else ""
        raise DataError(f"{given} is not the data the model was trained on: sha256 {model.sha256} then, "
                        f"{data.spec.sha256} now{left_out}; restore the data, or train on it anew (a changed data "
                        "set can put images the model trained on into its test split)")  # fmt: skip
    if data.spec.image_shape != model.image_shape:
        raise DataError(f"{given} has images of {'x'.join(map(str, data.spec.image_shape))}; the model takes "
                        f"{'x'.join(map(str, model.image_shape))}")  # fmt: skip
    if len(data.spec.classes) != len(model.classes):
        raise DataError(f"{given} has {len(data.spec.classes)} classes; the model knows {len(model.classes)}")
    return data


def model_shape(given: str, model: DataSpec) -> dict[str, int]:
    """The channels and side to read `given` in for a model: its own, for a folder (read to fit the model);
    any, for a data set of fixed images, which the caller then checks against the model's."""
    return {"channels": model.channels, "size": model.image_size} if given.startswith("folder:") else {}


def unnamed_data(model: DataSpec, why: str = "") -> DataError:
    """The error of a command that needs a model's own data, which lenet reads only when named: the exact flag
    to pass, with the path the model was trained from (printed for the user, never read)."""
    return DataError(f"the model was trained on your own data ({shown_name(model.name)}), which lenet reads only when "
                     f"the command line names it (never from a checkpoint){why}: pass --dataset {model.name}, the "
                     "path it was trained from, or where that data is now")  # fmt: skip


def _user_data_name(name: str) -> str:
    """The name load_dataset gives a data set, known before it is read: folder: and csv: paths resolved."""
    if not is_user_data(name):
        return name
    kind, path = name.split(":", 1)
    return f"{kind}:{Path(path).resolve()}"


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu", download: bool = True
) -> Dataset:
    return load_dataset(DEFAULT, data_dir, device, download)

