"""The ``clinbert`` command line. Errors become one line on stderr and the error's exit code, never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import ClinBertError

COMMANDS = ("bundle_cmds", "model_cmds", "derived_cmds", "score_cmd", "serve_cmd", "bench_cmd")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="clinbert",
        description="Bio_ClinicalBERT without PyTorch: export, quantize, fill-mask, embed, serve.",
    )
    parser.add_argument("--version", action="version", version=f"clinbert-onnx {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (never input text)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(__name__):
                continue  # command not built into this version
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("clinbert_onnx").setLevel(
        logging.INFO if args.verbose or args.command == "export" else logging.WARNING
    )
    try:
        code = args.func(args)
    except ClinBertError as exc:
        print(f"clinbert {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"clinbert {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
