"""What ``clinbert export`` shows while it works: one line per step with its elapsed time, and none of the
libraries' chatter (ONNX Runtime's quantizer hints, transformers' unused-weights notice, tracer warnings) unless
asked for. Warnings this package raises itself (the tokenizer's casing) still show.

On a terminal the running step is shown and then completed in place; elsewhere only finished steps print.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger("clinbert_onnx.export")

#: Loggers of the libraries the export drives, and the root logger ONNX Runtime's quantizer writes to.
_CHATTY_LOGGERS = ("", "transformers", "optimum", "torch", "onnx", "onnxruntime", "huggingface_hub")
#: Modules whose warnings are library chatter during an export (matched on the warning's origin, not its text).
_CHATTY_MODULES = r"(torch|transformers|optimum|onnx|onnxruntime|onnxscript|huggingface_hub)(\.|$)"


class Steps:
    """Numbered steps; ``stream=None`` logs each finished step at INFO instead of printing it."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.started = time.perf_counter()

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.done += 1
        head = f"[{self.done}/{self.total}] {label}"
        live = self.stream is not None and self.stream.isatty()
        if live and self.stream is not None:
            self.stream.write(f"{head} …")
            self.stream.flush()
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self._line(live, f"{head}  failed after {time.perf_counter() - start:.1f} s")
            raise
        self._line(live, f"{head}  {time.perf_counter() - start:.1f} s")

    def finish(self, message: str) -> None:
        self._line(False, f"{message} in {time.perf_counter() - self.started:.0f} s")

    def _line(self, live: bool, text: str) -> None:
        if self.stream is None:
            log.info("%s", text)
            return
        self.stream.write(("\r\x1b[K" if live else "") + text + "\n")
        self.stream.flush()


@contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Keep the libraries' log records and warnings out for the duration (nothing changes when ``verbose``);
    everything is restored on exit."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_CHATTY_MODULES)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def stream_for(progress: bool) -> TextIO | None:
    return sys.stderr if progress else None
