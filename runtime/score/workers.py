"""Scorers: the model in this process (``--workers 1``) or in N spawned worker processes.

Both yield ``(chunk, Scored)`` in the order the chunks were submitted, so output order is input order
whatever finishes first. Workers each load their own ``ClinicalBert`` with ``cores // N`` intra-op threads;
the pool keeps at most ``2 N`` windows in flight, so memory stays bounded however long the input is.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ClinBertError
from ..session import SessionConfig, available_cpus
from .engine import Scored, TaskSpec, score_texts


class WorkerError(ClinBertError):
    """A worker process died (killed, out of memory...). Committed rows are safe: rerun with --resume."""

    code = "worker_died"


@dataclass(frozen=True)
class LoadSpec:
    bundle: Path
    device: str
    variant: str | None
    verify: bool
    threads: int  # intra-op threads; 0 = all cores
    engine: str = "onnxruntime"
    streams: int | None = None  # batches in flight; None: default_streams(threads)
    token_budget: int | None = None  # padded tokens per inference call; None: the model's default


def load_model(spec: LoadSpec) -> Any:
    from ..model import ClinicalBert

    return ClinicalBert.load(
        spec.bundle,
        device=spec.device,
        variant=spec.variant,
        verify=spec.verify,
        session_config=SessionConfig(
            intra_op_threads=spec.threads,
            streams=spec.streams if spec.streams is not None else default_streams(spec.threads),
        ),
        engine=spec.engine,
        token_budget=spec.token_budget,
    )


class LocalScorer:
    """The model in this process. Reports progress within a window (after each slice)."""

    def __init__(self, load: LoadSpec) -> None:
        self.model = load_model(load)
        self.info: dict[str, Any] = self.model.info()

    def imap(
        self, spec: TaskSpec, chunks: Iterator[Any], on_progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[Any, Scored]]:
        for chunk in chunks:
            scored = score_texts(self.model, spec, chunk.items, on_progress) if chunk.items else Scored()
            yield chunk, scored

    def close(self, cancel: bool = False) -> None:
        self.model = None


# ---------------------------------------------------------------------------------------------- worker side
_MODEL: Any = None
_LOAD_ERROR: ClinBertError | None = None


def _exit_with_parent() -> None:
    """Die with the parent: after a kill -9 of ``clinbert score`` its workers would otherwise wait forever on
    a queue whose write end they hold themselves."""
    import multiprocessing
    import os
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init(load: LoadSpec) -> None:
    global _MODEL, _LOAD_ERROR
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent()
    try:
        _MODEL = load_model(load)
    except ClinBertError as exc:  # re-raised by each task, so the parent sees the real error
        _LOAD_ERROR = exc


def _model() -> Any:
    if _LOAD_ERROR is not None:
        raise _LOAD_ERROR
    return _MODEL


def _describe() -> dict[str, Any]:
    return dict(_model().info())


def _score(spec: TaskSpec, items: list[Any]) -> Scored:
    return score_texts(_model(), spec, items)


# ---------------------------------------------------------------------------------------------- parent side
def worker_threads(workers: int) -> int:
    return max(1, available_cpus() // workers)


#: Batches in flight by default when a process has at least two cores. Measured (BENCHMARKS.md, issue 15 round
#: 2, levers), BERT-base-shaped, 2 cores, two calls of one thread each vs one call of two threads: ONNX Runtime
#: per-token INT8 +17-22 % on mixed-length embedding sets (0 % on 200 NER notes), OpenVINO int8-static +2-6 %.
DEFAULT_STREAMS = 2


def default_streams(threads: int) -> int:
    """Two streams where the process has two or more cores (``threads``: 0 = all of them), else one."""
    return min(DEFAULT_STREAMS, threads or available_cpus())


class PoolScorer:
    """N spawned worker processes. If the workers cannot load the model, the constructor stops them before it
    raises, so no process outlives a failed start."""

    def __init__(self, load: LoadSpec, workers: int) -> None:
        import multiprocessing

        self.workers = workers
        self._before = set(multiprocessing.active_children())
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init, initargs=(load,)
        )
        try:
            self.info: dict[str, Any] = self._result(self.pool.submit(_describe))
        except BaseException:
            self.close(cancel=True)
            raise

    def _result(self, future: Future[Any]) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            raise WorkerError(
                "a worker process died (killed or out of memory?); committed rows are safe: rerun with --resume"
            ) from None

    def imap(
        self, spec: TaskSpec, chunks: Iterator[Any], on_progress: Callable[[int], None] | None = None
    ) -> Iterator[tuple[Any, Scored]]:
        pending: deque[tuple[Any, Future[Scored] | None]] = deque()
        depth = 2 * self.workers
        for chunk in chunks:
            pending.append((chunk, self.pool.submit(_score, spec, chunk.items) if chunk.items else None))
            if len(pending) >= depth:
                yield self._next(pending, on_progress)
        while pending:
            yield self._next(pending, on_progress)

    def _next(
        self, pending: deque[tuple[Any, Future[Scored] | None]], on_progress: Callable[[int], None] | None
    ) -> tuple[Any, Scored]:
        chunk, future = pending.popleft()
        scored = Scored() if future is None else self._result(future)
        if on_progress is not None:
            on_progress(len(chunk.items))
        return chunk, scored

    def close(self, cancel: bool = False) -> None:
        """Stop the pool; ``cancel`` (Ctrl-C, an error) also stops the windows being scored, whose results
        would be thrown away anyway: the checkpoint is behind them."""
        if not cancel:
            self.pool.shutdown(wait=True)
            return
        import multiprocessing

        # the pool's own workers: the children started since it was made (there is no public way to stop a
        # running task, so they are terminated). Looked up again after each round: a pool whose worker failed
        # its initializer may still be starting a replacement when the first list is taken.
        self.pool.shutdown(wait=False, cancel_futures=True)
        for _ in range(5):
            processes = [p for p in multiprocessing.active_children() if p not in self._before]
            if not processes:
                break
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(timeout=10)


def make_scorer(load: LoadSpec, workers: int) -> LocalScorer | PoolScorer:
    if workers <= 1:
        return LocalScorer(load)
    return PoolScorer(replace(load, threads=worker_threads(workers)), workers)
