"""``clinbert score --engine spark``: a folder (or file) of notes → a folder of Parquet parts, resumable.

Spark's task retries keep a task's lost work inside the job (a retried chunk is rewritten whole, see
``commit``); a failed or killed *job* would restart from zero, so resuming is ours: the input is cut into
deterministic chunks (``chunks``), each chunk is scored by one Spark task and committed as its own Parquet
part with a manifest, and ``--resume`` skips the chunks already committed by the same job (same inputs, bundle
hash and options, recorded in ``OUT/_job.json``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import ClinBertError, InputError, require
from ..score.options import OutputExistsError, ResumeError
from ..tasks import EmbedOptions, MaskOptions
from .api import model_spec, task_spec
from .chunks import auto_chunk_rows, plan, scan
from .commit import JOB, MANIFESTS, SUCCESS, JobTask, finished, read_json, status_schema, write_json
from .session import build_session, parse_conf
from .worker import SHIP_MODES

FORMAT = "clinbert-spark-score"
VERSION = 1
_ERROR_LINE = re.compile(r"clinbert_onnx\.[\w.]*?(\w+Error): (.+)")


class SparkJobError(ClinBertError):
    """The Spark job failed (a task failed every retry, the cluster went away). Finished chunks are committed."""

    code = "spark_job_failed"


#: The tasks ``--engine spark`` scores (the classifier tasks run on the local engine).
SPARK_TASKS = ("embed", "fill-mask")


@dataclass(frozen=True)
class SparkScoreOptions:
    """What ``clinbert score --engine spark`` was asked; field names are ``clinbert score``'s option names.

    ``window_rows``: rows per Arrow batch, scored together (sorted by length); ``chunk_rows``: rows per
    committed chunk (None: about four chunks per task slot, at most 100,000 rows; a multiple of window_rows).
    ``master``/``spark_conf`` are used only when no session is passed to :func:`run_spark_score`."""

    bundle: Path
    input: str
    out: Path
    task: str = "embed"
    text_column: str | None = None
    id_column: str | None = None
    input_format: str | None = None
    top_k: int = 5
    targets: tuple[str, ...] | None = None
    pooling: str = "mean"
    normalize: bool = True
    long_text: str = "chunk"
    window_rows: int = 1024
    chunk_rows: int | None = None
    resume: bool = False
    force: bool = False
    quiet: bool = False
    device: str = "auto"
    variant: str | None = None
    verify: bool = True
    threads: int | None = None
    master: str | None = None
    spark_conf: tuple[str, ...] = ()
    ship: str = "path"
    # the local engine's options: refused when set to anything else
    workers: int = 1
    on_error: str = "skip"
    errors: Path | None = None
    text_pair_column: str | None = None

    @property
    def column(self) -> str:
        return self.text_column or "text"

    def check(self) -> None:
        if self.input == "-":
            raise InputError("--engine spark reads files: give a file or a folder, not stdin")
        if self.workers != 1:
            raise InputError("--workers is for the local engine; with --engine spark the master sets parallelism")
        if self.on_error != "skip" or self.errors is not None:
            raise InputError("--engine spark writes bad rows to the output's error column (no --on-error/--errors)")
        if self.text_pair_column is not None:
            raise InputError("--text-pair-column is for the local engine: --engine spark scores single texts")
        if self.task not in SPARK_TASKS:
            raise InputError(
                f"--engine spark scores {' and '.join(SPARK_TASKS)}; run --task {self.task} on the local engine "
                "(clinbert score without --engine spark, --workers N for more cores)"
            )
        if self.resume and self.force:
            raise InputError("--resume and --force contradict each other: --resume continues, --force starts over")
        if self.ship not in SHIP_MODES:
            raise InputError(f"--ship must be one of {', '.join(SHIP_MODES)}; got {self.ship!r}")
        for name, value in (("window-rows", self.window_rows), ("chunk-rows", self.chunk_rows)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"--{name} must be an integer >= 1; got {value!r}")
        if self.chunk_rows is not None and self.chunk_rows % self.window_rows:
            raise InputError("--chunk-rows must be a multiple of --window-rows")
        if self.id_column is not None and self.id_column == self.column:
            raise InputError("--id-column and --text-column name the same column")
        source = Path(self.input).resolve()
        if self.out.resolve() == source or source in self.out.resolve().parents:
            raise InputError("the output folder would be inside the input")
        parse_conf(self.spark_conf)
        task_spec(self.task, self.task_options())

    def task_options(self) -> EmbedOptions | MaskOptions:
        if self.task == "embed":
            return EmbedOptions(pooling=self.pooling, normalize=self.normalize, long_text=self.long_text)
        return MaskOptions(top_k=self.top_k, targets=self.targets, long_text=self.long_text)

    def result_options(self) -> dict[str, Any]:
        """The options that change what is written: a resumed run must use the same ones."""
        opts: dict[str, Any] = {
            "task": self.task,
            "input_format": self.input_format,
            "text_column": self.column,
            "id_column": self.id_column,
            "long_text": self.long_text,
            "window_rows": self.window_rows,
        }
        if self.task == "embed":
            opts.update(pooling=self.pooling, normalize=self.normalize)
        else:
            opts.update(top_k=self.top_k, targets=list(self.targets) if self.targets is not None else None)
        return opts


@dataclass(frozen=True)
class SparkScoreSummary:
    rows: int
    written: int
    errors: int
    tokens: int
    chunks: int
    skipped: int  # chunks committed by an earlier run
    retried: int  # chunks of this run that needed more than one attempt
    seconds: float
    out: Path

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _prepare_out(options: SparkScoreOptions) -> dict[str, Any] | None:
    """The saved identity of the run to resume, or None for a fresh run (an old one removed with --force)."""
    out = options.out
    saved = read_json(out / JOB) if (out / JOB).is_file() else None
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder: --engine spark writes a folder of Parquet parts")
    if saved is not None and saved.get("format") != FORMAT:
        raise ResumeError(f"{out / JOB} was not written by this version of clinbert score; use --force")
    if saved is not None and options.resume:
        return saved
    if out.exists() and any(out.iterdir()):
        if saved is None:
            raise OutputExistsError(f"{out} is not empty and holds no clinbert score job: refusing to touch it")
        if not options.force:
            raise OutputExistsError(f"{out} holds a run: continue it with --resume, or start over with --force")
        _remove_ours(out)
    return None


def _remove_ours(out: Path) -> None:
    strangers = [
        p.name
        for p in out.iterdir()
        if not (p.name in (JOB, SUCCESS, MANIFESTS) or re.fullmatch(r"\.?part-\d{6}\.parquet.*", p.name))
    ]
    if strangers:
        raise OutputExistsError(f"{out} holds files clinbert score did not write ({', '.join(strangers[:5])})")
    for p in out.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _check_same(saved: dict[str, Any], identity: dict[str, Any]) -> None:
    changed = [key for key in identity if saved.get(key) != identity[key]]
    if changed:
        raise ResumeError(
            f"the {', '.join(changed)} differ from the interrupted run's; resume with the same inputs, bundle and "
            "options, or start over with --force"
        )


def _job_failed(exc: BaseException) -> SparkJobError:
    """Our own error's class and message when a task raised one (they never hold note text); else a generic
    message: Spark's text can quote data."""
    match = _ERROR_LINE.search(str(exc))
    detail = (
        f"{match.group(1)}: {match.group(2)[:300]}" if match else "a task failed every attempt (see the Spark logs)"
    )
    return SparkJobError(f"the Spark job failed ({detail}); finished chunks are committed: rerun with --resume")


