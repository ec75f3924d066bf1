"""The one exception type the project raises for a user's mistake or a bad file.

The CLI turns it into a single line on stderr and a non-zero exit; library users catch it.
"""

from lenet.core.text import clip


class LenetError(Exception):
    """A problem the user can fix: bad input, a missing or corrupt file, a wrong flag."""


class UsageError(LenetError):
    """A bad choice made on the command line or in a file that stands for it (a SPACE, a recipe file): an
    unknown data set, recipe or model, flags that do not go together. The CLI exits 2 for it, as argparse does
    for its own usage errors; 1 is for everything else."""


class DataError(LenetError):
    """Fashion-MNIST files missing, unreadable, truncated or not the known files."""


class UnknownDataset(UsageError, DataError):
    """A data-set name that is neither a registry entry nor folder:PATH or csv:PATH (perhaps a path without them)."""


class CheckpointError(LenetError):
    """A run or checkpoint that is missing, corrupt or of another model."""


class RunError(LenetError):
    """A run directory that is missing, incomplete, or holds a file lenet cannot read."""


class ImageError(LenetError):
    """An image file that cannot be read or decoded. `code` says why in a word a program can match on
    (the server's error replies carry it beside the English message): not_an_image, damaged_image,
    empty_file, empty_image, image_too_large, no_such_file, not_a_file, no_image."""

    def __init__(self, message: str, code: str = "not_an_image"):
        super().__init__(message)
        self.code = code


class Interrupted(LenetError):
    """Ctrl-C during training; the epochs completed before it are saved."""

    def __init__(self, epoch: int, resumable_run=None, finished_run=None):
        if finished_run is not None:  # Ctrl-C after the last write: nothing is left to do
            super().__init__(f"interrupted after the run ended; {finished_run} is complete")
            return
        if resumable_run is not None:
            how = f"the completed epochs are saved; continue with: lenet train --resume {resumable_run}"
        else:
            how = "no epoch was completed, so there is nothing to resume"
        super().__init__(f"interrupted in epoch {epoch}; {how}")


class ExportError(LenetError):
    """An export that cannot be made, or whose file does not reproduce the PyTorch model."""


class ServeError(LenetError):
    """A server that cannot start: a missing extra, a port in use, a bad address."""


def short_repr(value: object, limit: int = 40) -> str:
    """A value from a file, fit for a one-line message: its repr clipped (core.text.clip), and never
    failing (a huge int has no repr)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a huge number"
    return clip(repr(value), limit)
