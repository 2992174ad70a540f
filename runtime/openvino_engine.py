"""The OpenVINO engine: a bundle's ONNX variant compiled by OpenVINO's CPU plugin, as an :class:`~.engine.Engine`.

Needs the ``[openvino]`` extra (``openvino`` only: no torch); ``openvino`` is imported when an engine is made,
never at package import. It reads the same ONNX files as ONNX Runtime (the static INT8 variant's QDQ graph
becomes OpenVINO's INT8 kernels; the fused FP32 graph's contrib ops are read too).

Settings, and why:

- ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AMX, OpenVINO otherwise runs everything that is not INT8 in
  BF16 without saying so (numerics change); on the AMX Xeon measured in BENCHMARKS.md BF16 gave no speed-up on
  the INT8 graph (b32 35.1 vs 34.5 seq/s), so f32 costs nothing; on AMD Zen 4 (AVX512-BF16, no AMX) a bf16
  hint gave +3–4 % with token cosines of 0.99989 to f32: not worth the changed numerics.
- ``PERFORMANCE_HINT=LATENCY``: one stream using every thread for each call (the API and ``serve``, which call
  the engine one batch at a time).
- a compiled-model cache (``CACHE_DIR``) under the user's cache directory: a later load of the same file skips
  compilation (cold start).
- padding each batch's width up to a multiple of :data:`PAD_MULTIPLE` tokens: fewer distinct shapes, so
  OpenVINO's shape-specific kernel cache hits more often on mixed lengths. Padded positions are masked out;
  per-token outputs (``[batch, seq, features]``) are cut back to the caller's width and ``mask_positions``
  are renumbered. Measured (MiniLM int8-static, 2 shared cores, smoke-level): 32 single texts of new lengths
  0.62 / 0.85 s padded to 16 vs 0.95 / 1.40 s unpadded (two runs); warm repeated batches within noise
  (0.59–0.70 s both ways).
- ``streams`` (``SessionConfig(streams=N)``, ``clinbert score``'s default 2): THROUGHPUT hint with
  ``NUM_STREAMS=N``, N batches in flight; +2–6 % on mixed-length notes on 2 cores (BENCHMARKS.md).
"""

from __future__ import annotations

import os
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, require
from .schema import INPUT_IDS, MASK_POSITIONS, OPENVINO

PAD_MULTIPLE = 16
CACHE_ENV = "CLINBERT_CACHE_DIR"
HINTS = ("LATENCY", "THROUGHPUT")


def cache_root() -> Path:
    """``$CLINBERT_CACHE_DIR``, else ``$XDG_CACHE_HOME/clinbert-onnx``, else ``~/.cache/clinbert-onnx``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clinbert-onnx"


@dataclass(frozen=True)
class OpenVinoSettings:
    """How the OpenVINO engine compiles a variant.

    Attributes:
        threads: inference threads (0: the cores available to this process).
        hint: "LATENCY" (one stream, every thread per call) or "THROUGHPUT" (several streams, for concurrent
            callers).
        precision: OpenVINO's ``INFERENCE_PRECISION_HINT`` for the non-INT8 parts ("f32"; "bf16" only where it
            is measured faithful and faster).
        pad_multiple: batch widths are padded up to a multiple of this (1: no padding), never past
            ``max_length``.
        max_length: the model's window (positions).
        cache_dir: compiled-model cache (None: no cache).
        streams: OpenVINO's ``NUM_STREAMS`` (with the THROUGHPUT hint when above 1): calls in flight at once,
            the threads shared among them.
    """

    threads: int = 0
    hint: str = "LATENCY"
    precision: str = "f32"
    pad_multiple: int = PAD_MULTIPLE
    max_length: int = 512
    cache_dir: Path | None = None
    streams: int = 1

    def properties(self) -> dict[str, Any]:
        from .session import available_cpus

        props: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "PERFORMANCE_HINT": self.hint,
            "INFERENCE_NUM_THREADS": self.threads or available_cpus(),
        }
        if self.streams > 1:
            props.update(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS=self.streams)
        if self.cache_dir is not None:
            props["CACHE_DIR"] = str(self.cache_dir)
        return props


def default_cache_dir() -> Path | None:
    """The compiled-model cache folder, created; None when it cannot be (then no cache is used)."""
    folder = cache_root() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _load_error(path: Path, exc: Exception) -> BundleError:
    text = str(exc).strip()
    first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)[:300]
    return BundleError(f"OpenVINO cannot load {path}: {first}")


class OpenVinoEngine:
    """A compiled OpenVINO model. Thread-safe: each call takes an inference request from a pool."""

    name = OPENVINO
    device = "cpu"

    def __init__(self, compiled: Any, settings: OpenVinoSettings) -> None:
        self.compiled = compiled
        self.settings = settings
        self.input_names = frozenset(name for port in compiled.inputs for name in port.get_names())
        self._outputs = {name: port for port in compiled.outputs for name in port.get_names()}
        self.output_names = frozenset(self._outputs)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    @classmethod
    def load(cls, model_path: Path, settings: OpenVinoSettings) -> OpenVinoEngine:
        """Compile ``model_path`` (ONNX, external data beside it) for the CPU. A graph OpenVINO cannot read is a
        BundleError naming the file."""
        require("openvino", "openvino")
        import openvino as ov

        core = ov.Core()
        try:
            compiled = core.compile_model(str(model_path), "CPU", settings.properties())
        except RuntimeError as exc:  # OpenVINO's own errors derive from RuntimeError
            raise _load_error(model_path, exc) from None
        return cls(compiled, settings)

    @property
    def providers(self) -> list[str]:
        return ["OpenVINO CPU"]

    @property
    def threads(self) -> int:
        return int(self.compiled.get_property("INFERENCE_NUM_THREADS"))

    def _pad(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """``feed`` with its width padded up to the multiple (masked positions), and the original width."""
        width = feed[INPUT_IDS].shape[1]
        multiple = self.settings.pad_multiple
        target = -(-width // multiple) * multiple if multiple > 1 else width
        if target == width or target > self.settings.max_length:
            return dict(feed), width
        out: dict[str, np.ndarray] = {}
        for name, value in feed.items():
            if name == MASK_POSITIONS:
                out[name] = (value // width) * target + value % width
            elif value.ndim == 2:
                out[name] = np.pad(value, ((0, 0), (0, target - width)))  # zeros: pad id 0, attention 0
            else:
                out[name] = value
        return out, width

    def run(self, outputs: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        padded, width = self._pad(feed)
        inputs = {k: v for k, v in padded.items() if k in self.input_names}
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer(inputs)
            results = [np.array(request.get_tensor(self._outputs[name]).data) for name in outputs]
        finally:
            self._requests.put(request)
        # per-token outputs ([batch, seq, features]: hidden states, token logits) are cut back to the caller's width
        return [r[:, :width] if r.ndim == 3 else r for r in results]

    def warm_up(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str]) -> None:
        self.run(outputs, feed)


def settings_for(threads: int, max_length: int, streams: int = 1) -> OpenVinoSettings:
    """The default settings for a model with ``max_length`` positions on ``threads`` threads (0: all), with
    ``streams`` calls in flight."""
    return OpenVinoSettings(threads=threads, max_length=max_length, cache_dir=default_cache_dir(), streams=streams)


__all__ = ["HINTS", "PAD_MULTIPLE", "OpenVinoEngine", "OpenVinoSettings", "settings_for"]
