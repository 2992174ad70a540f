"""``clinbert token-classification``, ``text-classification`` and ``rerank``: fine-tuned derivatives from the
command line. A readable table by default, ``--json`` for one JSON object per line. Texts come as arguments,
or one per line on stdin (``-`` or nothing); ``rerank`` also reads them from a file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from .args import add_engine, add_no_verify, word_list
from .model_cmds import _load, _texts


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--variant", help="variant to use (default: int8 on CPU, fp16/fp32 on CUDA)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    add_engine(p)
    add_no_verify(p)


def top_k_arg(value: str) -> int | None:
    """``--top-k``: a positive integer, or ``all`` (every label)."""
    if value.lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'all', not {value!r}") from None


def register(sub: Any) -> None:
    p = sub.add_parser("token-classification", help="entities (NER, de-identification) from a token classifier")
    p.add_argument("bundle", type=Path)
    p.add_argument("texts", nargs="*", help="texts (or '-' / nothing to read one text per line from stdin)")
    p.add_argument("--aggregation", dest="aggregation_strategy", default="simple", help="none|simple|first|average|max")
    p.add_argument(
        "--ignore-labels", type=word_list, help="comma-separated labels to leave out (default: O and pseudo-labels)"
    )
    p.add_argument("--stride", type=int, help="tokens shared by the windows of a long note")
    p.add_argument("--long-text", default="chunk", choices=("chunk", "truncate", "error"))
    _common(p)
    p.set_defaults(func=cmd_token_classification)

    p = sub.add_parser("text-classification", help="labels (assertion status, document codes) of texts or pairs")
    p.add_argument("bundle", type=Path)
    p.add_argument("texts", nargs="*", help="texts (or '-' / nothing to read one text per line from stdin)")
    p.add_argument("--text-pair", help="second text of a pair, for every text (e.g. a hypothesis)")
    p.add_argument("--top-k", type=top_k_arg, default=1, help="labels per text, or 'all' (default 1)")
    p.add_argument("--function", dest="function_to_apply", help="softmax|sigmoid|none (default: the bundle's)")
    p.add_argument("--long-text", default="truncate", choices=("truncate", "error"))
    _common(p)
    p.set_defaults(func=cmd_text_classification)

    p = sub.add_parser("rerank", help="rank texts against a query with a cross-encoder")
    p.add_argument("bundle", type=Path)
    p.add_argument("query")
    p.add_argument("texts", nargs="*", help="texts, a file with one text per line, or '-' / nothing for stdin")
    p.add_argument("--raw-scores", action="store_true", help="logits instead of sigmoid scores")
    _common(p)
    p.set_defaults(func=cmd_rerank)


def cmd_token_classification(args: argparse.Namespace) -> int:
    texts = _texts(args)
    model = _load(args)
    results = model.token_classification(
        texts,
        aggregation_strategy=args.aggregation_strategy,
        ignore_labels=args.ignore_labels,
        stride=args.stride,
        long_text=args.long_text,
    )
    if args.json:
        for found in results:
            print(json.dumps({"entities": found}, ensure_ascii=False))
        return 0
    label = "entity" if args.aggregation_strategy.lower() == "none" else "entity_group"
    for i, found in enumerate(results, 1):
        print(f"text {i}: {len(found)} entities")
        if found:
            print(f"  {'label':<16} {'start':>6} {'end':>6} {'score':>7}  word")
        for e in found:
            print(f"  {e[label]:<16} {e['start']:>6} {e['end']:>6} {e['score']:>7.4f}  {e['word']}")
    return 0


def cmd_text_classification(args: argparse.Namespace) -> int:
    texts = _texts(args)
    if args.text_pair is not None:
        items: list[Any] = [{"text": t, "text_pair": args.text_pair} for t in texts]
    else:
        items = texts
    model = _load(args)
    results = model.text_classification(
        items, top_k=args.top_k, function_to_apply=args.function_to_apply, long_text=args.long_text
    )
    if args.json:
        for labels in results:
            print(json.dumps({"labels": labels}, ensure_ascii=False))
        return 0
    for i, labels in enumerate(results, 1):
        print(f"text {i}")
        for rank, row in enumerate(labels, 1):
            print(f"  {rank:>4}  {row['label']:<24} {row['score']:>9.4f}")
    return 0


def _rerank_texts(args: argparse.Namespace) -> list[str]:
    if len(args.texts) == 1 and args.texts[0] != "-" and Path(args.texts[0]).is_file():
        try:
            lines = Path(args.texts[0]).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {args.texts[0]}: {getattr(exc, 'strerror', None) or exc}") from None
        return [line for line in lines if line.strip()]
    texts = _texts(args)
    if not texts:
        raise InputError("rerank needs at least one text")
    return texts


def cmd_rerank(args: argparse.Namespace) -> int:
    texts = _rerank_texts(args)
    model = _load(args)
    ranked = model.rerank(args.query, texts, raw_scores=args.raw_scores)
    if args.json:
        for row in ranked:
            print(json.dumps(row))
        return 0
    print(f"{'rank':>4}  {'text':>5}  {'score':>9}")
    for rank, row in enumerate(ranked, 1):
        print(f"{rank:>4}  {row['index'] + 1:>5}  {row['score']:>9.4f}")
    return 0


def _print_head(bundle: Any) -> None:
    """``clinbert info``'s lines for a classifier bundle."""
    head = bundle.manifest.head
    if head is None:
        return
    extra = f", scheme {head.scheme}" if head.scheme else ""
    print(f"task       {bundle.task}: {len(head.labels)} labels, scores by {head.function}{extra}")
    print(f"labels     {', '.join(head.labels)}")
    if head.ignore_labels:
        print(f"ignored    {', '.join(head.ignore_labels)} (default ignore_labels)")
