"""checkpoint → verified bundle: Optimum export, fusion, gathered MLM head, parity, INT8, gate, atomic write."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from clinbert_onnx.bundle import file_entry, write_manifest
from clinbert_onnx.errors import ExportError
from clinbert_onnx.quantize import GateThresholds, build_variant, gate_quality, get_recipe
from clinbert_onnx.quantize.gate import gate_device, probe_sentences
from clinbert_onnx.quantize.onnx_io import save_model
from clinbert_onnx.schema import (
    CLASSIFIER_TASKS,
    CONFIG_FILE,
    MANIFEST,
    TASKS,
    GraphInfo,
    Manifest,
    ModelInfo,
    SourceInfo,
    VariantInfo,
)

from . import checkpoint, graph, tokenizer
from . import heads as classifier_heads
from .progress import Steps, quiet_libraries, stream_for
from .validate import check_parity

log = logging.getLogger("clinbert_onnx.export")
OPSET = 18
VARIANTS = ("fp32", "int8", "fp16", "int8-static")


@dataclass(frozen=True)
class ExportOptions:
    """What ``clinbert export`` does. ``out=None`` means ``models/<name>``."""

    model: str
    revision: str | None = None
    out: Path | None = None
    force: bool = False
    lowercase: bool | None = None
    allow_pickle: bool = False
    variants: tuple[str, ...] = ("fp32", "int8")
    int8_recipe: str = "int8"
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    allow_degraded: bool = False
    probe: Path | None = None  # classifier bundles: the gate's probe text (one text per line; None: shipped)
    parity_tolerance: float = 1e-4
    progress: bool = False  # one line per step on stderr (else each step is logged at INFO)
    verbose: bool = False  # let the libraries' own log records and warnings through


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in (
        "clinbert-onnx",
        "optimum",
        "optimum-onnx",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "nncf",
        "openvino",
        "torch",
        "transformers",
        "tokenizers",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _check_space(ckpt: checkpoint.Checkpoint, parent: Path) -> None:
    weights = sum(f.stat().st_size for f in ckpt.weight_files)
    need = int(weights * 3.5)  # raw export + fused fp32 + int8 + scratch
    free = shutil.disk_usage(parent).free
    if free < need:
        raise ExportError(
            f"not enough disk space in {parent}: the export needs about {need / 1e6:.0f} MB, {free / 1e6:.0f} MB free"
        )


def _optimum_export(torch_model: Any, scratch: Path) -> Path:
    """The encoder through Optimum (feature extraction); heads are appended to the fused graph afterwards."""
    from optimum.exporters.onnx import onnx_export_from_model

    encoder = torch_model.bert if hasattr(torch_model, "bert") else torch_model
    pooler = getattr(encoder, "pooler", None)
    encoder.pooler = None  # a classifier's pooler is appended as part of its head (export/heads.py)
    try:
        onnx_export_from_model(
            encoder,
            output=str(scratch),
            task="feature-extraction",
            opset=OPSET,
            do_validation=False,
            no_post_process=True,
        )
    finally:
        encoder.pooler = pooler
    return scratch / "model.onnx"


def export_bundle(options: ExportOptions) -> Path:
    """Export ``options.model`` to a bundle folder and return its path."""
    unknown = set(options.variants) - set(VARIANTS)
    if unknown or "fp32" not in options.variants:
        raise ExportError(f"--variants must include fp32 and only name {', '.join(VARIANTS)}; got {options.variants}")
    if options.probe is not None:
        from clinbert_onnx.quantize.task_gate import read_probe

        read_probe(options.probe)  # a bad probe file fails now, not after the export
    ckpt = checkpoint.resolve(options.model, options.revision, options.allow_pickle)
    out = options.out or Path("models") / ckpt.name
    if out.exists() and not options.force:
        raise ExportError(f"output folder {out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_space(ckpt, out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    steps = Steps(4 + 2 * len([v for v in options.variants if v != "fp32"]), stream_for(options.progress))
    try:
        with quiet_libraries(options.verbose):
            _build(ckpt, options, staging, steps)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise ExportError(f"no space left on the device while writing {out}") from None
        raise ExportError(f"cannot write the bundle {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    steps.finish("export done")
    return out


def _build(ckpt: checkpoint.Checkpoint, options: ExportOptions, staging: Path, steps: Steps) -> None:
    cfg = ckpt.config
    hidden, heads, layers = (
        int(cfg["hidden_size"]),
        int(cfg["num_attention_heads"]),
        int(cfg["num_hidden_layers"]),
    )
    derivative = ckpt.task in CLASSIFIER_TASKS
    head = classifier_heads.head_info(cfg, ckpt.task) if derivative else None
    tok = tokenizer.prepare(ckpt.path, int(cfg.get("max_position_embeddings", 512)), options.lowercase, derivative)
    (staging / tok.info.file).write_text(tok.json_text, encoding="utf-8")
    shutil.copyfile(ckpt.path / CONFIG_FILE, staging / CONFIG_FILE)
    if ckpt.has_mlm_head and tok.info.mask_token_id < 0:
        raise ExportError(f"{ckpt.path} has a masked-LM head but its tokenizer has no mask token")
    task = TASKS[ckpt.task]

    weights = "safetensors" if ckpt.safetensors else "pickle"
    with steps.step(f"load {ckpt.model_id or ckpt.path.name} ({weights}, {task.architecture})"):
        model = checkpoint.load_torch_model(ckpt)
    scratch = staging / ".raw"
    scratch.mkdir()
    with steps.step(f"export to ONNX with Optimum (opset {OPSET})"):
        raw = _optimum_export(model, scratch)
    with steps.step("fuse with the ONNX Runtime transformer optimizer, add pooling and head"):
        fused = graph.fuse(raw, heads, hidden)
        encoder_counts = graph.fused_counts(fused)
        graph.add_mean_pooling(fused)
        tied = graph.add_mlm_head(fused, graph.head_from_torch(model), hidden) if ckpt.has_mlm_head else None
        if derivative:
            classifier_heads.add_classifier_head(fused, classifier_heads.head_from_torch(model, ckpt.task), ckpt.task)
        fp32_path = staging / "model.fp32.onnx"
        fp32_data = save_model(fused, fp32_path)
        del fused
        shutil.rmtree(scratch)

    with steps.step("parity: fp32 ONNX vs PyTorch"):
        parity = check_parity(
            model,
            fp32_path,
            staging / tok.info.file,
            probe_sentences(),
            tok.info,
            ckpt.has_mlm_head,
            options.parity_tolerance,
            classifier=derivative,
        )
    del model
    fp32 = VariantInfo(
        name="fp32",
        file=fp32_path.name,
        data=fp32_data,
        precision="fp32",
        devices=("cpu", "cuda"),
        fused_ops=encoder_counts,
        recipe=None,
        parity=parity,
    )
    manifest = Manifest(
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        task=task.name,
        source=SourceInfo(
            model_id=ckpt.model_id,
            revision=ckpt.revision,
            local_path=None if ckpt.model_id else str(ckpt.path.resolve()),
            weights_format="safetensors" if ckpt.safetensors else "pytorch-pickle (weights_only)",
            weights_sha256=ckpt.weights_sha256(),
        ),
        versions=_versions(),
        opset=OPSET,
        model=ModelInfo(
            architecture=task.architecture,
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            vocab_size=int(cfg["vocab_size"]),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            has_mlm_head=ckpt.has_mlm_head,
            decoder_tied_to_embeddings=tied,
        ),
        tokenizer=tok.info,
        graph=GraphInfo.for_task(task.name),
        variants={fp32.name: fp32},
        files={},
        head=head,
    )

    def with_files(m: Manifest) -> Manifest:
        """``m`` with every file in the staging folder listed, written to disk."""
        listed = m.with_files(
            {
                p.name: file_entry(p)
                for p in sorted(staging.iterdir())
                if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
            }
        )
        write_manifest(staging, listed)
        return listed

    for name in options.variants:
        if name == "fp32":
            continue
        recipe = get_recipe(options.int8_recipe if name == "int8" else name)
        with steps.step(f"{name}: build ({recipe.name})"):
            variant = build_variant(fp32_path, staging / f"model.{name}.onnx", recipe, name)
            manifest = with_files(manifest.with_variant(variant))
        with steps.step(f"{name}: accuracy gate vs fp32 on the probe set ({gate_device(recipe)})"):
            quality = gate_quality(staging, name, recipe, options.thresholds, options.allow_degraded, options.probe)
        manifest = manifest.with_variant(replace(variant, quality=quality))
    with_files(manifest)
