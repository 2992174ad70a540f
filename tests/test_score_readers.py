"""Readers: numbering, ids, skipping (resume) across row groups / blocks / byte offsets, and safe messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clinbert_onnx.errors import InputError
from clinbert_onnx.score import ScoreOptions
from clinbert_onnx.score.readers import open_reader


def _reader(path: Path, **kw: object):
    return open_reader(ScoreOptions(bundle=Path("unused"), input=str(path), out=path.with_suffix(".out.jsonl"), **kw))


def _ids(rows) -> list:
    return [(r.number, r.id, r.text) for r in rows]


def test_parquet_skip_across_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"k": list(range(100, 150)), "text": [f"t{i}" for i in range(50)]}), path, row_group_size=7)
    reader = _reader(path, id_column="k")
    assert reader.total_rows == 50 and reader.id_kind == "int"
    full = _ids(reader.rows())
    assert full[0] == (1, 100, "t0") and full[-1] == (50, 149, "t49")
    for skip in (0, 1, 6, 7, 8, 14, 49, 50):
        assert _ids(reader.rows(skip)) == full[skip:]


def test_csv_skip_and_strings(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("id,text\n" + "".join(f'{i},"line {i}, with comma"\n' for i in range(30)) + "31,\n")
    reader = _reader(path, id_column="id")
    full = list(reader.rows())
    assert (full[0].number, full[0].id, full[0].text) == (1, "0", "line 0, with comma")
    assert full[-1].error == "missing value in column 'text'"
    assert _ids(reader.rows(17)) == _ids(full[17:])


def test_csv_malformed_line_message_hides_content(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("id,text\n1,fine\n2,secret-note-content,extra field\n")
    with pytest.raises(InputError) as info:
        list(_reader(path, id_column="id").rows())
    assert "secret" not in str(info.value) and "Expected 2 columns" in str(info.value)


@pytest.mark.parametrize("fmt", ["txt", "jsonl"])
def test_line_readers_seek_to_the_committed_offset(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"n.{fmt}"
    lines = [f"row {i} é" for i in range(20)]
    if fmt == "txt":
        path.write_bytes(b"\xef\xbb\xbf" + "".join(t + "\n" for t in lines).encode())
    else:
        path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": t}) + "\n" for t in lines).encode())
    reader = _reader(path)
    full = list(reader.rows())
    assert [r.text for r in full] == lines and [r.id for r in full] == list(range(1, 21))
    assert full[-1].offset == path.stat().st_size
    resumed = list(reader.rows(skip=12, offset=full[11].offset))
    assert _ids(resumed) == _ids(full[12:])
    assert _ids(reader.rows(skip=12)) == _ids(full[12:])


def test_jsonl_id_types_follow_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    records: list[dict[str, object]] = [
        {"id": 1, "text": "a"},
        {"id": "2", "text": "b"},
        {"id": 3.5, "text": "c"},
        {"id": True, "text": "d"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = list(_reader(path, id_column="id").rows())
    assert rows[0].id == 1 and rows[0].error is None
    assert all(r.id is None and "id column" in (r.error or "") for r in rows[1:])
    records[0]["id"] = "one"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rows = list(_reader(path, id_column="id").rows())
    assert [r.id for r in rows[:2]] == ["one", "2"] and rows[2].error and rows[3].error


def test_txt_invalid_utf8_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "n.txt"
    path.write_bytes(b"ok\n\xff\xfe bad\nfine\n")
    rows = list(_reader(path).rows())
    assert [r.error for r in rows] == [None, "line is not valid UTF-8", None]


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet"])
def test_row_numbers_are_integer_ids_in_every_format(tmp_path: Path, fmt: str) -> None:
    """Regression: a CSV without an id column had ``id_kind == "str"`` while its ids were row numbers (ints), and
    the Parquet writer failed on them. An id column keeps its own kind: CSV strings, Parquet/JSON integers."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = tmp_path / f"n.{fmt}"
    table = pa.table({"k": [7, 8], "text": ["a", "b"]})
    if fmt == "txt":
        path.write_text("a\nb\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    elif fmt == "csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    reader = _reader(path)
    assert reader.id_kind == "int" and [r.id for r in reader.rows()] == [1, 2]
    if fmt != "txt":
        with_ids = _reader(path, id_column="k")
        kind = "str" if fmt == "csv" else "int"
        assert with_ids.id_kind == kind and [r.id for r in with_ids.rows()] == (["7", "8"] if kind == "str" else [7, 8])
