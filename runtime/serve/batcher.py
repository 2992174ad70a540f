"""Dynamic batching: the prepared windows of concurrent requests are merged into one run of the model.

Requests are validated, tokenized and cut into windows by ``ClinicalBert.prepare`` before they are queued (a bad
input fails its own request there, before anything is merged). Each queued *job* holds one request's prepared
windows. One collector coroutine takes the oldest job and every queued job whose windows need the same heads,
in arrival order, up to ``max_batch_tokens`` window tokens. When the batcher is idle the first job waits up to
``max_wait_ms`` for company; right after a batch it lingers briefly (5% of that batch's time, at most
``max_wait_ms``) so the clients it just answered can join the next one. The merged windows go to
``ClinicalBert.run`` once (which plans length-aware batches over all of them) on a single inference thread
(ONNX Runtime already uses every core for one call), so the event loop stays free for ``/health`` and for
queueing the next batch; each job's outputs are then finished into its own result. The queue is bounded in
texts: past ``max_queue``, 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import InferenceFailedError, QueueFullError, ShuttingDownError
from ..model import ClinicalBert
from ..tasks import Prepared
from .errors import log_unexpected
from .metrics import Metrics

log = logging.getLogger("clinbert_onnx.serve")
#: After a batch, wait for newcomers up to this share of its duration (capped by max_wait).
LINGER_SHARE = 0.05


@dataclass(eq=False)
class Job:
    prepared: Prepared
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> frozenset[str]:
        """Jobs with the same key share inference calls."""
        return frozenset(w.head for w in self.prepared.windows)

    @property
    def texts(self) -> int:
        return len(self.prepared.kept)

    @property
    def total(self) -> int:
        """Window tokens (incl. [CLS]/[SEP], after windowing): what the batch budget counts."""
        return self.prepared.window_tokens


class Batcher:
    """Queue + collector + one inference thread. ``start()``/``stop()`` run inside the server's event loop."""

    def __init__(
        self, model: ClinicalBert, metrics: Metrics, *, max_batch_tokens: int, max_wait_ms: float, max_queue: int
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._pending: deque[Job] = deque()
        self._queued_texts = 0
        self._wake: asyncio.Event | None = None
        self._collector: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._busy = False
        self._running: list[Job] = []
        self._rate = 0.0  # texts per second, moving average, for Retry-After
        self._last_end = 0.0  # monotonic time the last batch finished
        self._last_seconds = 0.0  # how long it ran
        self._idle: asyncio.Event | None = None  # set while nothing is queued or running

    # ------------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinbert-infer")
        self._collector = asyncio.create_task(self._collect_forever(), name="clinbert-batcher")

    async def stop(self, timeout: float = 30.0) -> None:
        """Refuse new jobs, let queued ones finish (up to ``timeout`` s), then stop the collector and thread."""
        self._closing = True
        if self._idle is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        for job in [*self._pending, *self._running]:  # only left after the timeout
            if not job.future.done():
                job.future.set_exception(ShuttingDownError("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:  # waits for a batch still running after the timeout, off the event loop
            await asyncio.to_thread(self._executor.shutdown, wait=True)

    # ------------------------------------------------------------------------------------------- queueing
    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def retry_after(self) -> int:
        """Seconds until the queue should have room, from the recent throughput; 1 to 60."""
        if self._rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(self._queued_texts / self._rate))))

    async def submit(self, prepared: Prepared) -> Any:
        """Queue one request's prepared windows and wait for its result (``ClinicalBert.finish`` of them)."""
        if self._closing or self._wake is None or self._idle is None:
            raise ShuttingDownError("the server is shutting down")
        texts = len(prepared.kept)
        if self._queued_texts and self._queued_texts + texts > self.max_queue:
            raise QueueFullError(
                f"the inference queue is full ({self._queued_texts} texts waiting); retry later",
                self.retry_after(),
            )
        job = Job(prepared, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued_texts += job.texts
        self._gauge()
        self._idle.clear()
        self._wake.set()
        return await job.future

    def _gauge(self) -> None:
        self.metrics.queue_texts.set(self._queued_texts)
        self.metrics.queue_requests.set(len(self._pending))

    def _queued_tokens(self, key: frozenset[str]) -> int:
        return sum(j.total for j in self._pending if j.key == key)

    def _take(self, key: frozenset[str]) -> list[Job]:
        """Remove and return the oldest jobs with ``key`` up to the token budget (at least one)."""
        taken: list[Job] = []
        kept: deque[Job] = deque()
        total = 0
        full = False
        for job in self._pending:
            if job.future.done():  # cancelled by its client: drop it
                self._queued_texts -= job.texts
            elif job.key == key and not full and (not taken or total + job.total <= self.max_batch_tokens):
                taken.append(job)
                total += job.total
                self._queued_texts -= job.texts
            else:
                full = full or job.key == key
                kept.append(job)
        self._pending = kept
        self._gauge()
        return taken

    # ------------------------------------------------------------------------------------------- collector
    async def _collect_forever(self) -> None:
        wake, executor, idle = self._wake, self._executor, self._idle
        if wake is None or executor is None or idle is None:
            raise RuntimeError("Batcher.start() was not called")
        while True:
            while not self._pending:
                idle.set()
                wake.clear()
                await wake.wait()
            try:
                await self._collect_once(wake, executor)
            except Exception as exc:  # a bug here must neither hang requests nor spin: fail what is queued
                log_unexpected(exc)
                for job in [*self._running, *self._pending]:
                    if not job.future.done():
                        job.future.set_exception(InferenceFailedError("batching failed"))
                self._running = []
                self._pending.clear()
                self._queued_texts = 0
                self._gauge()

    async def _collect_once(self, wake: asyncio.Event, executor: ThreadPoolExecutor) -> None:
        first = self._pending[0]
        # Idle: the first job waits up to max_wait for company. Right after a batch: linger a little (at most
        # max_wait, and 5% of that batch's time) so the clients just answered can join the next one; without
        # it, steady load splits into groups that alternate batches of half the size.
        linger = min(self.max_wait, LINGER_SHARE * self._last_seconds)
        deadline = max(first.enqueued + self.max_wait, self._last_end + linger)
        while self._queued_tokens(first.key) < self.max_batch_tokens:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        jobs = self._take(first.key)
        if not jobs:
            return
        started = time.monotonic()
        self._busy = True
        self._running = jobs
        try:
            for job in jobs:
                self.metrics.queue_wait.observe(started - job.enqueued)
            loop = asyncio.get_running_loop()
            outcomes = await loop.run_in_executor(executor, self._infer, jobs)
            self._record(jobs, time.monotonic() - started)
        finally:
            self._busy = False
            self._last_end = time.monotonic()
            self._last_seconds = self._last_end - started
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        self._running = []

    def _record(self, jobs: list[Job], seconds: float) -> None:
        texts = sum(j.texts for j in jobs)
        tokens = sum(n + 2 for j in jobs for n in j.prepared.tokens)
        name = jobs[0].prepared.task.replace("-", "_")
        m = self.metrics
        m.batch_texts.observe(texts)
        m.batch_requests.observe(len(jobs))
        m.batch_tokens.observe(tokens)
        m.inference.labels(name).observe(seconds)
        m.tokens.labels(name).inc(tokens)
        m.texts.labels(name).inc(texts)
        if seconds > 0:
            rate = texts / seconds
            self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate

    # ------------------------------------------------------------------------------------------- inference
    def _infer(self, jobs: list[Job]) -> list[Any]:
        """Runs on the inference thread: one ``run`` over every job's windows, then each job finished on its
        own outputs. Returns one result or exception per job (inputs were checked by ``prepare``: a failure
        here is unexpected and logged without its message)."""
        model = self.model
        try:
            outputs = model.run([w for j in jobs for w in j.prepared.windows])
        except Exception as exc:
            log_unexpected(exc)
            return [InferenceFailedError("inference failed") for _ in jobs]
        results: list[Any] = []
        start = 0
        for job in jobs:
            end = start + len(job.prepared.windows)
            try:
                results.append(model.finish(job.prepared, outputs[start:end]))
            except Exception as exc:
                log_unexpected(exc)
                results.append(InferenceFailedError("inference failed"))
            start = end
        return results
