"""Requests that arrive together share one forward pass: the server's micro-batching."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lenet.inference.predict import Prediction, predict
from lenet.inference.settings import DEFAULTS
from lenet.models.views import classes_of

# --- batching ---------------------------------------------------------------------------------


class Later:
    """A request's `count` images, made by `make()` (uint8 [count, C, S, S]) on the forward thread just
    before the first pass that holds any of them: a light request's uploads, decoded there instead of
    on a thread of their own. Made once, for all of the request's parts; what `make` raises is the
    request's answer (every part's), and no other request's."""

    def __init__(self, count: int, make: Callable[[], torch.Tensor]):
        self.count, self._make = count, make
        self._images: torch.Tensor | None = None
        self._error: Exception | None = None

    def __len__(self) -> int:
        return self.count

    def images(self) -> torch.Tensor:
        """The images, made now if they are not yet: call it on the forward thread (or once the request's
        passes are done, when it only hands back what was made)."""
        if self._images is None and self._error is None:
            try:
                self._images = self._make()
            except Exception as e:
                self._error = e
        if self._error is not None:
            raise self._error
        assert self._images is not None and len(self._images) == self.count, "made the wrong number of images"
        return self._images


def made(images: torch.Tensor | Later) -> torch.Tensor:
    """The images themselves: a Later's made now if they are not yet (so only on the forward thread, or once
    the request's passes are done)."""
    return images.images() if isinstance(images, Later) else images


@dataclass
class _Job:
    images: torch.Tensor | Later  # uint8 [n, C, S, S], or a whole request's to be made on the forward thread
    start: int  # this part's images: images[start:stop]
    stop: int
    future: asyncio.Future

    def __len__(self) -> int:
        return self.stop - self.start

    def part(self) -> torch.Tensor:
        """This part's images (forward thread)."""
        return made(self.images)[self.start : self.stop]


@dataclass
class MicroBatcher:
    """Collects requests for up to `max_wait_s` or `max_batch` images, then runs one forward pass.

    The forward pass runs on one worker thread, so the event loop keeps accepting and reading
    requests meanwhile; those requests form the next batch. A request may come as its images or as a
    `Later`, whose images are made on that thread just before the pass: a pass holds the requests that
    were made, and one that fails to be made fails alone. No pass holds more than `max_batch`
    images: a bigger request is split into parts, and a request that would not fit waits for the next pass.
    """

    model: nn.Module
    max_batch: int = DEFAULTS.max_batch
    max_wait_s: float = DEFAULTS.max_wait_ms / 1000
    batches: int = 0  # forward passes so far
    images: int = 0  # images through them
    largest: int = 0  # the most images one pass has held
    _queue: asyncio.Queue | None = field(default=None, repr=False)
    _held: _Job | None = field(default=None, repr=False)  # taken from the queue, but too big for the last pass
    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _task: asyncio.Task | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lenet-forward")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def on_forward_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on the thread the forward passes run on, between two passes (a model is
        never run by two threads at once)."""
        if self._executor is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def __call__(self, images: torch.Tensor | Later) -> list[Prediction]:
        """All classes, most probable first, for uint8 images [n, C, S, S] (the model's shape), or for
        those a `Later` makes."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(images), self.max_batch):
            futures.append(loop.create_future())
            await self._queue.put(_Job(images, start, min(start + self.max_batch, len(images)), futures[-1]))
        try:
            return [p for part in await asyncio.gather(*futures) for p in part]
        except BaseException:
            for future in futures:  # the request has its answer (or its client is gone): its other parts are skipped
                future.cancel()
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [job for job in await self._collect() if not job.future.done()]  # a cancelled part is skipped
            if not jobs:
                continue
            try:
                parts, predictions = await loop.run_in_executor(self._executor, self._forward, jobs)
            except Exception as e:  # a failed pass fails its requests, never the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            if predictions:
                self.batches, self.images = self.batches + 1, self.images + len(predictions)
                self.largest = max(self.largest, len(predictions))
            start = 0
            for job, images in zip(jobs, parts):
                if isinstance(images, Exception):
                    if not job.future.done():
                        job.future.set_exception(images)
                    continue
                if not job.future.done():  # its client may have gone
                    job.future.set_result(predictions[start : start + len(images)])
                start += len(images)

    def _forward(self, jobs: list[_Job]) -> tuple[list[torch.Tensor | Exception], list[Prediction]]:
        """On the forward thread: each job's images made (or what making them raised), then one pass
        over all those made."""
        parts: list[torch.Tensor | Exception] = []
        for job in jobs:
            try:
                parts.append(job.part())
            except Exception as e:  # an upload that will not decode: its request's answer alone
                parts.append(e)
        batch = [images for images in parts if not isinstance(images, Exception)]
        if not batch:
            return parts, []
        return parts, predict(self.model, torch.cat(batch), len(classes_of(self.model)))

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        first, self._held = self._held or await self._queue.get(), None
        jobs, count = [first], len(first)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and self._queue.empty():
                break
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if count + len(job) > self.max_batch:
                self._held = job  # first in the next pass, so requests keep their order
                break
            jobs.append(job)
            count += len(job)
        return jobs
