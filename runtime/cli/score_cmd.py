"""``clinbert score``: score a whole file (embeddings, fill-mask, entities or labels), streaming and resumable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..pooling import POOLINGS
from ..windows import LONG_TEXT_MODES
from .args import add_engine, add_no_verify, options_from, word_list

_EPILOG = """\
inputs: .txt (a line a text), .jsonl, .csv, .parquet, or - for stdin (.txt lines; --input-format jsonl).
outputs: .parquet (id, embedding|predictions|entities|labels, windows, tokens), .jsonl (the same, a row per line),
         .npy (float32 [rows, hidden]; ids in a sidecar NAME.ids.jsonl, embeddings only).
bad rows go to OUT.errors.jsonl ({"row", "id", "reason"}); a run stopped by Ctrl-C, a crash or kill -9
continues with --resume, with no row missing or written twice.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "score",
        help="score a whole file: embeddings, fill-mask, token or text classification; streaming and resumable",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path, help="bundle folder")
    p.add_argument("input", help="input file (.txt, .jsonl, .csv, .parquet) or - for stdin")
    p.add_argument("--out", type=Path, required=True, help="output file (.parquet, .npy or .jsonl)")
    p.add_argument(
        "--task", default="embed", choices=("embed", "fill-mask", "token-classification", "text-classification")
    )
    p.add_argument("--text-column", help="column holding the text (default: text)")
    p.add_argument("--id-column", help="column holding the row id (default: the row/line number, from 1)")
    p.add_argument(
        "--text-pair-column",
        help="text-classification: column holding each pair's second text (premise/hypothesis, query/passage)",
    )
    p.add_argument(
        "--input-format",
        choices=("txt", "jsonl", "csv", "parquet"),
        help="input format when the suffix does not tell (stdin is read as txt)",
    )
    p.add_argument(
        "--top-k", type=int, default=5, help="fill-mask: predictions per mask; text-classification: labels (default 5)"
    )
    p.add_argument(
        "--aggregation",
        dest="aggregation_strategy",
        default="simple",
        help="token-classification: none|simple|first|average|max (default simple)",
    )
    p.add_argument("--ignore-labels", type=word_list, help="token-classification: comma-separated labels to leave out")
    p.add_argument(
        "--function", dest="function_to_apply", help="text-classification: softmax|sigmoid|none (default: bundle's)"
    )
    p.add_argument("--targets", type=word_list, help="fill-mask: comma-separated candidate words to score")
    p.add_argument("--pooling", default="mean", choices=POOLINGS, help="embed: pooling (default mean)")
    p.add_argument("--no-normalize", dest="normalize", action="store_false", help="embed: skip L2 normalisation")
    p.add_argument(
        "--long-text",
        default="chunk",
        choices=LONG_TEXT_MODES,
        help="texts longer than the model's window: chunk (default), truncate, or error (row error)",
    )
    p.add_argument(
        "--window-rows",
        type=int,
        default=1024,
        help="rows read, sorted by length and scored together; also the checkpoint step (default 1024)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each with its own session and cores/N threads (default 1)",
    )
    p.add_argument(
        "--streams",
        type=int,
        help="batches in flight at once in each process, sharing its threads (default: 2 with 2+ cores, else 1)",
    )
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        help="padded tokens per inference call (default: the model's budget, 1024 on CPU); re-tune per machine",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    p.add_argument("--force", action="store_true", help="replace existing outputs / discard an interrupted run")
    p.add_argument(
        "--on-error",
        default="skip",
        choices=("skip", "fail"),
        help="bad rows: skip (to the errors file, default) or fail (stop at the first)",
    )
    p.add_argument("--errors", type=Path, help="errors file (default: OUT.errors.jsonl)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--variant", help="variant to use (default: int8 on CPU, fp16/fp32 on CUDA)")
    add_engine(
        p,
        extra=("spark",),
        extra_help="; spark: a Spark job (ONNX Runtime in each task) writing OUT as a folder of Parquet parts",
    )
    add_no_verify(p)
    spark = p.add_argument_group("Spark (--engine spark; needs the [spark] extra and Java 17+)")
    spark.add_argument("--master", help='Spark master, e.g. "local[8]" (default: spark-submit\'s or local[*])')
    spark.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, e.g. spark.task.cpus=2 (repeatable)",
    )
    spark.add_argument(
        "--chunk-rows",
        type=int,
        help="rows per committed chunk, a multiple of --window-rows (default: about 4 chunks per task slot)",
    )
    spark.add_argument("--threads", type=int, help="intra-op threads per Spark task (default: spark.task.cpus)")
    spark.add_argument(
        "--ship",
        default="path",
        choices=("path", "files"),
        help="path: executors read BUNDLE where it is (shared storage); files: copy it to executors (SparkContext.addArchive)",
    )
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    from ..score import ScoreOptions, run_score

    if args.engine == "spark":
        from ..spark.job import SparkScoreOptions, run_spark_score

        for flag, value in (("--streams", args.streams), ("--max-batch-tokens", args.max_batch_tokens)):
            if value is not None:
                raise InputError(f"{flag} is not for --engine spark: Spark runs one task per slot (see --threads)")

        run_spark_score(options_from(SparkScoreOptions, args))
        return 0
    for flag, value in (("--master", args.master), ("--chunk-rows", args.chunk_rows), ("--threads", args.threads)):
        if value is not None:
            raise InputError(f"{flag} is for --engine spark")

    run_score(options_from(ScoreOptions, args))
    return 0
