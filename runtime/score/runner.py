"""``run_score``: read a window of rows → check them → score → write → checkpoint; repeat; publish.

Memory is bounded by the window (``--window-rows``) times the windows in flight (1, or ``2 N`` with N workers):
rows are streamed from the reader, and each window's results are written and committed before more is read.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..bundle import Bundle, open_bundle
from ..errors import InputError, NoMaskHeadError, TaskNotServedError, require
from ..schema import CLASSIFIER_TASKS, ONNXRUNTIME
from .checkpoint import WorkDir, check_same_job, publish
from .engine import TaskSpec
from .options import OutputExistsError, RowError, ScoreOptions
from .progress import Progress, Stats, summary_lines
from .readers import Row, open_reader
from .workers import LoadSpec, make_scorer
from .writers import ErrorsOutput, make_output


@dataclass
class Chunk:
    """One window of input rows; ``items`` are the ones to score, texts or ``{"text", "text_pair"}`` pairs
    (``positions`` index them into ``rows``), ``failures`` the (index, reason) of rows refused before scoring."""

    rows: list[Row]
    items: list[Any]
    positions: list[int]
    failures: list[tuple[int, str]]


@dataclass(frozen=True)
class ScoreSummary:
    rows: int
    written: int
    errors: int
    long_rows: int
    long_windows: int
    tokens: int
    seconds: float
    rows_this_run: int
    resumed_from: int
    out: Path
    errors_path: Path

    @property
    def rows_per_s(self) -> float:
        return self.rows_this_run / self.seconds if self.seconds > 0 else 0.0


def prepare(rows: list[Row]) -> Chunk:
    """Set aside rows the reader could not give a text for; everything about the text itself (e.g. "has a
    mask", an empty pair member) is decided by ``ClinicalBert.prepare``."""
    chunk = Chunk(rows, [], [], [])
    for i, row in enumerate(rows):
        if row.error is not None or row.text is None:
            chunk.failures.append((i, row.error or "missing text"))
        elif not row.text.strip():
            chunk.failures.append((i, "empty text"))
        else:
            chunk.items.append(row.item)
            chunk.positions.append(i)
    return chunk


def windows_of(rows: Iterator[Row], size: int) -> Iterator[Chunk]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield prepare(batch)
            batch = []
    if batch:
        yield prepare(batch)


def _check_outputs(options: ScoreOptions, work: WorkDir) -> bool:
    """Decide between a fresh run and a resumed one; refuse to clobber anything without --force."""
    if options.resume and work.exists():
        return True
    if options.resume and options.out.exists():
        raise OutputExistsError(
            f"{options.out} is already complete (there is no {work.path.name} to resume); use --force to score again"
        )
    if work.exists() and not options.force:
        raise OutputExistsError(
            f"{work.path} holds an interrupted run: continue it with --resume, or start over with --force"
        )
    dests = [options.out, options.errors_path] + ([options.sidecar_path] if options.sidecar_path else [])
    for dest in dests:
        if not dest.parent.is_dir():
            raise InputError(f"output folder does not exist: {dest.parent}")
        if dest.exists() and not dest.is_file():
            raise InputError(f"{dest} exists and is not a regular file")
        if dest.exists() and not options.force:
            raise OutputExistsError(f"{dest} exists: use --force to replace it (or --resume to continue a run)")
    return False


def _check_task(options: ScoreOptions, bundle: Bundle) -> None:
    if options.task in CLASSIFIER_TASKS and bundle.task != options.task:
        raise TaskNotServedError(
            f"bundle {bundle.model_id} is a {bundle.task} bundle: it cannot serve {options.task} (use --task embed"
            + (f" or --task {bundle.task})" if bundle.task in CLASSIFIER_TASKS else ")")
        )
    if options.task == "fill-mask" and not bundle.has_mlm_head:
        raise NoMaskHeadError(
            f"bundle {bundle.model_id} has no masked-LM head: it serves embeddings only (use --task embed)"
        )
    if options.targets is not None:
        from tokenizers import Tokenizer

        from ..fillmask import resolve_targets

        tokenizer = Tokenizer.from_file(str(bundle.path / bundle.tokenizer.file))
        _, notes = resolve_targets(tokenizer, list(options.targets))
        for note in notes:  # once per run (the scoring calls themselves do not warn)
            warnings.warn(note, UserWarning, stacklevel=3)
    if options.out_format == "parquet":
        require("pyarrow", "score")


def _model_identity(bundle: Bundle, info: dict[str, Any]) -> dict[str, Any]:
    variant = bundle.variants[info["variant"]]
    identity = {
        "model_id": bundle.model_id,
        "variant": variant.name,
        "device": info["device"],
        "sha256": [bundle.files[f].sha256 if f in bundle.files else None for f in variant.files],
    }
    if info.get("engine", ONNXRUNTIME) != ONNXRUNTIME:  # absent for ONNX Runtime: older runs still resume
        identity["engine"] = info["engine"]
    return identity


class _Job:
    """One run of the job (fresh or resumed): the scoring loop, then finalize and publish."""

    def __init__(
        self,
        options: ScoreOptions,
        reader: Any,
        work: WorkDir,
        bundle: Bundle,
        identity: dict[str, Any],
        saved: dict[str, Any] | None,
        err: TextIO,
    ) -> None:
        self.options, self.reader, self.work, self.bundle, self.identity, self.err = (
            options,
            reader,
            work,
            bundle,
            identity,
            err,
        )
        self.state: str = saved.get("state", "running") if saved else "running"
        self.stats = Stats.from_dict(saved.get("stats") if saved else None)
        self.rows_done = int(saved["rows_done"]) if saved else 0
        self.offset = int(saved.get("input_offset", -1)) if saved else -1
        self.out_state: dict[str, int] | None = saved["output"] if saved else None
        self.err_bytes: int | None = int(saved["errors_bytes"]) if saved else None
        self.start_rows = self.rows_done
        self.output = make_output(
            options.out_format,
            work.path,
            task=options.task,
            aggregation=options.aggregation_strategy.lower(),
            hidden=bundle.hidden_size,
            id_kind=reader.id_kind,
            out=options.out,
            sidecar=options.sidecar_path,
            state=self.out_state,
        )
        self.errors = ErrorsOutput(work.path)

    def _commit(self) -> None:
        self.out_state, self.err_bytes = self.output.commit(), self.errors.commit()
        self._save()

    def _save(self) -> None:
        self.work.save(
            {
                **self.identity,
                "state": self.state,
                "rows_done": self.rows_done,
                "input_offset": self.offset,
                "output": self.out_state,
                "errors_bytes": self.err_bytes,
                "stats": self.stats.as_dict(),
            }
        )

    def score(self, scorer: Any, spec: TaskSpec) -> None:
        options = self.options
        self.output.start()
        self.errors.start(self.err_bytes)
        self._commit()
        show = options.progress if options.progress is not None else self.err.isatty()
        progress = Progress(
            self.err,
            show and not options.quiet,
            total_rows=self.reader.total_rows,
            total_bytes=self.reader.total_bytes,
            start_rows=self.rows_done,
            start_bytes=max(self.offset, 0),
        )
        capacity = int(scorer.info["max_length"]) - 2
        chunks = windows_of(self.reader.rows(self.rows_done, self.offset), options.window_rows)
        try:
            for chunk, scored in scorer.imap(spec, chunks, progress.advance):
                failures = sorted(chunk.failures + [(chunk.positions[p], why) for p, why in scored.failed])
                if failures and options.on_error == "fail":
                    row = chunk.rows[failures[0][0]]
                    raise RowError(
                        f"row {row.number} (id {row.id!r}): {failures[0][1]} "
                        "(--on-error skip writes bad rows to the errors file instead)"
                    )
                ids = [chunk.rows[chunk.positions[p]].id for p in scored.ok]
                self.output.write(ids, scored)
                self.errors.write(
                    [{"row": chunk.rows[i].number, "id": chunk.rows[i].id, "reason": why} for i, why in failures]
                )
                stats = self.stats
                stats.rows += len(chunk.rows)
                stats.written += len(ids)
                stats.errors += len(failures)
                stats.tokens += sum(scored.tokens)
                for windows, tokens in zip(scored.windows, scored.tokens, strict=True):
                    if tokens > capacity:
                        stats.long_rows += 1
                        stats.long_windows += windows
                self.rows_done, self.offset = chunk.rows[-1].number, chunk.rows[-1].offset
                self._commit()
                progress.commit(self.rows_done, self.offset, stats.errors)
        except KeyboardInterrupt:
            progress.close()
            print(
                f"clinbert score: stopped; rows 1-{self.rows_done:,} are committed: "
                "run the same command with --resume to continue",
                file=self.err,
            )
            raise
        finally:
            self.output.close()
            self.errors.close()
            progress.close()
        self.state = "finalizing"
        self._save()

    def finish(self) -> None:
        if self.state == "finalizing":
            self.output.finalize()
            self.state = "publishing"
            self._save()
        for src, dst in [(self.errors.path, self.options.errors_path), *self.output.moves()]:
            publish(src, dst)
        self.work.remove()


def run_score(options: ScoreOptions, *, stderr: TextIO | None = None) -> ScoreSummary:
    """Score ``options.input`` into ``options.out``. Raises ClinBertError subclasses; see ``clinbert score``.

    Order of checks: options, then the input (exists, readable, columns), then the outputs (exist? resumable?),
    then the bundle and task; only then are models loaded and rows read.
    """
    started = time.monotonic()
    err = stderr if stderr is not None else sys.stderr
    options.check()
    reader = open_reader(options)
    work = WorkDir(options.work_dir)
    resuming = _check_outputs(options, work)
    bundle = open_bundle(options.bundle)
    _check_task(options, bundle)
    spec = TaskSpec(options.task, options.task_options(), options.top_k)
    scorer: Any = None
    interrupted = True
    try:
        scorer = make_scorer(
            LoadSpec(
                options.bundle,
                options.device,
                options.variant,
                options.verify,
                0,
                options.engine,
                options.streams,
                options.max_batch_tokens,
            ),
            options.workers,
        )
        identity = {
            "input": reader.fingerprint(),
            "options": options.result_options(),
            "model": _model_identity(bundle, scorer.info),
        }
        saved = work.load() if resuming else None
        if saved is not None:
            check_same_job(saved, identity)
        else:
            work.create()
        job = _Job(options, reader, work, bundle, identity, saved, err)
        if job.state == "running":
            job.score(scorer, spec)
        job.finish()
        interrupted = False
    finally:
        if scorer is not None:
            scorer.close(cancel=interrupted)
    seconds = time.monotonic() - started
    stats = job.stats
    summary = ScoreSummary(
        rows=stats.rows,
        written=stats.written,
        errors=stats.errors,
        long_rows=stats.long_rows,
        long_windows=stats.long_windows,
        tokens=stats.tokens,
        seconds=seconds,
        rows_this_run=stats.rows - job.start_rows,
        resumed_from=job.start_rows,
        out=options.out,
        errors_path=options.errors_path,
    )
    if not options.quiet:
        for line in summary_lines(
            stats,
            this_run=summary.rows_this_run,
            seconds=seconds,
            resumed_from=job.start_rows,
            out=str(options.out),
            errors_path=str(options.errors_path),
            long_text=options.long_text,
        ):
            print(line, file=err)
    return summary
