"""The executor side: one ``ClinicalBert`` per Python worker, and Arrow batches in → Arrow batches out.

Everything here is pickled to executors by reference (the package is installed there) and runs inside a
Python worker. With worker reuse on (Spark's default), a worker process serves many tasks one after another, so
the model is loaded once per worker and cached by bundle hash + variant + device + threads.

Each Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows) goes through the core's three stages
at once (``score.engine.score_texts``): its texts are tokenized once, cut into windows, sorted by length into
batches within the token budget and put back in row order; there is no other batcher. A bad row becomes an
``error`` reason (never its text) and the rows around it are scored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import MANIFEST, sha256_file
from ..errors import BundleError, ChecksumError
from ..score.engine import TaskSpec, score_texts

SHIP_MODES: tuple[str, ...] = ("path", "files")
_CACHE_SIZE = 2  # models kept per worker (two bundles or thread counts in one application)


@dataclass(frozen=True)
class ModelSpec:
    """Where executors find the bundle and how to load it.

    ``ship``: "path" (``path`` is on storage every executor can read) or "files" (the driver packed it into the
    archive ``name`` and called ``SparkContext.addArchive``; executors find their unpacked copy with
    ``SparkFiles.get(name)``).
    ``threads``: intra-op threads; None takes them from ``TaskContext.cpus()`` (``spark.task.cpus``).
    """

    path: str
    name: str
    manifest_sha256: str
    ship: str = "path"
    device: str = "auto"
    variant: str | None = None
    verify: bool = True
    threads: int | None = None


def manifest_sha256(bundle: Path) -> str:
    """The bundle's identity: the sha256 of its manifest, which lists the sha256 of every file in it."""
    target = bundle / MANIFEST
    if not target.is_file():
        raise BundleError(f"{bundle} has no {MANIFEST}: not a clinbert-onnx bundle")
    return sha256_file(target)


def locate_bundle(spec: ModelSpec) -> Path:
    """This executor's copy of the bundle, checked to be the one the driver planned with."""
    if spec.ship == "files":
        from pyspark import SparkFiles

        path = Path(SparkFiles.get(spec.name))
    else:
        path = Path(spec.path)
    if not (path / MANIFEST).is_file():
        raise BundleError(
            f"bundle not found on this executor at {path}: put it on storage every executor can read "
            "(a shared file system, a Databricks volume) or pass ship='files' to copy it to executors with SparkContext.addArchive"
        )
    if manifest_sha256(path) != spec.manifest_sha256:
        raise ChecksumError(
            f"the bundle at {path} on this executor is not the one the job was planned with "
            "(its manifest's sha256 differs): every executor must see the same bundle"
        )
    return path


def task_threads(explicit: int | None = None) -> int:
    """Intra-op threads for this task: ``explicit``, else ``TaskContext.cpus()`` (``spark.task.cpus``), else 1.

    ONNX Runtime ignores ``OMP_NUM_THREADS``; without this, N concurrent tasks on an executor would each start a
    pool of every core."""
    if explicit is not None:
        return max(1, int(explicit))
    try:
        from pyspark import TaskContext
    except ImportError:
        return 1
    context = TaskContext.get()
    if context is None:
        return 1
    return max(1, int(context.cpus()))


_MODELS: OrderedDict[tuple[str, str | None, str, int], Any] = OrderedDict()
_LOCK = threading.Lock()


def get_model(spec: ModelSpec) -> Any:
    """This worker's model for ``spec`` at this task's thread count (loaded and verified once, then cached)."""
    from ..model import ClinicalBert
    from ..session import SessionConfig

    threads = task_threads(spec.threads)
    key = (spec.manifest_sha256, spec.variant, spec.device, threads)
    with _LOCK:
        model = _MODELS.get(key)
        if model is not None:
            _MODELS.move_to_end(key)
            return model
        model = ClinicalBert.load(
            locate_bundle(spec),
            device=spec.device,
            variant=spec.variant,
            verify=spec.verify,
            session_config=SessionConfig(intra_op_threads=threads, spin=False),
        )
        _MODELS[key] = model
        while len(_MODELS) > _CACHE_SIZE:
            _MODELS.popitem(last=False)
        return model


