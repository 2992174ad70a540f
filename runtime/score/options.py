"""``ScoreOptions``: what ``clinbert score`` was asked to do, checked once before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classify import ClassifyOptions, TokenOptions, check_aggregation, check_function
from ..errors import InputError
from ..pooling import POOLINGS
from ..tasks import EmbedOptions, MaskOptions, check_top_k
from ..windows import LONG_TEXT_MODES

TASKS: tuple[str, ...] = ("embed", "fill-mask", "token-classification", "text-classification")
#: Tasks whose results are lists (written to .jsonl or .parquet, never .npy).
LIST_TASKS: tuple[str, ...] = TASKS[1:]
INPUT_FORMATS: tuple[str, ...] = ("txt", "jsonl", "csv", "parquet")
OUTPUT_FORMATS: tuple[str, ...] = ("parquet", "npy", "jsonl")
ON_ERROR: tuple[str, ...] = ("skip", "fail")
STDIN = "-"
DEFAULT_WINDOW_ROWS = 1024
DEFAULT_TEXT_COLUMN = "text"

_INPUT_SUFFIXES = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".npy": "npy", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class OutputExistsError(InputError):
    """The output (or a previous run's work folder) is already there and neither --force nor --resume was given."""

    code = "output_exists"


class ResumeError(InputError):
    """``--resume`` cannot continue: the input, the options or the model differ from the interrupted run's."""

    code = "resume_conflict"


class RowError(InputError):
    """A bad row under ``--on-error fail``. The message names the row and the reason, never the text."""

    code = "bad_row"


@dataclass(frozen=True)
class ScoreOptions:
    """Everything ``clinbert score`` needs. Build one, then call :func:`clinbert_onnx.score.run_score`.

    ``input`` is a path or ``"-"`` (stdin). ``input_format``: None to decide by the file's suffix (stdin: txt).
    ``text_pair_column``: text classification of pairs (e.g. premise / hypothesis), the second text's column.
    ``window_rows``: rows read, sorted by length and scored together (also the checkpoint granularity).
    ``progress``: None shows a progress bar only when stderr is a terminal.
    """

    bundle: Path
    input: str
    out: Path
    task: str = "embed"
    text_column: str | None = None
    id_column: str | None = None
    text_pair_column: str | None = None
    input_format: str | None = None
    top_k: int = 5
    targets: tuple[str, ...] | None = None
    aggregation_strategy: str = "simple"
    ignore_labels: tuple[str, ...] | None = None
    function_to_apply: str | None = None
    pooling: str = "mean"
    normalize: bool = True
    long_text: str = "chunk"
    window_rows: int = DEFAULT_WINDOW_ROWS
    workers: int = 1
    streams: int | None = None
    max_batch_tokens: int | None = None
    resume: bool = False
    force: bool = False
    on_error: str = "skip"
    errors: Path | None = None
    quiet: bool = False
    progress: bool | None = None
    device: str = "auto"
    variant: str | None = None
    verify: bool = True
    engine: str = "onnxruntime"

    # ------------------------------------------------------------------------------------------ derived
    @property
    def from_stdin(self) -> bool:
        return self.input == STDIN

    @property
    def in_format(self) -> str:
        if self.input_format is not None:
            return self.input_format
        if self.from_stdin:
            return "txt"
        suffix = Path(self.input).suffix.lower()
        if suffix not in _INPUT_SUFFIXES:
            raise InputError(
                f"cannot tell the format of {self.input} from its suffix {suffix or '(none)'!r}: "
                "use .txt, .jsonl, .csv or .parquet (or --input-format)"
            )
        return _INPUT_SUFFIXES[suffix]

    @property
    def out_format(self) -> str:
        suffix = self.out.suffix.lower()
        if suffix not in _OUTPUT_SUFFIXES:
            raise InputError(f"cannot tell the output format from {self.out.name!r}: use .parquet, .npy or .jsonl")
        return _OUTPUT_SUFFIXES[suffix]

    @property
    def column(self) -> str:
        return self.text_column or DEFAULT_TEXT_COLUMN

    @property
    def errors_path(self) -> Path:
        return self.errors if self.errors is not None else self.out.with_name(self.out.name + ".errors.jsonl")

    @property
    def sidecar_path(self) -> Path | None:
        """The ids file next to an ``.npy`` output (``embeddings.npy`` → ``embeddings.ids.jsonl``)."""
        return self.out.with_suffix(".ids.jsonl") if self.out_format == "npy" else None

    @property
    def work_dir(self) -> Path:
        return self.out.with_name(self.out.name + ".partial")

    # ------------------------------------------------------------------------------------------ checks
    def check(self) -> None:
        """Raise InputError for any inconsistent option. Touches no file."""
        _choice("task", self.task, TASKS)
        _choice("pooling", self.pooling, POOLINGS)
        _choice("long-text", self.long_text, LONG_TEXT_MODES)
        _choice("on-error", self.on_error, ON_ERROR)
        if self.input_format is not None:
            _choice("input-format", self.input_format, INPUT_FORMATS)
        fmt, out_fmt = self.in_format, self.out_format
        if self.task in LIST_TASKS and out_fmt == "npy":
            raise InputError(f".npy output holds embeddings only: write {self.task} results to .jsonl or .parquet")
        check_aggregation(self.aggregation_strategy)
        check_function(self.function_to_apply)
        if fmt == "txt" and self.id_column is not None:
            raise InputError("a .txt input has no columns: its ids are line numbers (drop --id-column)")
        if self.id_column is not None and self.id_column == self.column:
            raise InputError("--id-column and --text-column name the same column")
        self._check_pair_column(fmt)
        check_top_k(self.top_k, name="--top-k")
        if self.targets is not None and not [t for t in self.targets if t]:
            raise InputError("--targets is empty: give at least one target word or leave it out")
        checked = [("window-rows", self.window_rows, 1), ("workers", self.workers, 1)]
        if self.streams is not None:
            checked.append(("streams", self.streams, 1))
        if self.max_batch_tokens is not None:
            checked.append(("max-batch-tokens", self.max_batch_tokens, 1))
        for name, value, low in checked:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"--{name} must be an integer >= {low}; got {value!r}")
        if self.resume and self.force:
            raise InputError("--resume and --force contradict each other: --resume continues, --force starts over")
        if self.resume and self.from_stdin:
            raise InputError("--resume needs a file input: stdin cannot be read again")
        outputs = [self.out.resolve(), self.errors_path.resolve()]
        if self.sidecar_path is not None:
            outputs.append(self.sidecar_path.resolve())
        if len(set(outputs)) != len(outputs):
            raise InputError("the output, errors and ids files must be different paths")
        if not self.from_stdin and Path(self.input).resolve() in outputs:
            raise InputError("the output would overwrite the input")

    def _check_pair_column(self, fmt: str) -> None:
        pair = self.text_pair_column
        if pair is None:
            return
        if self.task != "text-classification":
            raise InputError(
                f"--text-pair-column is for --task text-classification (pairs of texts); --task {self.task} "
                "scores single texts"
            )
        if fmt == "txt":
            raise InputError("a .txt input has no columns: a text pair needs .jsonl, .csv or .parquet input")
        if not pair:
            raise InputError("--text-pair-column is empty: name the column holding each pair's second text")
        if pair == self.column:
            raise InputError("--text-pair-column and --text-column name the same column")
        if pair == self.id_column:
            raise InputError("--text-pair-column and --id-column name the same column")

    def task_options(self) -> EmbedOptions | MaskOptions | TokenOptions | ClassifyOptions:
        """The core's options object for ``task`` (text classification truncates where others chunk)."""
        if self.task == "embed":
            return EmbedOptions(pooling=self.pooling, normalize=self.normalize, long_text=self.long_text)
        if self.task == "token-classification":
            return TokenOptions(self.aggregation_strategy.lower(), self.ignore_labels, None, self.long_text)
        if self.task == "text-classification":
            long_text = "truncate" if self.long_text == "chunk" else self.long_text
            return ClassifyOptions(self.function_to_apply, long_text)
        return MaskOptions(top_k=self.top_k, targets=self.targets, long_text=self.long_text)

    def result_options(self) -> dict[str, Any]:
        """The options that change what is written: a resumed run must use the same ones."""
        opts: dict[str, Any] = {
            "task": self.task,
            "input_format": self.in_format,
            "output_format": self.out_format,
            "text_column": self.column if self.in_format != "txt" else None,
            "id_column": self.id_column,
            "long_text": self.long_text,
            "window_rows": self.window_rows,
        }
        if self.task == "embed":
            opts.update(pooling=self.pooling, normalize=self.normalize)
        elif self.task == "token-classification":
            ignore = list(self.ignore_labels) if self.ignore_labels is not None else None
            opts.update(aggregation_strategy=self.aggregation_strategy, ignore_labels=ignore)
        elif self.task == "text-classification":
            opts.update(
                top_k=self.top_k, function_to_apply=self.function_to_apply, text_pair_column=self.text_pair_column
            )
        else:
            opts.update(top_k=self.top_k, targets=list(self.targets) if self.targets is not None else None)
        return opts


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"--{name} must be one of {', '.join(allowed)}; got {value!r}")
