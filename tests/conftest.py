from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import builders


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


requires_export = pytest.mark.skipif(not _has("torch") or not _has("optimum"), reason="needs the [export] extra")


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def tiny_checkpoint(fixture_root: Path) -> Path:
    """2-layer random BERT masked LM with a cased vocab and a lowercasing tokenizer (like Bio_ClinicalBERT)."""
    return builders.make_checkpoint(fixture_root / "tiny-ckpt")


@pytest.fixture(scope="session")
def tiny_bundle(fixture_root: Path, tiny_checkpoint: Path) -> Path:
    from clinbert_onnx.export import ExportOptions, export_bundle

    return export_bundle(ExportOptions(model=str(tiny_checkpoint), out=fixture_root / "tiny", allow_degraded=True))


@pytest.fixture(scope="session")
def minilm_bundle(fixture_root: Path) -> Path:
    """The real all-MiniLM-L6-v2 weights (encoder, no MLM head) exported to an embeddings-only bundle."""
    from clinbert_onnx.export import ExportOptions, export_bundle

    return export_bundle(ExportOptions(model=str(builders.minilm_dir()), out=fixture_root / "minilm"))
