"""``clinbert fill-mask`` and ``clinbert embed``: a readable table by default, ``--json`` for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..pooling import POOLINGS
from ..windows import LONG_TEXT_MODES
from .args import add_engine, add_no_verify, word_list


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", type=Path)
    p.add_argument("texts", nargs="*", help="texts (or '-' / nothing to read one text per line from stdin)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--variant", help="variant to use (default: int8 on CPU, fp16/fp32 on CUDA)")
    p.add_argument("--long-text", default="chunk", choices=LONG_TEXT_MODES)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_engine(p)
    add_no_verify(p)


def register(sub: Any) -> None:
    p = sub.add_parser("fill-mask", help="predict [MASK] tokens")
    _common(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--targets", type=word_list, help="comma-separated candidate words to score")
    p.set_defaults(func=cmd_fill_mask)

    p = sub.add_parser("embed", help="sentence embeddings")
    _common(p)
    p.add_argument("--pooling", default="mean", choices=POOLINGS)
    p.add_argument("--no-normalize", dest="normalize", action="store_false", help="skip L2 normalisation")
    p.set_defaults(func=cmd_embed)


def _texts(args: argparse.Namespace) -> list[str]:
    from ..errors import InputError

    if not args.texts or args.texts == ["-"]:
        if sys.stdin.isatty():
            raise InputError("give texts as arguments or pipe them on stdin, one per line")
        try:
            lines = [line.rstrip("\n") for line in sys.stdin]
        except UnicodeDecodeError:
            raise InputError("stdin is not valid UTF-8") from None
        return lines
    return list(args.texts)


def _load(args: argparse.Namespace) -> Any:
    from ..model import ClinicalBert

    return ClinicalBert.load(
        args.bundle, device=args.device, variant=args.variant, verify=args.verify, engine=args.engine
    )


def cmd_fill_mask(args: argparse.Namespace) -> int:
    texts = _texts(args)
    model = _load(args)
    result = model.predict_masks(texts, top_k=args.top_k, targets=args.targets, long_text=args.long_text)
    if args.json:
        for preds, windows in zip(result.predictions, result.windows, strict=True):
            print(json.dumps({"predictions": preds, "windows": windows}, ensure_ascii=False))
        return 0
    for i, preds in enumerate(result.predictions):
        per_mask = [preds] if preds and isinstance(preds[0], dict) else preds
        for m, row in enumerate(per_mask):
            label = f"text {i + 1}" + (f", mask {m + 1}" if len(per_mask) > 1 else "")
            print(label)
            print(f"  {'rank':>4}  {'token':<20} {'score':>8}")
            for rank, p in enumerate(row, 1):
                print(f"  {rank:>4}  {p['token_str']:<20} {p['score']:>8.4f}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    texts = _texts(args)
    model = _load(args)
    result = model.encode(texts, pooling=args.pooling, normalize=args.normalize, long_text=args.long_text)
    if args.json:
        for vec, windows, tokens in zip(result.vectors, result.windows, result.tokens, strict=True):
            print(json.dumps({"embedding": [round(float(x), 7) for x in vec], "windows": windows, "tokens": tokens}))
        return 0
    print(f"{'#':>3}  {'tokens':>6}  {'windows':>7}  {'norm':>6}  first values")
    for i, (vec, windows, tokens) in enumerate(zip(result.vectors, result.windows, result.tokens, strict=True), 1):
        head = " ".join(f"{x:+.4f}" for x in vec[:6])
        print(f"{i:>3}  {tokens:>6}  {windows:>7}  {float((vec**2).sum() ** 0.5):6.3f}  [{head} ...] ({len(vec)} dims)")
    return 0
