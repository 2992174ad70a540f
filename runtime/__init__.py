"""clinbert-onnx: Bio_ClinicalBERT without PyTorch.

``from clinbert_onnx import ClinicalBert`` imports onnxruntime, tokenizers and numpy only; the exporter
(``clinbert_onnx.export``) and quantizer (``clinbert_onnx.quantize``) are separate subpackages.
"""

from __future__ import annotations

from .errors import (
    BundleError,
    ChecksumError,
    ClinBertError,
    DeviceError,
    ExportError,
    InputError,
    MissingDependencyError,
    NoMaskHeadError,
    QualityGateError,
    TextTooLongError,
)
from .model import ClinicalBert, EmbedResult, FillMaskResult
from .session import PRESETS, SessionConfig

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BundleError",
    "ChecksumError",
    "ClinBertError",
    "ClinicalBert",
    "DeviceError",
    "EmbedResult",
    "ExportError",
    "FillMaskResult",
    "InputError",
    "MissingDependencyError",
    "NoMaskHeadError",
    "QualityGateError",
    "SessionConfig",
    "TextTooLongError",
    "__version__",
]
