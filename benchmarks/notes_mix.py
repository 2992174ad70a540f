"""A realistic length mix of clinical texts, 5 to 600 tokens, for ``clinbert score`` benchmarks.

Overnight scoring jobs see mostly short texts (problem-list entries, single sentences, short assessments) and
a tail of long ones (note sections, whole notes). The mix, drawn with a fixed seed from the shipped corpus
(``tests/data/clinical_corpus.txt``, 600 clinical sentences) and a synthetic discharge summary
(``tests/data/long_note.txt``):

=============  =====  ================================================================  ==============
kind           share  what                                                              tokens
=============  =====  ================================================================  ==============
sentence       45 %   one corpus sentence                                               6 - 88
paragraph      25 %   2 to 6 consecutive corpus sentences                               ~20 - 200
section        15 %   an excerpt of the long note, length drawn uniformly               60 - 250
note           15 %   an excerpt of the long note, length drawn uniformly               250 - 600
=============  =====  ================================================================  ==============

Token counts include [CLS] and [SEP] and are measured with the bundle's own tokenizer (pass ``--bundle``);
excerpts start at a random token and end on a word boundary. ``python benchmarks/notes_mix.py --bundle B
--rows N --out notes.parquet`` writes ``note_id`` and ``note_text`` (.parquet, .jsonl or .txt) and prints
the length distribution. ``make_mix`` is what the benchmark imports.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SEED = 20240611
KINDS = (("sentence", 0.45), ("paragraph", 0.25), ("section", 0.15), ("note", 0.15))
RANGES = {"section": (60, 250), "note": (250, 600)}
MIN_TOKENS, MAX_TOKENS = 5, 600


def _tokenizer(bundle: Path) -> Any:
    from clinbert_onnx.bundle import open_bundle
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / open_bundle(bundle).tokenizer.file))
    tok.no_truncation()
    tok.no_padding()
    return tok


class _Excerpts:
    """Excerpts of the long note with an exact-ish token count, cut at word boundaries."""

    def __init__(self, tok: Any) -> None:
        self.text = " ".join((DATA / "long_note.txt").read_text(encoding="utf-8").split())
        enc = tok.encode(self.text, add_special_tokens=False)
        self.offsets = enc.offsets
        self.word_ids = enc.word_ids
        self.tok = tok

    def take(self, rng: random.Random, tokens: int) -> str:
        content = tokens - 2
        n = len(self.offsets)
        start = rng.randrange(0, n - content)
        while start > 0 and self.word_ids[start] == self.word_ids[start - 1]:
            start -= 1  # start on a word
        end = start + content  # exclusive
        while end < n and end > start + 1 and self.word_ids[end] == self.word_ids[end - 1]:
            end -= 1  # end on a word
        return self.text[self.offsets[start][0] : self.offsets[end - 1][1]]


def make_mix(bundle: Path, rows: int, seed: int = SEED) -> tuple[list[str], list[str], list[int]]:
    """(kinds, texts, token counts) for ``rows`` rows of the mix."""
    tok = _tokenizer(bundle)
    corpus = [line for line in (DATA / "clinical_corpus.txt").read_text(encoding="utf-8").splitlines() if line]
    excerpts = _Excerpts(tok)
    rng = random.Random(seed)
    names = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    kinds, texts = [], []
    for _ in range(rows):
        kind = rng.choices(names, weights)[0]
        if kind == "sentence":
            text = rng.choice(corpus)
        elif kind == "paragraph":
            start = rng.randrange(len(corpus))
            text = " ".join(corpus[(start + i) % len(corpus)] for i in range(rng.randint(2, 6)))
        else:
            low, high = RANGES[kind]
            text = excerpts.take(rng, rng.randint(low, high))
        kinds.append(kind)
        texts.append(text)
    counts = [len(e.ids) for e in tok.encode_batch(texts)]
    for i, n in enumerate(counts):  # re-tokenizing an excerpt can shift a token or two: keep within range
        while n > MAX_TOKENS:
            texts[i] = texts[i].rsplit(" ", 1)[0]
            n = len(tok.encode(texts[i]).ids)
        counts[i] = n
    if min(counts) < MIN_TOKENS:
        raise SystemExit(f"a text has {min(counts)} tokens, under {MIN_TOKENS}")
    return kinds, texts, counts


def describe(kinds: list[str], counts: list[int]) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(counts)
    buckets = [(5, 32), (33, 64), (65, 128), (129, 256), (257, 512), (513, 600)]
    return {
        "rows": len(counts),
        "tokens_total": int(arr.sum()),
        "tokens_mean": round(float(arr.mean()), 1),
        "tokens_p50_p90_p99_max": [int(np.percentile(arr, p)) for p in (50, 90, 99)] + [int(arr.max())],
        "share_by_kind": {k: round(kinds.count(k) / len(kinds), 3) for k, _ in KINDS},
        "share_by_tokens": {f"{lo}-{hi}": round(float(((arr >= lo) & (arr <= hi)).mean()), 3) for lo, hi in buckets},
    }


def write(path: Path, texts: list[str]) -> None:
    ids = [f"note-{i:07d}" for i in range(len(texts))]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"note_id": ids, "note_text": texts}), path, row_group_size=10_000)
    elif path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for i, t in zip(ids, texts, strict=True):
                fh.write(json.dumps({"note_id": i, "note_text": t}) + "\n")
    else:
        path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="bundle whose tokenizer measures the lengths")
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, required=True, help=".parquet, .jsonl or .txt")
    args = ap.parse_args()
    kinds, texts, counts = make_mix(args.bundle, args.rows, args.seed)
    write(args.out, texts)
    print(json.dumps(describe(kinds, counts), indent=1))


if __name__ == "__main__":
    main()
