"""The engine seam: what the run stage needs from an inference backend, and the ONNX Runtime engine.

An :class:`Engine` takes named inputs and returns the named outputs asked for. ``ClinicalBert`` plans batches
and builds feeds; the engine only runs them. ONNX Runtime's is here; OpenVINO's (``openvino_engine.OpenVinoEngine``,
the ``[openvino]`` extra) implements the same members; ``ClinicalBert.load(engine=...)`` picks one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .schema import ONNXRUNTIME


class Engine(Protocol):
    """Inputs → named outputs on one device. Must be safe to call from one thread at a time."""

    device: str  # "cpu" | "cuda" (where inputs should be prepared for; used for batch budgets)
    input_names: frozenset[str]
    output_names: frozenset[str]

    @property
    def providers(self) -> list[str]:
        """The backend's execution providers / devices in use, best first."""
        ...

    @property
    def threads(self) -> int:
        """Intra-op threads one call uses (0 when the backend does not say)."""
        ...

    def run(self, outputs: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch; return ``outputs`` in the order asked, as numpy arrays on the host."""
        ...

    def warm_up(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str]) -> None:
        """Run ``feed`` once and discard the result (first-call allocations, kernel selection)."""
        ...


class OrtEngine:
    """An ``onnxruntime.InferenceSession`` as an :class:`Engine`. On CUDA, runs through I/O binding: inputs
    are copied to the device once and only the requested outputs (pooled vectors or masked logits, never the
    whole hidden state) are copied back."""

    name = ONNXRUNTIME

    def __init__(self, session: Any, device: str) -> None:
        self.session = session
        self.device = device
        self.input_names = frozenset(i.name for i in session.get_inputs())
        self.output_names = frozenset(o.name for o in session.get_outputs())

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def threads(self) -> int:
        options = self.session.get_session_options()
        return int(options.intra_op_num_threads)

    def run(self, outputs: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if self.device != "cuda":
            return list(self.session.run(list(outputs), dict(feed)))
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def warm_up(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str]) -> None:
        self.run(outputs, feed)
