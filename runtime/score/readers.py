"""Streaming input readers: rows of (number, id, text[, text pair]) from .txt, .jsonl, .csv, .parquet or stdin.

Every reader streams: memory does not depend on the input's size. A row the reader cannot use (bad JSON, a
missing value) is yielded with ``error`` set rather than dropped, so it reaches the errors file. Problems with
the file itself (missing, unreadable, no such column) raise InputError when the reader is opened, before any
work starts. Messages never quote input text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import InputError, require
from .options import ScoreOptions

Id = int | str
_BOM = b"\xef\xbb\xbf"
_BATCH = 4096
_PROBE_LINES = 1000
_CSV_BLOCK = 8 << 20  # a CSV row must fit in one block


@dataclass(slots=True)
class Row:
    """One input row. ``number`` is 1-based (the line number for .txt/.jsonl); ``id`` is the id column's value
    or the number; ``error`` says why the row cannot be scored; ``offset`` is the byte offset just past the row
    in a .txt/.jsonl file (-1 elsewhere), so a resumed run can seek instead of re-reading; ``pair`` is the
    second text of a pair (``--text-pair-column``), None without one."""

    number: int
    id: Id | None
    text: str | None
    error: str | None = None
    offset: int = -1
    pair: str | None = None

    @property
    def item(self) -> str | dict[str, str] | None:
        """What the core scores: the text, or the pair ``{"text", "text_pair"}`` when the row has one."""
        if self.text is None or self.pair is None:
            return self.text
        return {"text": self.text, "text_pair": self.pair}


class Reader:
    """Base class. ``rows(skip, offset)`` yields the rows after the first ``skip`` (seeking to ``offset``
    where the reader supports it). ``id_kind`` ("int" | "str") fixes the id column's type in the output."""

    total_rows: int | None = None
    total_bytes: int | None = None
    #: the id column's kind, when there is one: each format decides it from its schema or first record
    column_id_kind: str = "str"

    def __init__(self, path: Path | None, id_column: str | None = None) -> None:
        self.path = path
        self.id_column = id_column

    @property
    def id_kind(self) -> str:
        """The output's id type, decided here only: row numbers (no id column) are integers in every format;
        an id column's ids are of its kind (CSV: strings; Parquet, JSON lines: integers if it holds integers)."""
        return "int" if self.id_column is None else self.column_id_kind

    def fingerprint(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        st = self.path.stat()
        return {"path": str(self.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def rows(self, skip: int = 0, offset: int = -1) -> Iterator[Row]:
        raise NotImplementedError


def open_reader(options: ScoreOptions) -> Reader:
    """Open the input named by ``options`` and check it (columns present, file readable)."""
    fmt = options.in_format
    path = None if options.from_stdin else Path(options.input)
    if path is not None:
        if not path.exists():
            raise InputError(f"input not found: {path}")
        if path.is_dir():
            raise InputError(f"input is a folder, not a file: {path}")
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    pair = options.text_pair_column
    if fmt in ("txt", "jsonl"):
        return LineReader(path, fmt, options.column, options.id_column, pair)
    require("pyarrow", "score")
    if path is None:
        raise InputError(f"{fmt} input cannot come from stdin: give a file (stdin takes .txt or .jsonl)")
    if fmt == "csv":
        return CsvReader(path, options.column, options.id_column, pair)
    return ParquetReader(path, options.column, options.id_column, pair)


# ---------------------------------------------------------------------------------------------- .txt / .jsonl
class LineReader(Reader):
    """.txt (a line a text, ids are line numbers) and .jsonl (an object a line), from a file or stdin."""

    def __init__(
        self, path: Path | None, fmt: str, column: str, id_column: str | None, pair_column: str | None = None
    ) -> None:
        super().__init__(path, id_column)
        self.fmt, self.column, self.pair_column = fmt, column, pair_column
        self._stdin_head: list[bytes] = []
        if path is not None:
            self.total_bytes = path.stat().st_size
        if fmt == "jsonl":
            self._probe()

    def _stream(self) -> IO[bytes]:
        return open(self.path, "rb") if self.path is not None else sys.stdin.buffer

    def _probe(self) -> None:
        """Check the first record: valid JSON with the text (and id) column; it fixes the id type."""
        name = str(self.path) if self.path is not None else "stdin"
        fh = self._stream()
        try:
            for number, raw in enumerate(fh, 1):
                if self.path is None:
                    self._stdin_head.append(raw)
                if not raw.strip():
                    if number >= _PROBE_LINES:
                        return  # nothing but blank lines so far: leave them to the row checks
                    continue
                try:
                    obj = json.loads(raw.removeprefix(_BOM) if number == 1 else raw)
                except ValueError:
                    raise InputError(f"{name} line {number} is not valid JSON: is this a JSON-lines file?") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{name} line {number} is not a JSON object: is this a JSON-lines file?")
                for col in (self.column, self.id_column, self.pair_column):
                    if col is not None and col not in obj:
                        keys = ", ".join(list(obj)[:20])
                        raise InputError(f"column {col!r} not found in the first record of {name} (keys: {keys})")
                if self.id_column is not None and type(obj[self.id_column]) is int:
                    self.column_id_kind = "int"
                return
        finally:
            if self.path is not None:
                fh.close()

    def rows(self, skip: int = 0, offset: int = -1) -> Iterator[Row]:
        fh = self._stream()
        try:
            number, position = 0, 0
            if offset > 0 and self.path is not None:
                fh.seek(offset)
                number, position = skip, offset
            lines: Iterator[bytes] = iter(fh)
            if self._stdin_head:
                head, self._stdin_head = self._stdin_head, []
                lines = _chain(head, lines)
            parse = self._txt if self.fmt == "txt" else self._jsonl
            for raw in lines:
                number += 1
                position += len(raw)
                if number <= skip:
                    continue
                if number == 1:
                    raw = raw.removeprefix(_BOM)
                row = parse(number, raw)
                row.offset = position if self.path is not None else -1
                yield row
        finally:
            if self.path is not None:
                fh.close()

    def _txt(self, number: int, raw: bytes) -> Row:
        try:
            text = raw.rstrip(b"\r\n").decode("utf-8")
        except UnicodeDecodeError:
            return Row(number, number, None, "line is not valid UTF-8")
        return Row(number, number, text)

    def _jsonl(self, number: int, raw: bytes) -> Row:
        unknown = number if self.id_column is None else None  # the id of a row that cannot be parsed
        if not raw.strip():
            return Row(number, unknown, None, "blank line")
        try:
            obj = json.loads(raw)
        except ValueError:
            return Row(number, unknown, None, "line is not valid JSON")
        if not isinstance(obj, dict):
            return Row(number, unknown, None, "line is not a JSON object")
        row_id: Id | None = number
        if self.id_column is not None:
            row_id, problem = _json_id(obj.get(self.id_column), self.id_kind, self.id_column)
            if problem is not None:
                return Row(number, row_id, None, problem)
        pair = obj.get(self.pair_column) if self.pair_column is not None else None
        return _text_row(number, row_id, obj.get(self.column), self.column, pair, self.pair_column)


def _chain(head: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from head
    yield from rest


def _json_id(value: object, kind: str, column: str) -> tuple[Id | None, str | None]:
    if value is None:
        return None, f"missing value in id column {column!r}"
    if type(value) is int:
        return (value if kind == "int" else str(value)), None
    if isinstance(value, str) and kind == "str":
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None, f"id column {column!r} holds invalid Unicode (lone surrogates)"
        return value, None
    if isinstance(value, str):
        return None, f"id column {column!r} holds a string where the first record holds an integer"
    return None, f"id column {column!r} holds a {type(value).__name__}, not a string or an integer"


def _text_row(
    number: int, row_id: Id | None, text: object, column: str, pair: object = None, pair_column: str | None = None
) -> Row:
    """The row, or its error: a missing or non-text value in the text (or pair) column; emptiness is the core's."""
    for value, name in ((text, column), (pair, pair_column)):
        if name is None:
            continue
        if value is None:
            return Row(number, row_id, None, f"missing value in column {name!r}")
        if not isinstance(value, str):
            return Row(number, row_id, None, f"column {name!r} holds a {type(value).__name__}, not text")
    return Row(number, row_id, str(text), pair=pair if isinstance(pair, str) else None)


# ---------------------------------------------------------------------------------------------- .csv / .parquet
def _is_text(arrow_type: Any) -> bool:
    import pyarrow.types as pat

    if pat.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return bool(pat.is_string(arrow_type) or pat.is_large_string(arrow_type) or str(arrow_type) == "string_view")


class _ArrowReader(Reader):
    """Shared row conversion for pyarrow record batches holding [text], [text, id] (and the pair column)."""

    def __init__(self, path: Path, column: str, id_column: str | None, pair_column: str | None = None) -> None:
        super().__init__(path, id_column)
        self.column, self.pair_column = column, pair_column
        schema = self._schema()
        for col in self._columns():
            if col not in schema.names:
                names = ", ".join(schema.names[:30])
                raise InputError(f"column {col!r} not found in {path} (columns: {names})")
        self._check_types(schema)

    def _schema(self) -> Any:
        raise NotImplementedError

    def _check_types(self, schema: Any) -> None:
        raise NotImplementedError

    def _batches(self, skip: int) -> Iterator[tuple[int, Any]]:
        """(number of the batch's first row, record batch) from row ``skip`` on."""
        raise NotImplementedError

    def _columns(self) -> list[str]:
        return [c for c in (self.column, self.id_column, self.pair_column) if c is not None]

    def rows(self, skip: int = 0, offset: int = -1) -> Iterator[Row]:
        for first, batch in self._batches(skip):
            texts = batch.column(self.column).to_pylist()
            ids = batch.column(self.id_column).to_pylist() if self.id_column is not None else None
            pairs = batch.column(self.pair_column).to_pylist() if self.pair_column is not None else None
            for i, text in enumerate(texts):
                number = first + i
                row_id: Id | None = number
                if ids is not None:
                    row_id = ids[i]
                    if row_id is None:
                        yield Row(number, None, None, f"missing value in id column {self.id_column!r}")
                        continue
                    if self.id_kind == "str" and not isinstance(row_id, str):
                        row_id = str(row_id)
                pair = pairs[i] if pairs is not None else None
                yield _text_row(number, row_id, text, self.column, pair, self.pair_column)


def _slice(batches: Iterator[Any], skip: int) -> Iterator[tuple[int, Any]]:
    """Drop the first ``skip`` rows of a stream of record batches; number the rest from skip + 1."""
    start = 0
    for batch in batches:
        end = start + batch.num_rows
        if end > skip:
            if start < skip:
                batch = batch.slice(skip - start)
                start = skip
            yield start + 1, batch
        start = end


class CsvReader(_ArrowReader):
    """CSV with a header row, read in blocks by pyarrow. Every column is read as strings (so are column ids).

    A malformed line (wrong number of fields) stops the run with its position: pyarrow cannot skip it without
    losing count of the rows after it."""

    def _schema(self) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        try:
            with pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK)) as probe:
                return probe.schema
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read {self.path} as CSV ({_arrow_reason(exc)})") from None

    def _check_types(self, schema: Any) -> None:
        self.column_id_kind = "str"

    def _batches(self, skip: int) -> Iterator[tuple[int, Any]]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            include_columns=self._columns(),
            column_types={col: pa.string() for col in self._columns()},
            strings_can_be_null=True,  # an empty field is a missing value
        )
        read = pacsv.ReadOptions(block_size=_CSV_BLOCK)
        try:
            reader = pacsv.open_csv(self.path, read_options=read, convert_options=convert)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read {self.path} as CSV ({_arrow_reason(exc)})") from None
        seen = [0]

        def batches() -> Iterator[Any]:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    raise InputError(
                        f"{self.path} is malformed after data row {seen[0]} ({_arrow_reason(exc)})"
                    ) from None
                seen[0] += batch.num_rows
                yield batch

        with reader:
            yield from _slice(batches(), skip)


class ParquetReader(_ArrowReader):
    def _schema(self) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"cannot read {self.path} as Parquet ({_arrow_reason(exc)})") from None
        self.total_rows = self._file.metadata.num_rows
        return self._file.schema_arrow

    def _check_types(self, schema: Any) -> None:
        import pyarrow.types as pat

        for column in (self.column, self.pair_column):
            if column is not None and not _is_text(schema.field(column).type):
                raise InputError(f"column {column!r} has type {schema.field(column).type}, not text")
        if self.id_column is not None:
            self.column_id_kind = "int" if pat.is_integer(schema.field(self.id_column).type) else "str"

    def _batches(self, skip: int) -> Iterator[tuple[int, Any]]:
        meta = self._file.metadata
        group, start = 0, 0
        while group < meta.num_row_groups and start + meta.row_group(group).num_rows <= skip:
            start += meta.row_group(group).num_rows
            group += 1
        if group == meta.num_row_groups:
            return
        batches = self._file.iter_batches(
            batch_size=_BATCH, row_groups=list(range(group, meta.num_row_groups)), columns=self._columns()
        )
        for first, batch in _slice(batches, skip - start):
            yield start + first, batch


def _arrow_reason(exc: BaseException) -> str:
    """Arrow's message without any quoted row content (CSV parse errors end with the offending line)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    parts = text.split(": ")
    if parts[0] == "CSV parse error":
        text = ": ".join(parts[:2])
    return text.split("'", 1)[0].strip()[:200]
