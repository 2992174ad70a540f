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


ENGINES = ("onnxruntime", "openvino", "auto")


def add_engine(p: argparse.ArgumentParser, extra: tuple[str, ...] = (), extra_help: str = "") -> None:
    p.add_argument(
        "--engine",
        default="onnxruntime",
        choices=(*ENGINES, *extra),
        help="inference engine: onnxruntime (default), openvino (CPU, the [openvino] extra; variant int8-static, "
        "else fp32) or auto (OpenVINO only with an int8-static variant on a CPU with AVX-512 VNNI or AMX)" + extra_help,
    )


def add_no_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip checksum verification at load")