# ---------------------------------------------------------------------------------------------- Arrow
def prediction_type() -> Any:
    import pyarrow as pa

    pred = pa.struct(
        [("score", pa.float64()), ("token", pa.int64()), ("token_str", pa.string()), ("sequence", pa.string())]
    )
    return pa.list_(pa.list_(pred))


def value_field(task: str) -> Any:
    """The result column: ``embedding`` list<float32> (Spark array<float>, not a FixedSizeList) or
    ``predictions`` list<list<struct>> (one list per [MASK])."""
    import pyarrow as pa

    if task == "embed":
        return pa.field("embedding", pa.list_(pa.float32()))
    return pa.field("predictions", prediction_type())


def result_fields(task: str) -> list[Any]:
    import pyarrow as pa

    return [
        value_field(task),
        pa.field("windows", pa.int32()),
        pa.field("tokens", pa.int32()),
        pa.field("error", pa.string()),
    ]


def score_column(
    model: Any, spec: TaskSpec, texts: Sequence[object], text_col: str, failures: dict[int, str] | None = None
) -> list[Any]:
    """Score one batch of texts; return the result columns (see :func:`result_fields`), one row per text.

    ``failures``: rows already known to be bad (e.g. a line that is not JSON), by position, with their reason.
    Missing, non-text and blank values are refused here with the reasons ``clinbert score`` gives (``text_col``
    names the column in them; "" for none)."""
    import pyarrow as pa

    n = len(texts)
    where_col = f" in column {text_col!r}" if text_col else ""
    errors: list[str | None] = [None] * n
    good: list[str] = []
    where: list[int] = []
    for i, text in enumerate(texts):
        if failures and i in failures:
            errors[i] = failures[i]
        elif text is None:
            errors[i] = f"missing value{where_col}"
        elif not isinstance(text, str):
            errors[i] = f"value{where_col} is a {type(text).__name__}, not text"
        elif not text.strip():
            errors[i] = "empty text"
        else:
            good.append(text)
            where.append(i)
    windows: list[int | None] = [None] * n
    tokens: list[int | None] = [None] * n
    ok: list[int] = []
    scored = score_texts(model, spec, good) if good else None
    if scored is not None:
        for position, reason in scored.failed:
            errors[where[position]] = reason
        ok = [where[p] for p in scored.ok]
        for row, w, t in zip(ok, scored.windows, scored.tokens, strict=True):
            windows[row], tokens[row] = w, t
    if spec.task == "embed":
        hidden = int(model.hidden_size)
        lengths = np.zeros(n, dtype=np.int32)
        lengths[ok] = hidden
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int32)
        flat = np.empty((0,), dtype=np.float32)
        if scored is not None and scored.vectors is not None and ok:
            flat = np.ascontiguousarray(scored.vectors, dtype=np.float32).reshape(-1)
        mask = np.ones(n, dtype=bool)
        mask[ok] = False
        values: Any = pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(flat, type=pa.float32()), mask=pa.array(mask)
        )
    else:
        preds: list[Any] = [None] * n
        for row, p in zip(ok, scored.predictions if scored is not None and scored.predictions else [], strict=True):
            preds[row] = [p] if p and isinstance(p[0], dict) else p
        values = pa.array(preds, type=prediction_type())
    return [
        values,
        pa.array(windows, type=pa.int32()),
        pa.array(tokens, type=pa.int32()),
        pa.array(errors, type=pa.string()),
    ]


@dataclass(frozen=True)
class ArrowScorer:
    """The function given to ``DataFrame.mapInArrow``: batches of (id, text) → (id, result columns...)."""

    model: ModelSpec
    spec: TaskSpec
    text_col: str
    id_col: str

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        model = None
        for batch in batches:
            if model is None:
                model = get_model(self.model)
            columns = score_column(model, self.spec, batch.column(self.text_col).to_pylist(), self.text_col)
            names = ["id", *(f.name for f in result_fields(self.spec.task))]
            yield pa.RecordBatch.from_arrays([batch.column(self.id_col), *columns], names=names)
