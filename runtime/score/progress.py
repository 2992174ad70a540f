"""A one-line progress bar on stderr (a terminal only) and the end-of-run summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TextIO

_REFRESH_S = 0.25
_BAR = 24


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


@dataclass
class Stats:
    """Totals over the whole job (carried across resumes in the checkpoint)."""

    rows: int = 0
    written: int = 0
    errors: int = 0
    long_rows: int = 0
    long_windows: int = 0
    tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, int] | None) -> Stats:
        return cls(**{k: int(v) for k, v in (data or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class Progress:
    """Rows done, rows/s and ETA. The fraction comes from the total row count (Parquet) or from the bytes read
    so far (.txt/.jsonl files); without either (stdin, CSV) only rows and rows/s are shown."""

    stream: TextIO
    enabled: bool
    total_rows: int | None = None
    total_bytes: int | None = None
    start_rows: int = 0
    start_bytes: int = 0
    rows: int = 0
    committed: int = 0
    bytes: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _width: int = 0

    def __post_init__(self) -> None:
        self.rows = self.committed = self.start_rows
        self.bytes = self.start_bytes

    def advance(self, rows: int) -> None:
        """Rows scored inside the current window (before it is committed)."""
        self.rows += rows
        self._draw()

    def commit(self, rows_done: int, offset: int, errors: int) -> None:
        self.rows = self.committed = rows_done
        if offset >= 0:
            self.bytes = offset
        self.errors = errors
        self._draw()

    def fraction(self) -> tuple[float, float] | None:
        """(fraction done now, fraction done at start), when the input's size is known."""
        if self.total_rows:
            return min(1.0, self.rows / self.total_rows), self.start_rows / self.total_rows
        if self.total_bytes:
            done = self.bytes
            if self.committed > self.start_rows:  # rows scored in the current window, at the average row size
                per_row = (self.bytes - self.start_bytes) / (self.committed - self.start_rows)
                done += int(per_row * (self.rows - self.committed))
            return min(1.0, done / self.total_bytes), self.start_bytes / self.total_bytes
        return None

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.rows - self.start_rows) / elapsed
        parts = [f"{self.rows:,} rows", f"{rate:,.1f} rows/s"]
        frac = self.fraction()
        if frac is not None:
            done, start = frac
            filled = int(done * _BAR)
            parts.insert(0, f"[{'#' * filled}{'.' * (_BAR - filled)}] {done * 100:5.1f}%")
            if done > start:
                parts.append(f"ETA {_clock(elapsed * (1 - done) / (done - start))}")
        if self.errors:
            parts.append(f"{self.errors:,} errors")
        return "  ".join(parts)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < _REFRESH_S:
            return
        self._last = now
        text = self.line()
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Erase the bar so the summary starts on a clean line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def summary_lines(
    stats: Stats, *, this_run: int, seconds: float, resumed_from: int, out: str, errors_path: str, long_text: str
) -> list[str]:
    rate = this_run / seconds if seconds > 0 else 0.0
    lines = [
        f"scored {stats.rows:,} rows in {seconds:.1f} s ({rate:,.1f} rows/s)"
        + (f", resumed at row {resumed_from + 1:,}" if resumed_from else "")
    ]
    lines.append(f"  written  {stats.written:,} -> {out}")
    lines.append(f"  errors   {stats.errors:,}" + (f" -> {errors_path}" if stats.errors else ""))
    if stats.long_rows:
        how = f"chunked into {stats.long_windows:,} windows" if long_text == "chunk" else "truncated"
        lines.append(f"  long     {stats.long_rows:,} rows longer than one window, {how}")
    lines.append(f"  tokens   {stats.tokens:,}")
    return lines
