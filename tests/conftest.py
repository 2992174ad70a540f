from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# OpenVINO's compiled-model cache goes to a scratch folder, not the user's ~/.cache (removed at exit)
if "CLINBERT_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["CLINBERT_CACHE_DIR"] = tempfile.mkdtemp(prefix="clinbert-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CLINBERT_CACHE_DIR"], True)
sys.path.insert(0, str(Path(__file__).parent))

import builders


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


requires_export = pytest.mark.skipif(not _has("torch") or not _has("optimum"), reason="needs the [export] extra")
requires_openvino = pytest.mark.skipif(not _has("openvino"), reason="needs the [openvino] extra")
requires_static = pytest.mark.skipif(
    not _has("nncf") or not _has("openvino") or not _has("torch"), reason="needs the [export] and [static] extras"
)


class CheckpointCrash(Exception):
    """Raised in place of a checkpoint save: ``clinbert score`` interrupted at that point."""


@contextlib.contextmanager
def crash_at_checkpoint(monkeypatch: pytest.MonkeyPatch, nth: int) -> Iterator[None]:
    """Run the body with the ``nth`` checkpoint save of ``clinbert score`` raising (the run must stop there);
    saves work again afterwards, for the ``--resume`` that follows."""
    from clinbert_onnx.score import checkpoint

    real_save = checkpoint.WorkDir.save
    calls = {"n": 0}

    def crashing_save(self: checkpoint.WorkDir, data: dict) -> None:
        calls["n"] += 1
        if calls["n"] == nth:
            raise CheckpointCrash
        real_save(self, data)

    monkeypatch.setattr(checkpoint.WorkDir, "save", crashing_save)
    try:
        with pytest.raises(CheckpointCrash):
            yield
    finally:
        monkeypatch.setattr(checkpoint.WorkDir, "save", real_save)


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


@pytest.fixture(scope="session")
def static_bundle(fixture_root: Path, tiny_checkpoint: Path) -> Path:
    """The tiny masked LM exported with ``--variants fp32,int8,int8-static`` (the static variant gated on OpenVINO)."""
    from clinbert_onnx.export import ExportOptions, export_bundle

    options = ExportOptions(
        model=str(tiny_checkpoint),
        out=fixture_root / "tiny-static",
        variants=("fp32", "int8", "int8-static"),
        allow_degraded=True,
    )
    return export_bundle(options)


@pytest.fixture(scope="session")
def minilm_static_bundle(fixture_root: Path, minilm_bundle: Path) -> Path:
    """A copy of the MiniLM bundle with ``clinbert quantize --recipe int8-static`` applied."""
    import shutil

    from clinbert_onnx.cli import main

    copy = fixture_root / "minilm-static"
    shutil.copytree(minilm_bundle, copy)
    assert main(["quantize", str(copy), "--recipe", "int8-static"]) == 0
    return copy


# ------------------------------------------------------------------------------------------------ derivatives
@pytest.fixture(scope="session")
def probe_file(fixture_root: Path) -> Path:
    """Probe text for the derivatives' gate: template notes with drugs, doses, routes and problems."""
    import random

    import finetune

    rng = random.Random(9)
    path = fixture_root / "probe.txt"
    path.write_text("\n".join(finetune.note(rng, 3)[0] for _ in range(40)) + "\n", encoding="utf-8")
    return path


def _derivative(fixture_root: Path, name: str, probe: Path) -> Path:
    import warnings

    import finetune
    from clinbert_onnx.export import ExportOptions, export_bundle

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return export_bundle(ExportOptions(model=str(finetune.cached(name)), out=fixture_root / name, probe=probe))


@pytest.fixture(scope="session")
def ner_bundle(fixture_root: Path, probe_file: Path) -> Path:
    """BIO NER, "O" at id 6, 64 positions."""
    return _derivative(fixture_root, "ner", probe_file)


@pytest.fixture(scope="session")
def bilou_bundle(fixture_root: Path, probe_file: Path) -> Path:
    """BILOU NER with the pseudo-label X on continuation word pieces."""
    return _derivative(fixture_root, "bilou", probe_file)


@pytest.fixture(scope="session")
def assertion_bundle(fixture_root: Path, probe_file: Path) -> Path:
    """present / absent / possible; a vocab.txt-only (lowercasing) checkpoint."""
    return _derivative(fixture_root, "assertion", probe_file)


@pytest.fixture(scope="session")
def multilabel_bundle(fixture_root: Path, probe_file: Path) -> Path:
    return _derivative(fixture_root, "multilabel", probe_file)


@pytest.fixture(scope="session")
def reranker_bundle(fixture_root: Path, probe_file: Path) -> Path:
    """One logit on (query, passage) pairs."""
    return _derivative(fixture_root, "reranker", probe_file)


@pytest.fixture(scope="session")
def nli_bundle(fixture_root: Path, probe_file: Path) -> Path:
    """MedNLI-style pairs: (premise, hypothesis) → entailment / contradiction / neutral."""
    return _derivative(fixture_root, "nli", probe_file)
