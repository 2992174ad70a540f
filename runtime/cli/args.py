"""From parsed arguments to option objects: argparse ``dest`` names are the option objects' field names, so an
option object is filled by name, not copied field by field in each command."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def options_from(cls: type[T], args: argparse.Namespace) -> T:
    """``cls`` (a dataclass) built from the arguments named like its fields; fields without one keep defaults."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {name: value for name, value in vars(args).items() if name in names}
    return cls(**values)


def word_list(value: str) -> tuple[str, ...]:
    """A comma-separated list of words (e.g. fill-mask targets), blanks dropped."""
    return tuple(t.strip() for t in value.split(",") if t.strip())


def add_no_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip checksum verification at load")
