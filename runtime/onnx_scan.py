"""Find the external-data locations an ONNX file refers to, without the ``onnx`` package.

A minimal protobuf walk over the fields that can hold tensors (graph initializers, sparse initializers,
tensor-valued node attributes, subgraphs, functions). Large payloads (``raw_data``) are skipped by length, so
the walk over a 400 MB model reads only a few kilobytes of structure.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from .errors import BundleError

# Field numbers from onnx.proto.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INIT, _GRAPH_SPARSE_INIT = 1, 5, 15
_NODE_ATTRIBUTE = 5
_FUNCTION_NODE = 7
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


class _Malformed(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (field_number, payload_start, payload_end) for length-delimited fields; skip the others."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _Malformed
            yield field, pos, pos + length
            pos += length
        else:
            raise _Malformed
    if pos != end:
        raise _Malformed


def _tensor(buf: memoryview, start: int, end: int, out: list[str]) -> None:
    for field, s, e in _fields(buf, start, end):
        if field == _TENSOR_EXTERNAL_DATA:
            key = value = None
            for f2, s2, e2 in _fields(buf, s, e):
                if f2 == _ENTRY_KEY:
                    key = bytes(buf[s2:e2]).decode("utf-8", "replace")
                elif f2 == _ENTRY_VALUE:
                    value = bytes(buf[s2:e2]).decode("utf-8", "replace")
            if key == "location" and value is not None:
                out.append(value)


def _sparse(buf: memoryview, start: int, end: int, out: list[str]) -> None:
    for field, s, e in _fields(buf, start, end):
        if field in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(buf, s, e, out)


def _node(buf: memoryview, start: int, end: int, out: list[str]) -> None:
    for field, s, e in _fields(buf, start, end):
        if field != _NODE_ATTRIBUTE:
            continue
        for f2, s2, e2 in _fields(buf, s, e):
            if f2 in (_ATTR_T, _ATTR_TENSORS):
                _tensor(buf, s2, e2, out)
            elif f2 in (_ATTR_G, _ATTR_GRAPHS):
                _graph(buf, s2, e2, out)
            elif f2 in (_ATTR_SPARSE, _ATTR_SPARSES):
                _sparse(buf, s2, e2, out)


def _graph(buf: memoryview, start: int, end: int, out: list[str]) -> None:
    for field, s, e in _fields(buf, start, end):
        if field == _GRAPH_NODE:
            _node(buf, s, e, out)
        elif field == _GRAPH_INIT:
            _tensor(buf, s, e, out)
        elif field == _GRAPH_SPARSE_INIT:
            _sparse(buf, s, e, out)


def external_data_locations(path: str | Path) -> list[str]:
    """Every ``location`` an ONNX model's tensors point to (empty for a self-contained file)."""
    out: list[str] = []
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = memoryview(mm)
            try:
                for field, s, e in _fields(buf, 0, len(buf)):
                    if field == _MODEL_GRAPH:
                        _graph(buf, s, e, out)
                    elif field == _MODEL_FUNCTIONS:
                        for f2, s2, e2 in _fields(buf, s, e):
                            if f2 == _FUNCTION_NODE:
                                _node(buf, s2, e2, out)
            finally:
                buf.release()
    except _Malformed:
        raise BundleError(f"{path} is not a well-formed ONNX file") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    return out
