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


@dataclass
class _Job:
    images: torch.Tensor  # uint8 [n, C, S, S]
    future: asyncio.Future


@dataclass
class MicroBatcher:
    """Collects requests for up to `max_wait_s` or `max_batch` images, then runs one forward pass.

    The forward pass runs on one worker thread, so the event loop keeps accepting and decoding
    requests meanwhile; those requests form the next batch. No pass holds more than `max_batch`
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

    async def __call__(self, images: torch.Tensor) -> list[Prediction]:
        """All classes, most probable first, for uint8 images [n, C, S, S] (the model's shape)."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        futures = []
        for part in images.split(self.max_batch):
            futures.append(asyncio.get_running_loop().create_future())
            await self._queue.put(_Job(part, futures[-1]))
        return [p for part in await asyncio.gather(*futures) for p in part]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            batch = torch.cat([job.images for job in jobs])
            try:
                predictions = await loop.run_in_executor(self._executor, predict, self.model, batch, len(classes_of(self.model)))
            except Exception as e:  # a failed pass fails its requests, never the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            self.batches, self.images = self.batches + 1, self.images + len(batch)
            self.largest = max(self.largest, len(batch))
            start = 0
            for job in jobs:
                if not job.future.done():  # its client may have gone
                    job.future.set_result(predictions[start : start + len(job.images)])
                start += len(job.images)

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        first, self._held = self._held or await self._queue.get(), None
        jobs, count = [first], len(first.images)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 and self._queue.empty():
                break
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if count + len(job.images) > self.max_batch:
                self._held = job  # first in the next pass, so requests keep their order
                break
            jobs.append(job)
            count += len(job.images)
        return jobs


