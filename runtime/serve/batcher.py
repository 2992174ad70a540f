"""Dynamic batching: concurrent requests are merged into token-budget inference calls.

Requests queue as *jobs* (their texts, token counts and task options). One collector coroutine takes the
oldest job and every queued job with the same task options, in arrival order, up to ``max_batch_tokens``.
When the batcher is idle the first job waits up to ``max_wait_ms`` for company; right after a batch it lingers
briefly (5% of that batch's time, at most ``max_wait_ms``) so the clients it just answered can join the next
one. The merged texts run on a single inference thread (ONNX Runtime already uses every core for one call),
as ``encode`` / ``predict_masks`` calls, one per group of similar length (see ``planning``), so the event loop
stays free for ``/health`` and for queueing the next batch while this one runs. Results are split back per
job; if a merged call fails on one job's input, each job is re-run alone so every request gets its own result
or its own error. The queue is bounded in texts: past ``max_queue``, 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..batching import CALL_OVERHEAD_TOKENS
from ..errors import ClinBertError
from ..model import ClinicalBert, EmbedResult, FillMaskResult
from .errors import InferenceFailedError, QueueFullError, ShuttingDownError, log_unexpected
from .metrics import Metrics
from .planning import run_grouped, split

log = logging.getLogger("clinbert_onnx.serve")
#: After a batch, wait for newcomers up to this share of its duration (capped by max_wait).
LINGER_SHARE = 0.05


@dataclass(frozen=True)
class EmbedTask:
    pooling: str = "mean"
    normalize: bool = True
    long_text: str = "chunk"


@dataclass(frozen=True)
class MaskTask:
    top_k: int = 5
    targets: tuple[str, ...] | None = None
    long_text: str = "chunk"


Task = EmbedTask | MaskTask


@dataclass(eq=False)
class Job:
    task: Task
    texts: list[str]
    tokens: list[int]  # per text, incl. [CLS]/[SEP]
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.monotonic)
    total: int = 0

    def __post_init__(self) -> None:
        self.total = sum(self.tokens)


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
        self.call_overhead = CALL_OVERHEAD_TOKENS.get(model.device, CALL_OVERHEAD_TOKENS["cuda"])

    # ------------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinbert-infer")
        self._collector = asyncio.create_task(self._collect_forever(), name="clinbert-batcher")

    async def stop(self, timeout: float = 30.0) -> None:
        """Refuse new jobs, let queued ones finish (up to ``timeout`` s), then stop the collector and thread."""
        self._closing = True
        deadline = time.monotonic() + timeout
        while (self._pending or self._busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        for job in [*self._pending, *self._running]:  # only left after the timeout
            if not job.future.done():
                job.future.set_exception(ShuttingDownError("the server is shutting down"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------------------------------- queueing
    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def retry_after(self) -> int:
        """Seconds until the queue should have room, from the recent throughput; 1 to 60."""
        if self._rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(self._queued_texts / self._rate))))

    async def submit(self, task: Task, texts: Sequence[str], tokens: Sequence[int]) -> Any:
        """Queue ``texts`` (with their token counts) and wait for their result: an EmbedResult / FillMaskResult
        of exactly these texts."""
        if self._closing or self._wake is None:
            raise ShuttingDownError("the server is shutting down")
        if self._queued_texts and self._queued_texts + len(texts) > self.max_queue:
            raise QueueFullError(
                f"the inference queue is full ({self._queued_texts} texts waiting); retry later",
                self.retry_after(),
            )
        job = Job(task, list(texts), list(tokens), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._queued_texts += len(job.texts)
        self._gauge()
        self._wake.set()
        return await job.future

    def _gauge(self) -> None:
        self.metrics.queue_texts.set(self._queued_texts)
        self.metrics.queue_requests.set(len(self._pending))

    def _queued_tokens(self, task: Task) -> int:
        return sum(j.total for j in self._pending if j.task == task)

    def _take(self, task: Task) -> list[Job]:
        """Remove and return the oldest jobs with ``task`` up to the token budget (at least one)."""
        taken: list[Job] = []
        kept: deque[Job] = deque()
        total = 0
        full = False
        for job in self._pending:
            if job.future.done():  # cancelled by its client: drop it
                self._queued_texts -= len(job.texts)
            elif job.task == task and not full and (not taken or total + job.total <= self.max_batch_tokens):
                taken.append(job)
                total += job.total
                self._queued_texts -= len(job.texts)
            else:
                full = full or job.task == task
                kept.append(job)
        self._pending = kept
        self._gauge()
        return taken

    # ------------------------------------------------------------------------------------------- collector
    async def _collect_forever(self) -> None:
        wake, executor = self._wake, self._executor
        if wake is None or executor is None:
            raise RuntimeError("Batcher.start() was not called")
        while True:
            while not self._pending:
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
        while self._queued_tokens(first.task) < self.max_batch_tokens:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        jobs = self._take(first.task)
        if not jobs:
            return
        started = time.monotonic()
        self._busy = True
        self._running = jobs
        try:
            for job in jobs:
                self.metrics.queue_wait.observe(started - job.enqueued)
            loop = asyncio.get_running_loop()
            outcomes = await loop.run_in_executor(executor, self._infer, first.task, jobs)
            self._record(first.task, jobs, time.monotonic() - started)
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

    def _record(self, task: Task, jobs: list[Job], seconds: float) -> None:
        texts = sum(len(j.texts) for j in jobs)
        tokens = sum(j.total for j in jobs)
        name = "embed" if isinstance(task, EmbedTask) else "fill_mask"
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
    def _infer(self, task: Task, jobs: list[Job]) -> list[Any]:
        """Runs on the inference thread. Returns one result or exception per job."""
        texts = [t for j in jobs for t in j.texts]
        tokens = [n for j in jobs for n in j.tokens]
        try:
            merged = self._run(task, texts, tokens)
        except ClinBertError:
            # someone's input is bad: each job alone, ungrouped, so errors name indices within their request
            return [self._run_alone(task, j) for j in jobs]
        except Exception as exc:
            log_unexpected(exc)
            return [InferenceFailedError("inference failed") for _ in jobs]
        return split(merged, [len(j.texts) for j in jobs])

    def _run_alone(self, task: Task, job: Job) -> Any:
        try:
            return self._run(task, job.texts, job.tokens, grouped=False)
        except ClinBertError as exc:
            return exc
        except Exception as exc:
            log_unexpected(exc)
            return InferenceFailedError("inference failed")

    def _run(
        self, task: Task, texts: list[str], tokens: list[int], grouped: bool = True
    ) -> EmbedResult | FillMaskResult:
        model = self.model
        if isinstance(task, EmbedTask):

            def run(group: list[str]) -> EmbedResult | FillMaskResult:
                return model.encode(group, pooling=task.pooling, normalize=task.normalize, long_text=task.long_text)
        else:
            targets = list(task.targets) if task.targets is not None else None

            def run(group: list[str]) -> EmbedResult | FillMaskResult:
                return model.predict_masks(group, top_k=task.top_k, targets=targets, long_text=task.long_text)

        if not grouped:
            return run(texts)
        lengths = [min(n, model.max_length) for n in tokens]
        return run_grouped(run, texts, lengths, self.call_overhead, model.max_batch)
