"""Deterministic input chunks for ``clinbert score --engine spark``: planned on the driver from the files alone.

A chunk is a range of rows of one input file: rows ``start + 1 .. stop`` (1-based, as ``clinbert score``
numbers them; ``stop = -1``: to the end of the file). The plan depends only on the files (sorted paths,
their rows) and ``chunk_rows``, never on the Spark master or its split sizes, so a resumed run (on any cluster)
cuts exactly the same chunks and can skip the finished ones.

- .parquet: row counts from the footer; a chunk's reader starts at the row group holding ``start``;
- .txt/.jsonl: one pass over the bytes on the driver finds the byte offset of each chunk's first line, so
  a chunk's reader seeks there;
- .csv: one chunk per file (a CSV reader cannot seek to a row); split big CSVs or convert them to Parquet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..score.readers import CsvReader, LineReader, ParquetReader, Reader, Row

SUFFIXES = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_BLOCK = 8 << 20


@dataclass(frozen=True)
class Chunk:
    index: int
    file: str  # absolute path
    fmt: str
    start: int  # rows before the chunk
    stop: int  # number of its last row, -1 for the end of the file
    offset: int  # byte offset of row start + 1 (.txt/.jsonl), else -1


@dataclass(frozen=True)
class InputFile:
    path: Path
    fmt: str
    rows: int | None  # None: unknown (.csv)
    offsets: list[int]  # .txt/.jsonl: byte offset after every ``step`` rows (offsets[k] = after k * step rows)
    id_kind: str


def list_inputs(source: Path, input_format: str | None) -> list[tuple[Path, str]]:
    """The input files, sorted: ``source`` itself, or the files with a data suffix under a folder (names
    starting with ``_`` or ``.`` are skipped, as Spark does; ``input_format`` overrides what the suffix says)."""
    if not source.exists():
        raise InputError(f"input not found: {source}")
    if source.is_file():
        candidates = [source]
    else:
        candidates = sorted(
            p
            for p in source.rglob("*")
            if p.is_file() and not any(part.startswith(("_", ".")) for part in p.relative_to(source).parts)
        )
    found: list[tuple[Path, str]] = []
    for path in candidates:
        known = SUFFIXES.get(path.suffix.lower())
        fmt = input_format or known
        if known is None and not source.is_file():
            fmt = None  # in a folder, only data files count
        if fmt is not None:
            found.append((path.resolve(), fmt))
        elif source.is_file():
            raise InputError(
                f"cannot tell the format of {path} from its suffix {path.suffix or '(none)'!r}: "
                "use .txt, .jsonl, .csv or .parquet (or --input-format)"
            )
    if not found:
        raise InputError(f"no .txt, .jsonl, .csv or .parquet files in {source}")
    return found


def open_file(path: Path, fmt: str, column: str, id_column: str | None) -> Reader:
    """The ``clinbert score`` reader for one file (checks its columns)."""
    if fmt in ("txt", "jsonl"):
        return LineReader(path, fmt, column, id_column)
    if fmt == "csv":
        return CsvReader(path, column, id_column)
    return ParquetReader(path, column, id_column)


def line_offsets(path: Path, step: int) -> tuple[int, list[int]]:
    """(lines, offsets): the number of lines as ``LineReader`` counts them, and the byte offset just after
    every ``step`` lines (offsets[0] = 0)."""
    offsets = [0]
    lines, position, last = 0, 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            count = block.count(b"\n")
            need = step * len(offsets) - lines  # newlines until the next boundary
            if count >= need:
                at = -1
                seen = 0
                while True:
                    at = block.find(b"\n", at + 1)
                    if at < 0:
                        break
                    seen += 1
                    if seen == need:
                        offsets.append(position + at + 1)
                        need += step
            lines += count
            position += len(block)
            last = block[-1:]
    if position and last != b"\n":
        lines += 1  # a last line without a newline
    return lines, offsets


def scan(source: Path, input_format: str | None, column: str, id_column: str | None, step: int) -> list[InputFile]:
    """Open every input file (columns checked, as ``clinbert score`` does) and count its rows."""
    files = []
    for path, fmt in list_inputs(source, input_format):
        if fmt == "txt" and id_column is not None:
            raise InputError("a .txt input has no columns: its ids are line numbers (drop --id-column)")
        reader = open_file(path, fmt, column, id_column)
        rows: int | None = reader.total_rows
        offsets: list[int] = []
        if fmt in ("txt", "jsonl"):
            rows, offsets = line_offsets(path, step)
        files.append(InputFile(path, fmt, rows, offsets, reader.id_kind))
    if len(files) > 1 and id_column is None:
        raise InputError(
            f"{source} holds {len(files)} files whose row numbers repeat: name an id column with --id-column"
        )
    return files


def plan(files: list[InputFile], chunk_rows: int, step: int) -> list[Chunk]:
    """Cut the files into chunks of ``chunk_rows`` rows (a multiple of ``step``, the offsets' spacing)."""
    if chunk_rows % step:
        raise ValueError("chunk_rows must be a multiple of the offsets' step")
    chunks: list[Chunk] = []
    for f in files:
        if f.rows is None:
            chunks.append(Chunk(len(chunks), str(f.path), f.fmt, 0, -1, -1))
            continue
        for start in range(0, max(f.rows, 1), chunk_rows):
            stop = min(start + chunk_rows, f.rows)
            offset = f.offsets[start // step] if f.offsets else -1
            chunks.append(Chunk(len(chunks), str(f.path), f.fmt, start, stop, offset))
    return chunks


def auto_chunk_rows(files: list[InputFile], parallelism: int, step: int, most: int = 100_000) -> int:
    """About four chunks per task slot (retries and stragglers cost little), at most ``most`` rows, at least
    one Arrow batch; a multiple of ``step``."""
    total = sum(f.rows or 0 for f in files)
    wanted = -(-total // max(1, 4 * parallelism))
    wanted = min(max(wanted, step), most)
    return -(-wanted // step) * step


def chunk_rows_of(chunk: Chunk, column: str, id_column: str | None, id_kind: str) -> Iterator[Row]:
    """The rows of ``chunk``, read with the ``clinbert score`` readers, ids as ``id_kind``."""
    reader = open_file(Path(chunk.file), chunk.fmt, column, id_column)
    for row in reader.rows(chunk.start, chunk.offset):
        if chunk.stop >= 0 and row.number > chunk.stop:
            return
        if row.id is not None:
            row.id = str(row.id) if id_kind == "str" else row.id
        yield row


def chunk_dict(chunk: Chunk) -> dict[str, Any]:
    return {
        "chunk": chunk.index,
        "file": chunk.file,
        "fmt": chunk.fmt,
        "start": chunk.start,
        "stop": chunk.stop,
        "offset": chunk.offset,
    }
