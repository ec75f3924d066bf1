"""The one exception type the project raises for a user's mistake or a bad file.

The CLI turns it into a single line on stderr and a non-zero exit; library users catch it.
"""


class LenetError(Exception):
    """A problem the user can fix: bad input, a missing or corrupt file, a wrong flag."""


class DataError(LenetError):
    """Fashion-MNIST files missing, unreadable, truncated or not the known files."""


class CheckpointError(LenetError):
    """A run or checkpoint that is missing, corrupt or of another model."""


class ImageError(LenetError):
    """An image file that cannot be read or decoded."""


class ExportError(LenetError):
    """An export that cannot be made, or whose file does not reproduce the PyTorch model."""


class ServeError(LenetError):
    """A server that cannot start: a missing extra, a port in use, a bad address."""
