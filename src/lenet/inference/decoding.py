"""The server's decoding of uploads: a pixel budget per request, and which thread decodes them.

A light request's uploads are decoded on the forward thread, just before the pass that holds them
(`Decoder` hands back a `batcher.Later`, which decodes them there); a heavy
request's on a low-priority thread of their own (the heavy lane). Nothing here decodes a pixel on the
event loop: there, at most the headers of a request of a few KB are read.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from lenet.core.errors import LenetError
from lenet.core.text import plural
from lenet.data.images import MAX_PIXELS, decode_image, image_size
from lenet.data.registry import IMAGE_SIZE
from lenet.inference.batcher import Later
from lenet.inference.settings import DEFAULTS

# --- decoding ---------------------------------------------------------------------------------


class PixelBudgetError(LenetError):
    """A request whose images hold more pixels in all than the server decodes for one request."""


Blobs = list[tuple[str, bytes]]  # a request's uploads: (name, encoded bytes), in the order sent


@dataclass
class Decoder:
    """Routes a request's uploads, within a pixel budget, to the thread that decodes them.

    A light request (at most `light_bytes` encoded bytes in all) has its images' headers read on the
    event loop (no pixel decoded: Pillow reads a header in microseconds, and at worst about a
    microsecond a byte, which `light_bytes` bounds), their pixels summed and held against `budget`
    (PixelBudgetError). When they hold at most `light_pixels`, the caller gets back the function that
    decodes them, for the forward thread to call just before their pass: one hand-off per request.
    Any other request, of large images or of many bytes, waits for a slot in the heavy lane: a thread
    pool of `heavy` threads at a lower priority (`niceness`), where its headers are read and its
    images decoded, so a costly decode never holds up a light request or the forward passes, and at
    most `heavy` cores ever decode large images, however many clients send them.

    Each image is decoded with an explicit bound (`decode_image(..., max_pixels)`): nothing here
    changes Pillow's process-wide MAX_IMAGE_PIXELS or the warning filters from a thread.
    """

    budget: int = DEFAULTS.max_request_pixels
    light_pixels: int = DEFAULTS.light_pixels
    light_bytes: int = DEFAULTS.light_bytes
    heavy: int = DEFAULTS.heavy_decodes
    niceness: int = DEFAULTS.heavy_niceness
    channels: int = 1  # the model's input, which every image is decoded to: 1 grey, 3 RGB
    side: int = IMAGE_SIZE
    # Requests each lane took so far, whether or not their images then decoded (counted on the event
    # loop); those over the budget are `refused` instead.
    light_requests: int = 0
    heavy_requests: int = 0
    refused: int = 0  # requests over the budget
    _heavy_executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _heavy_slots: asyncio.Semaphore | None = field(default=None, repr=False)

    def start(self) -> None:
        self._heavy_executor = ThreadPoolExecutor(self.heavy, thread_name_prefix="lenet-decode-heavy",
                                                  initializer=_lower_priority, initargs=(self.niceness,))  # fmt: skip
        self._heavy_slots = asyncio.Semaphore(self.heavy)

    def stop(self) -> None:
        if self._heavy_executor is not None:
            self._heavy_executor.shutdown(wait=True)

    async def __call__(self, blobs: Blobs) -> torch.Tensor | Later:
        """A request's images, uint8 [n, C, S, S] in the order sent (the model's channels and side): for a
        light request, a Later that decodes them on the forward thread; for a heavy one, the images, decoded
        in the heavy lane."""
        try:
            if sum(len(data) for _, data in blobs) <= self.light_bytes and self.measure(blobs) <= self.light_pixels:
                self.light_requests += 1
                return Later(len(blobs), partial(self.decode, blobs))
            return await self.in_heavy_lane(self._measure_and_decode, blobs)
        except PixelBudgetError:
            self.refused += 1
            raise

    async def placed(self, count: int, size: int, make: Callable[[], torch.Tensor]) -> torch.Tensor | Later:
        """`count` images that `make()` makes from `size` bytes of a request (JSON pixels): made on the forward
        thread just before their pass (a Later) when `size` is at most `light_bytes`, else in the heavy lane."""
        return Later(count, make) if size <= self.light_bytes else await self.in_heavy_lane(make)

    async def in_heavy_lane(self, work: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """`work(*args)` in the heavy lane: a slot, then a thread at a lower priority. For decoding that would hold
        the forward thread (and so every request) too long: large images, or a large JSON body's pixels."""
        assert self._heavy_slots is not None and self._heavy_executor is not None, "Decoder.start() was not called"
        async with self._heavy_slots:
            refused = False
            try:
                return await asyncio.get_running_loop().run_in_executor(self._heavy_executor, work, *args)
            except PixelBudgetError:
                refused = True  # counted as refused, not as taken
                raise
            finally:
                if not refused:  # the lane took it, whether or not its images then decoded
                    self.heavy_requests += 1

    def measure(self, blobs: Blobs) -> int:
        """The pixels the images hold in all, from their headers (no pixel decoded); over the budget,
        PixelBudgetError."""
        sizes = [image_size(data, name) for name, data in blobs]
        pixels = sum(width * height for width, height in sizes)
        if pixels > self.budget:
            largest = max(range(len(sizes)), key=lambda i: sizes[i][0] * sizes[i][1])
            (width, height), name = sizes[largest], blobs[largest][0]
            raise PixelBudgetError(
                f"{plural(len(blobs), 'image')} of {pixels:,} pixels in all (the largest {name}, "
                f"{width}x{height}) is over this server's limit of {self.budget:,} pixels per request")
        return pixels

    def decode(self, blobs: Blobs) -> torch.Tensor:
        """The images decoded, [n, C, S, S]; the first that cannot be decoded raises its ImageError."""
        bound = min(MAX_PIXELS, self.budget)
        return torch.stack([decode_image(data, name, bound, self.channels, self.side) for name, data in blobs])

    def _measure_and_decode(self, blobs: Blobs) -> torch.Tensor:
        self.measure(blobs)
        return self.decode(blobs)


def _lower_priority(niceness: int) -> None:
    """This thread's niceness raised by `niceness`: on Linux a thread's priority is its own (elsewhere the
    whole process's would change, so there it stays as it is)."""
    if niceness and sys.platform.startswith("linux"):
        import threading

        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
        except OSError:  # a sandbox that forbids it: the lane still holds `heavy` threads at most
            pass
