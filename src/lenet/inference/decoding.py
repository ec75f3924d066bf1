"""The server's decoding of uploads: a pixel budget per request, worker threads, a light and a heavy lane."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from lenet.core.errors import LenetError
from lenet.core.text import plural
from lenet.data.images import MAX_PIXELS, decode_image, image_size
from lenet.data.registry import IMAGE_SIZE
from lenet.inference.settings import DEFAULTS

# --- decoding ---------------------------------------------------------------------------------


class PixelBudgetError(LenetError):
    """A request whose images hold more pixels in all than the server decodes for one request."""


@dataclass
class Decoder:
    """Decodes a request's uploads on worker threads, within a pixel budget, in two lanes.

    Each request first takes a light slot: its images' headers are read (no pixel decoded), their
    pixels summed and held against `budget` (PixelBudgetError); when they hold at most `light_pixels`
    the images are decoded in the same step. A request of larger images gives its light slot back
    and waits for a heavy slot. Each lane is a semaphore over a thread pool of its own, as many threads
    as slots, so a heavy decode never holds up a light one, and at most `heavy` cores
    ever decode large images, however many clients send them. The heavy threads run at a lower
    priority (`niceness`), so those cores go to the event loop and the forward passes first.

    Each image is decoded with an explicit bound (`decode_image(..., max_pixels)`): nothing here
    changes Pillow's process-wide MAX_IMAGE_PIXELS or the warning filters from a thread.
    """

    budget: int = DEFAULTS.max_request_pixels
    light_pixels: int = DEFAULTS.light_pixels
    light: int = DEFAULTS.light_decodes
    heavy: int = DEFAULTS.heavy_decodes
    niceness: int = DEFAULTS.heavy_niceness
    channels: int = 1  # the model's input, which every image is decoded to: 1 grey, 3 RGB
    side: int = IMAGE_SIZE
    light_requests: int = 0  # requests decoded in each lane so far
    heavy_requests: int = 0
    refused: int = 0  # requests over the budget
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _heavy_executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _light_slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _heavy_slots: asyncio.Semaphore | None = field(default=None, repr=False)

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self.light, thread_name_prefix="lenet-decode")
        self._heavy_executor = ThreadPoolExecutor(self.heavy, thread_name_prefix="lenet-decode-heavy",
                                                  initializer=_lower_priority, initargs=(self.niceness,))  # fmt: skip
        self._light_slots, self._heavy_slots = asyncio.Semaphore(self.light), asyncio.Semaphore(self.heavy)

    def stop(self) -> None:
        for executor in (self._executor, self._heavy_executor):
            if executor is not None:
                executor.shutdown(wait=True)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Any light work (JSON pixels to images) in a light slot, off the event loop."""
        assert self._executor is not None and self._light_slots is not None, "Decoder.start() was not called"
        async with self._light_slots:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def __call__(self, blobs: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]]:
        """(name, uint8 [C, S, S]) for each (name, encoded bytes), in order: the model's channels and side."""
        decoded = await self.run(self._measure_and_decode_light, blobs)
        if decoded is not None:
            self.light_requests += 1
            return decoded
        assert self._heavy_slots is not None
        async with self._heavy_slots:
            self.heavy_requests += 1
            return await asyncio.get_running_loop().run_in_executor(self._heavy_executor, self._decode, blobs)

    def _measure_and_decode_light(self, blobs: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]] | None:
        sizes = [image_size(data, name) for name, data in blobs]
        pixels = sum(width * height for width, height in sizes)
        if pixels > self.budget:
            self.refused += 1
            largest = max(range(len(sizes)), key=lambda i: sizes[i][0] * sizes[i][1])
            (width, height), name = sizes[largest], blobs[largest][0]
            raise PixelBudgetError(
                f"{plural(len(blobs), 'image')} of {pixels:,} pixels in all (the largest {name}, "
                f"{width}x{height}) is over this server's limit of {self.budget:,} pixels per request")
        return self._decode(blobs) if pixels <= self.light_pixels else None

    def _decode(self, blobs: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]]:
        bound = min(MAX_PIXELS, self.budget)
        return [(name, decode_image(data, name, bound, self.channels, self.side)) for name, data in blobs]


def _lower_priority(niceness: int) -> None:
    """This thread's niceness raised by `niceness`: on Linux a thread's priority is its own (elsewhere the
    whole process's would change, so there it stays as it is)."""
    if niceness and sys.platform.startswith("linux"):
        import threading

        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
        except OSError:  # a sandbox that forbids it: the lane still holds `heavy` threads at most
            pass


