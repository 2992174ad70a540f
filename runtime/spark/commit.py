"""Each chunk, its own committed partition: ``OUT/part-NNNNNN.parquet`` plus ``OUT/_chunks/part-NNNNNN.json``.

A task (one chunk) writes its Parquet file under a name of its own attempt, fsyncs it and renames it to
``part-NNNNNN.parquet``; then it writes the chunk's manifest (rows, errors, the bundle's hash, the options, the
job's key) the same way. The manifest is the commit: a chunk is finished when its manifest is there, names this
job and matches its part file's size. So:

- a task retry (the Python worker killed, an executor lost) rewrites the same chunk from the start and
  renames over whatever an earlier attempt left: the same rows, once;
- speculative duplicates rename identical files;
- a run killed as a whole leaves finished chunks with manifests and unfinished ones without; ``--resume``
  schedules only the latter.

Readers (Spark, pyarrow, pandas) skip ``_chunks/``, ``_job.json``, ``_SUCCESS`` and the ``.``-prefixed temporary
files, as they skip any name starting with ``_`` or ``.``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..score.engine import TaskSpec
from ..score.writers import fsync_dir
from .chunks import Chunk, chunk_dict, chunk_rows_of
from .worker import ModelSpec, get_model, result_fields, score_column

MANIFESTS = "_chunks"
JOB = "_job.json"
SUCCESS = "_SUCCESS"


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def manifest_path(out: Path, index: int) -> Path:
    return out / MANIFESTS / f"part-{index:06d}.json"


def write_json(path: Path, data: dict[str, Any], tag: str = "") -> None:
    """Write ``path`` atomically: a temporary file of this writer's own, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{tag or os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def finished(out: Path, index: int, job_key: str) -> dict[str, Any] | None:
    """The manifest of chunk ``index`` if the chunk is committed by this job, else None."""
    manifest = read_json(manifest_path(out, index))
    if manifest is None or manifest.get("job") != job_key:
        return None
    part = out / str(manifest.get("part", ""))
    if not part.is_file() or part.stat().st_size != manifest.get("bytes"):
        return None
    return manifest


def id_field(id_kind: str) -> Any:
    import pyarrow as pa

    return pa.field("id", pa.int64() if id_kind == "int" else pa.string())


@dataclass(frozen=True)
class JobTask:
    """Runs in a Python worker, for the chunks of one Spark task (one chunk per task): read, score, commit.

    ``crash_chunk``: for tests, kill the Python worker (``os._exit``) in the middle of this chunk on its first
    attempt, after a batch is written and before the commit, as a lost executor would."""

    out: str
    model: ModelSpec
    spec: TaskSpec
    column: str
    id_column: str | None
    id_kind: str
    batch_rows: int
    job_key: str
    identity: dict[str, Any]
    crash_chunk: int = -1

    def __call__(self, batches: Any) -> Any:
        import pyarrow as pa

        for batch in batches:
            for record in batch.to_pylist():
                chunk = Chunk(**{k: record[k] for k in ("index", "file", "fmt", "start", "stop", "offset")})
                stats = self.run(chunk)
                yield pa.RecordBatch.from_pylist([stats], schema=status_schema())

    def run(self, chunk: Chunk) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from pyspark import TaskContext

        context = TaskContext.get()
        attempt = context.attemptNumber() if context is not None else 0
        out = Path(self.out)
        name = part_name(chunk.index)
        tmp = out / f".{name}.{attempt}-{os.getpid()}.tmp"
        schema = pa.schema([id_field(self.id_kind), *result_fields(self.spec.task)])
        model = get_model(self.model)
        stats = {"chunk": chunk.index, "rows": 0, "written": 0, "errors": 0, "tokens": 0, "attempt": attempt}
        with pq.ParquetWriter(tmp, schema) as writer:
            for ids, texts, failures in _batches(chunk, self, self.batch_rows):
                columns = score_column(model, self.spec, texts, self.column, failures)
                writer.write_batch(
                    pa.RecordBatch.from_arrays([pa.array(ids, type=schema.field("id").type), *columns], schema=schema)
                )
                written = columns[3].null_count  # rows without an error
                stats["rows"] += len(ids)
                stats["written"] += written
                stats["errors"] += len(ids) - written
                stats["tokens"] += sum(t for t in columns[2].to_pylist() if t is not None)
                if chunk.index == self.crash_chunk and attempt == 0:
                    os._exit(17)  # a worker lost mid-partition; Spark retries the task
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out / name)
        fsync_dir(out)
        manifest = {
            **stats,
            "job": self.job_key,
            "part": name,
            "bytes": (out / name).stat().st_size,
            "variant": model.variant,
            "input": chunk_dict(chunk),
            **self.identity,
        }
        write_json(manifest_path(out, chunk.index), manifest, tag=f"{attempt}-{os.getpid()}")
        return stats


def _batches(chunk: Chunk, task: JobTask, size: int) -> Any:
    """(ids, texts, failures by position) for every ``size`` rows of the chunk."""
    ids: list[Any] = []
    texts: list[str | None] = []
    failures: dict[int, str] = {}
    for row in chunk_rows_of(chunk, task.column, task.id_column, task.id_kind):
        if row.error is not None:
            failures[len(ids)] = row.error
        ids.append(row.id)
        texts.append(row.text)
        if len(ids) == size:
            yield ids, texts, failures
            ids, texts, failures = [], [], {}
    if ids:
        yield ids, texts, failures


def status_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [pa.field(name, pa.int64()) for name in ("chunk", "rows", "written", "errors", "tokens", "attempt")]
    )
