"""Typed JSON records: the machinery behind the bundle schema's frozen dataclasses (``schema.py``).

A record's field annotations decide how each key is read (:data:`_SCALARS`, or another record by class name);
a field with a default may be absent; unknown keys are kept in ``extra`` and written back. Errors name the
manifest path of the offending field. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, fields
from typing import Any, TypeVar

from .errors import BundleError

OMIT_NONE = {"omit_none": True}  # field metadata: not written when None (absent from older bundles)
NOT_A_KEY = {"key": False}  # field metadata: not a JSON key (a variant's name is its key in `variants`)
R = TypeVar("R", bound="Record")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("an integer")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("a number")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("true or false")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _obj(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("an object")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("a list")
    return value


#: How each field annotation is read from JSON (records are looked up by class name).
_SCALARS: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "float": _float,
    "bool": _bool,
    "str": _str,
    "tuple[str, ...]": lambda v: tuple(_str(x) for x in _list(v)),
    "Mapping[str, int]": lambda v: {str(k): _int(x) for k, x in _obj(v).items()},
    "Mapping[str, float]": lambda v: {str(k): _float(x) for k, x in _obj(v).items()},
    "Mapping[str, str | None]": lambda v: {str(k): None if x is None else _str(x) for k, x in _obj(v).items()},
}
_RECORDS: dict[str, type[Record]] = {}


def _read_field(data: dict[str, Any], f: Field[Any], path: str) -> Any:
    kind = str(f.type)
    nullable = kind.endswith(" | None")
    kind = kind.removesuffix(" | None")
    has_default = f.default is not MISSING or f.default_factory is not MISSING
    value = data.get(f.name)
    if value is None:
        if f.name in data and not (nullable or has_default):
            raise BundleError(f"manifest field '{path}' must not be null")
        if has_default:
            return f.default_factory() if f.default_factory is not MISSING else f.default
        if nullable:
            return None
        raise BundleError(f"manifest is missing '{path}'")
    if kind in _RECORDS:
        return _RECORDS[kind].from_dict(value, path)
    if kind.startswith("Mapping[str, ") and kind[13:-1] in _RECORDS:
        record = _RECORDS[kind[13:-1]]
        return {str(k): record.from_dict(v, f"{path}.{k}") for k, v in _checked(_obj, value, path).items()}
    return _checked(_SCALARS[kind], value, path)


def _checked(conv: Callable[[Any], Any], value: Any, path: str) -> Any:
    try:
        return conv(value)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"manifest field '{path}' must be {exc}") from None


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _encode(v) for k, v in value.items()}
    return value


class Record:
    """Base of the manifest records. Field annotations decide how a field is read (see ``_SCALARS``); a field
    with a default may be absent; ``extra`` holds the keys the record does not know."""

    RESERVED: tuple[str, ...] = ()
    extra: Mapping[str, Any]

    def __init_subclass__(cls) -> None:
        _RECORDS[cls.__name__] = cls

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The JSON keys this record writes, in order (``format``/``format_version`` first for the manifest)."""
        own = [f.name for f in fields(cls) if f.name != "extra" and f.metadata.get("key") is not False]  # type: ignore[arg-type]
        return (*cls.RESERVED, *own)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra" or f.metadata.get("key") is False or (value is None and f.metadata.get("omit_none")):
                continue
            out[f.name] = _encode(value)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        obj = _checked(_obj, data, where or ".")
        known = set(cls.RESERVED)
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            known.add(f.name)
            if f.name != "extra" and f.metadata.get("key") is not False:
                values[f.name] = _read_field(obj, f, f"{where}.{f.name}" if where else f.name)
        values["extra"] = {k: v for k, v in obj.items() if k not in known}
        return cls(**values)


def as_object(value: Any, path: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else a BundleError naming the manifest ``path``."""
    result: dict[str, Any] = _checked(_obj, value, path)
    return result


__all__ = ["NOT_A_KEY", "OMIT_NONE", "Record", "as_object"]
