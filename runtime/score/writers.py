"""Output writers that commit chunk by chunk inside the work folder and reopen at their last commit.

Each writer appends a window's rows, then ``commit()`` makes them durable (flush + fsync) and returns the small
state that the checkpoint records. Reopening with that state drops whatever was written after it (a run killed
mid-window). ``finalize()`` turns the committed chunks into the final file, still inside the work folder;
``moves()`` says which work-folder file becomes which output, renamed there only when everything is done.

- ``.jsonl``: one object a row, appended to ``data.jsonl``; the state is its committed length.
- ``.npy``: ``data.npy`` is a real .npy file from the start: a fixed 128-byte header (rewritten with the final
  row count at the end) followed by float32 rows; ids go to ``ids.jsonl`` (the sidecar). No copy at the end.
- ``.parquet``: each commit writes one small Parquet file under ``parts/`` (a Parquet file is unreadable
  until its footer is written, so a single growing file could not survive a kill); ``finalize`` streams the
  parts, one at a time, into one file with a row group per part.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np

from .engine import Scored
from .options import ResumeError

NPY_HEADER = 128
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AppendFile:
    """A file appended to and committed by length. ``committed=None`` starts it empty."""

    def __init__(self, path: Path, committed: int | None) -> None:
        self.path = path
        self.fh: IO[bytes]
        if committed is None:
            self.fh = open(path, "wb")  # noqa: SIM115
            return
        if not path.is_file() or path.stat().st_size < committed:
            raise ResumeError(
                f"{path} is shorter than its checkpoint says: the work folder is damaged; start over with --force"
            )
        self.fh = open(path, "r+b")  # noqa: SIM115
        self.fh.truncate(committed)
        self.fh.seek(committed)

    def write(self, data: bytes) -> None:
        self.fh.write(data)

    def commit(self) -> int:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        self.fh.close()


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


#: The column (and JSON key) of each task's results.
RESULT_KEYS = {"embed": "embedding", "token-classification": "entities", "text-classification": "labels"}


def result_key(task: str) -> str:
    return RESULT_KEYS.get(task, "predictions")


def _records(ids: list[Any], scored: Scored, task: str) -> list[dict[str, Any]]:
    key = result_key(task)
    if task == "embed":
        values: list[Any] = scored.vectors.tolist() if scored.vectors is not None else []
    else:
        values = list(scored.predictions or [])
    return [
        {"id": i, key: v, "windows": w, "tokens": t}
        for i, v, w, t in zip(ids, values, scored.windows, scored.tokens, strict=True)
    ]


class Output:
    """Base class; see the module doc. The constructor does no I/O: ``start()`` opens the files for appending
    (empty, or cut back to the committed state); a run that only finishes calls ``finalize()`` directly."""

    def start(self) -> None:
        raise NotImplementedError

    def write(self, ids: list[Any], scored: Scored) -> None:
        raise NotImplementedError

    def commit(self) -> dict[str, int]:
        raise NotImplementedError

    def close(self) -> None:
        """Release open files (after the last commit, or on interruption)."""

    def finalize(self) -> None:
        """Build the final file(s) inside the work folder from the committed state. Idempotent."""

    def moves(self) -> list[tuple[Path, Path]]:
        raise NotImplementedError


class JsonlOutput(Output):
    def __init__(self, work: Path, task: str, out: Path, state: dict[str, int] | None) -> None:
        self.task, self.out = task, out
        self.path = work / "data.jsonl"
        self.state = state
        self.file: AppendFile | None = None

    def start(self) -> None:
        self.file = AppendFile(self.path, self.state["bytes"] if self.state else None)

    def write(self, ids: list[Any], scored: Scored) -> None:
        if self.file is not None:
            self.file.write(_jsonl(_records(ids, scored, self.task)))

    def commit(self) -> dict[str, int]:
        return {"bytes": self.file.commit() if self.file is not None else 0}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def moves(self) -> list[tuple[Path, Path]]:
        return [(self.path, self.out)]


def npy_header(rows: int, hidden: int) -> bytes:
    """A version-1 .npy header for ``float32 [rows, hidden]``, padded to exactly NPY_HEADER bytes."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {hidden}), }}"
    pad = NPY_HEADER - len(_NPY_MAGIC) - 2 - len(text) - 1
    return _NPY_MAGIC + struct.pack("<H", NPY_HEADER - len(_NPY_MAGIC) - 2) + (text + " " * pad + "\n").encode()


class NpyOutput(Output):
    def __init__(self, work: Path, hidden: int, out: Path, sidecar: Path, state: dict[str, int] | None) -> None:
        self.hidden, self.out, self.sidecar = hidden, out, sidecar
        self.path, self.ids_path = work / "data.npy", work / "ids.jsonl"
        self.state = state
        self.rows = state["rows"] if state else 0
        self.data: AppendFile | None = None
        self.ids: AppendFile | None = None

    def start(self) -> None:
        if self.state is None:
            self.data = AppendFile(self.path, None)
            self.data.write(npy_header(0, self.hidden))
            self.ids = AppendFile(self.ids_path, None)
        else:
            self.data = AppendFile(self.path, NPY_HEADER + self.rows * self.hidden * 4)
            self.ids = AppendFile(self.ids_path, self.state["ids_bytes"])

    def write(self, ids: list[Any], scored: Scored) -> None:
        if self.data is None or self.ids is None or scored.vectors is None:
            return
        self.data.write(np.ascontiguousarray(scored.vectors, dtype="<f4").tobytes())
        self.ids.write(
            _jsonl(
                [
                    {"id": i, "windows": w, "tokens": t}
                    for i, w, t in zip(ids, scored.windows, scored.tokens, strict=True)
                ]
            )
        )
        self.rows += len(ids)

    def commit(self) -> dict[str, int]:
        if self.data is None or self.ids is None:
            return {"rows": self.rows, "ids_bytes": 0}
        self.data.commit()
        return {"rows": self.rows, "ids_bytes": self.ids.commit()}

    def close(self) -> None:
        for f in (self.data, self.ids):
            if f is not None:
                f.close()

    def finalize(self) -> None:
        if not self.path.exists():
            return  # already published
        with open(self.path, "r+b") as fh:
            fh.write(npy_header(self.rows, self.hidden))
            fh.flush()
            os.fsync(fh.fileno())

    def moves(self) -> list[tuple[Path, Path]]:
        return [(self.ids_path, self.sidecar), (self.path, self.out)]