def run_spark_score(
    options: SparkScoreOptions, *, spark: Any = None, stderr: TextIO | None = None, crash_chunk: int = -1
) -> SparkScoreSummary:
    """Score ``options.input`` into the folder ``options.out`` on Spark (``spark``, or a session built from
    ``options.master``/``spark_conf``). Checks the options, inputs, outputs and bundle before starting Spark."""
    started = time.monotonic()
    err = stderr if stderr is not None else sys.stderr
    options.check()
    require("pyspark", "spark")
    files = scan(Path(options.input), options.input_format, options.column, options.id_column, options.window_rows)
    kinds = {f.id_kind for f in files}
    id_kind = kinds.pop() if len(kinds) == 1 else "str"
    saved = _prepare_out(options)
    spec = task_spec(options.task, options.task_options())
    load: dict[str, Any] = {
        "device": options.device,
        "variant": options.variant,
        "verify": options.verify,
        "threads": options.threads,
    }
    model = model_spec(options.bundle, options.task, **load)  # checked before Spark starts
    own = spark is None
    if own:
        spark = build_session(options.master, conf=parse_conf(options.spark_conf))
    try:
        if options.ship == "files":
            model = model_spec(options.bundle, options.task, spark=spark, ship="files", **load)
        chunk_rows = options.chunk_rows
        if chunk_rows is None:
            chunk_rows = (
                int(saved["options"]["chunk_rows"])
                if saved
                else auto_chunk_rows(files, spark.sparkContext.defaultParallelism, options.window_rows)
            )
        identity = {
            "format": FORMAT,
            "version": VERSION,
            "input": [
                {"path": str(f.path), "size": f.path.stat().st_size, "mtime_ns": f.path.stat().st_mtime_ns}
                for f in files
            ],
            "options": {**options.result_options(), "chunk_rows": chunk_rows},
            "model": {"manifest_sha256": model.manifest_sha256, "variant": options.variant, "device": options.device},
            "id_kind": id_kind,
        }
        if saved is not None:
            _check_same(saved, identity)
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        chunks = plan(files, chunk_rows, options.window_rows)
        out = options.out
        out.mkdir(parents=True, exist_ok=True)
        if saved is None:
            write_json(out / JOB, identity)  # first: a folder holding it is a job that --resume can continue
        (out / MANIFESTS).mkdir(exist_ok=True)
        pending = [c for c in chunks if finished(out, c.index, key) is None]
        statuses = (
            _run(
                spark,
                pending,
                JobTask(
                    str(out.resolve()),
                    model,
                    spec,
                    options.column,
                    options.id_column,
                    id_kind,
                    options.window_rows,
                    key,
                    {"bundle_sha256": model.manifest_sha256, "options": identity["options"]},
                    crash_chunk,
                ),
            )
            if pending
            else []
        )
    finally:
        if own:
            spark.stop()
    manifests = [finished(out, c.index, key) for c in chunks]
    if any(m is None for m in manifests):
        raise SparkJobError("the Spark job ended with chunks uncommitted; rerun with --resume")
    for stale in [*out.glob(".part-*.tmp"), *(out / MANIFESTS).glob(".*.tmp")]:
        stale.unlink(missing_ok=True)
    total = {k: sum(int(m[k]) for m in manifests if m) for k in ("rows", "written", "errors", "tokens")}
    summary = SparkScoreSummary(
        **total,
        chunks=len(chunks),
        skipped=len(chunks) - len(pending),
        retried=sum(1 for s in statuses if s["attempt"] > 0),
        seconds=time.monotonic() - started,
        out=out,
    )
    write_json(
        out / SUCCESS,
        {"rows": summary.rows, "written": summary.written, "errors": summary.errors, "chunks": summary.chunks},
    )
    if not options.quiet:
        print(
            f"clinbert score: {summary.rows:,} rows in {summary.chunks} chunks ({summary.skipped} done earlier), "
            f"{summary.written:,} written, {summary.errors:,} errors, {summary.seconds:.1f} s → {out}",
            file=err,
        )
    return summary


def _run(spark: Any, pending: list[Any], task: JobTask) -> list[dict[str, Any]]:
    """One Spark job: a task per pending chunk (``parallelize`` with one slice each), committed by the task."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql.pandas.types import from_arrow_schema

    rows = [(c.index, c.file, c.fmt, c.start, c.stop, c.offset) for c in pending]
    rdd = spark.sparkContext.parallelize(rows, len(rows))
    frame = spark.createDataFrame(rdd, "index long, file string, fmt string, start long, stop long, offset long")
    try:
        return [r.asDict() for r in frame.mapInArrow(task, from_arrow_schema(status_schema())).collect()]
    except KeyboardInterrupt:
        spark.sparkContext.cancelAllJobs()
        raise
    except (Py4JJavaError, PySparkException) as exc:
        raise _job_failed(exc) from None
