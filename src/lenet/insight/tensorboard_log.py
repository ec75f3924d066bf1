"""Optional TensorBoard logging for `lenet train --tensorboard`: scalars per epoch, the report's images.

tensorboard is not a dependency (`pip install 'lenet[tensorboard]'`); asking for it without the
package fails before training starts, in one line. Logs go to RUN/tensorboard, so
`tensorboard --logdir runs` shows every run side by side.
"""

from __future__ import annotations

from dataclasses import asdict

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from lenet.core.errors import LenetError
from lenet.runs.metrics import EpochMetrics, by_split

LOG_DIR = "tensorboard"
_SPLITS = ("train", "val", "test")


class TensorBoardLog:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LenetError("--tensorboard needs the tensorboard package: pip install 'lenet[tensorboard]'") from None
        self._make_writer = SummaryWriter
        self.log_dir = Path(run_dir) / LOG_DIR
        self._writer = None

    @property
    def writer(self):
        # Opened on first use: the run directory must not exist before training creates it.
        if self._writer is None:
            self._writer = self._make_writer(log_dir=str(self.log_dir))
        return self._writer

    def log_epoch(self, row: EpochMetrics) -> None:
        for name, value in by_split(asdict(row)).items():
            if name != "epoch" and not math.isnan(value):  # NaN: an epoch --eval-every did not judge
                self.writer.add_scalar(scalar_tag(name), value, row.epoch)
        self.writer.flush()  # one epoch takes seconds: show it now, not at the end

    def log_images(self, figures: dict[str, bytes], step: int) -> None:
        for name, png in figures.items():
            pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            self.writer.add_image(f"report/{name}", pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def scalar_tag(column: str) -> str:
    """metrics.csv column -> TensorBoard tag: train_loss -> loss/train, so splits share a chart."""
    split, _, metric = column.partition("_")
    return f"{metric}/{split}" if split in _SPLITS and metric else column