def _result_field(task: str, hidden: int, aggregation: str) -> Any:
    """The Parquet column of a task's results: a fixed-size float list, or a list of structs."""
    import pyarrow as pa

    if task == "embed":
        return pa.field("embedding", pa.list_(pa.float32(), hidden))
    if task == "token-classification":
        label = [("entity", pa.string())] if aggregation == "none" else [("entity_group", pa.string())]
        index = [("index", pa.int64())] if aggregation == "none" else []
        spans = [("word", pa.string()), ("start", pa.int64()), ("end", pa.int64())]
        return pa.field("entities", pa.list_(pa.struct([*label, ("score", pa.float64()), *index, *spans])))
    if task == "text-classification":
        return pa.field("labels", pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())])))
    pred = pa.struct(
        [("score", pa.float64()), ("token", pa.int64()), ("token_str", pa.string()), ("sequence", pa.string())]
    )
    return pa.field("predictions", pa.list_(pa.list_(pred)))


class ParquetOutput(Output):
    def __init__(
        self,
        work: Path,
        task: str,
        hidden: int,
        id_kind: str,
        out: Path,
        state: dict[str, int] | None,
        aggregation: str = "simple",
    ) -> None:
        import pyarrow as pa

        self.task, self.hidden, self.out = task, hidden, out
        self.parts_dir, self.path = work / "parts", work / "final.parquet"
        self.parts = state["parts"] if state else 0
        self.pending: list[Any] = []
        id_type = pa.int64() if id_kind == "int" else pa.string()
        value = _result_field(task, hidden, aggregation)
        self.schema = pa.schema(
            [pa.field("id", id_type), value, pa.field("windows", pa.int32()), pa.field("tokens", pa.int32())]
        )

    def start(self) -> None:
        self.parts_dir.mkdir(exist_ok=True)
        for stale in self.parts_dir.iterdir():  # written after the last commit
            if stale.suffix == ".tmp" or _part_index(stale) >= self.parts:
                stale.unlink()

    def _part(self, index: int) -> Path:
        return self.parts_dir / f"part-{index:06d}.parquet"

    def write(self, ids: list[Any], scored: Scored) -> None:
        import pyarrow as pa

        if not ids:
            return
        if self.task == "embed" and scored.vectors is not None:
            flat = pa.array(np.ascontiguousarray(scored.vectors, dtype=np.float32).reshape(-1))
            values: Any = pa.FixedSizeListArray.from_arrays(flat, self.hidden)
        elif self.task in RESULT_KEYS:
            field = self.schema.field(result_key(self.task))
            values = pa.array(list(scored.predictions or []), type=field.type)
        else:
            preds = [[p] if p and isinstance(p[0], dict) else p for p in scored.predictions or []]
            values = pa.array(preds, type=self.schema.field("predictions").type)
        columns = [
            pa.array(ids, type=self.schema.field("id").type),
            values,
            pa.array(scored.windows, type=pa.int32()),
            pa.array(scored.tokens, type=pa.int32()),
        ]
        self.pending.append(pa.Table.from_arrays(columns, schema=self.schema))

    def commit(self) -> dict[str, int]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.pending:
            target = self._part(self.parts)
            tmp = target.with_name(target.name + ".tmp")
            pq.write_table(pa.concat_tables(self.pending), tmp)
            _fsync_file(tmp)
            os.replace(tmp, target)
            fsync_dir(self.parts_dir)
            self.pending = []
            self.parts += 1
        return {"parts": self.parts}

    def finalize(self) -> None:
        import pyarrow.parquet as pq

        if not self.parts_dir.exists():
            return  # already published
        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, self.schema) as writer:
            for index in range(self.parts):
                writer.write_table(pq.read_table(self._part(index), schema=self.schema))
        _fsync_file(tmp)
        os.replace(tmp, self.path)

    def moves(self) -> list[tuple[Path, Path]]:
        return [(self.path, self.out)]


def _part_index(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return 1 << 62


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


class ErrorsOutput:
    """``errors.jsonl``: {"row", "id", "reason"} per bad row; never the text."""

    def __init__(self, work: Path) -> None:
        self.path = work / "errors.jsonl"
        self.file: AppendFile | None = None

    def start(self, committed: int | None) -> None:
        self.file = AppendFile(self.path, committed)

    def write(self, records: list[dict[str, Any]]) -> None:
        if records and self.file is not None:
            self.file.write(_jsonl(records))

    def commit(self) -> int:
        return self.file.commit() if self.file is not None else 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def make_output(
    fmt: str,
    work: Path,
    *,
    task: str,
    hidden: int,
    id_kind: str,
    out: Path,
    sidecar: Path | None,
    state: dict[str, int] | None,
    aggregation: str = "simple",
) -> Output:
    if fmt == "jsonl":
        return JsonlOutput(work, task, out, state)
    if fmt == "npy":
        if sidecar is None:
            raise ValueError("npy output needs a sidecar path")
        return NpyOutput(work, hidden, out, sidecar, state)
    return ParquetOutput(work, task, hidden, id_kind, out, state, aggregation)
