"""``clinbert export | quantize | info | verify | doctor``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..schema import MANIFEST, Quality
from .derived_cmds import _print_head

PROBE_HELP = (
    "classifier bundles: text for the INT8 gate's task figures, one text per line (default: the shipped probe "
    "set; a de-identification model needs text with PHI-like spans)"
)


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export a checkpoint (Hub id or folder) to a verified bundle")
    p.add_argument("model", help="Hub id (e.g. emilyalsentzer/Bio_ClinicalBERT) or a local checkpoint folder")
    p.add_argument("--revision", help="Hub commit/tag to pin (recorded in the manifest)")
    p.add_argument("--out", type=Path, help="output folder (default: models/<name>)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    case = p.add_mutually_exclusive_group()
    case.add_argument(
        "--lowercase",
        dest="lowercase",
        action="store_const",
        const=True,
        default=None,
        help="force a lowercasing tokenizer",
    )
    case.add_argument(
        "--no-lowercase", dest="lowercase", action="store_const", const=False, help="force a cased tokenizer"
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow pytorch_model.bin (read with torch.load(weights_only=True))",
    )
    p.add_argument(
        "--variants",
        default="fp32,int8",
        help="comma list of fp32,int8,fp16,int8-static (default fp32,int8; int8-static needs the [static] extra)",
    )
    p.add_argument("--recipe", default="int8", help="int8 recipe (see `clinbert quantize --list`)")
    p.add_argument("--allow-degraded", action="store_true", help="keep a variant that fails the accuracy gate")
    p.add_argument("--parity-tolerance", type=float, default=1e-4, help="max abs diff FP32 ONNX vs PyTorch")
    p.add_argument("--probe", type=Path, help=PROBE_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quantize", help="re-quantize an existing bundle from its fp32 variant")
    p.add_argument("bundle", type=Path, nargs="?")
    p.add_argument("--recipe", default="int8", help="recipe name (int8 = int8-per-token; --list shows all)")
    p.add_argument("--variant", help="variant name to write (default: the recipe's precision)")
    p.add_argument(
        "--exclude-node",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this node in FP32 (repeatable; node names as in the fp32 graph)",
    )
    p.add_argument("--allow-degraded", action="store_true", help="keep the variant even if it fails the gate")
    p.add_argument("--list", action="store_true", help="list the recipes and exit")
    p.add_argument("--probe", type=Path, help=PROBE_HELP)
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("info", help="variants, sizes, fused ops and quality report of a bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("verify", help="re-check every bundle file's size and sha256")
    p.add_argument("bundle", type=Path)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("doctor", help="which execution providers really load here, and why not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)


def _thresholds() -> Any:
    from ..quantize import GateThresholds

    return GateThresholds()


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import ExportOptions, export_bundle

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    options = ExportOptions(
        model=args.model,
        revision=args.revision,
        out=args.out,
        force=args.force,
        lowercase=args.lowercase,
        allow_pickle=args.allow_pickle,
        variants=variants,
        int8_recipe=args.recipe,
        thresholds=_thresholds(),
        allow_degraded=args.allow_degraded,
        parity_tolerance=args.parity_tolerance,
        probe=args.probe,
        progress=True,
        verbose=args.verbose,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        out = export_bundle(options)
    print(f"bundle written to {out}")
    _print_info(out)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from ..quantize import RECIPES, get_recipe, requantize

    if args.list:
        for name, recipe in RECIPES.items():
            print(f"{name:24} {recipe.description}")
        return 0
    if args.bundle is None:
        raise InputError("give a bundle folder (or --list)")
    recipe = get_recipe(args.recipe)
    if args.probe is not None:
        from ..quantize.task_gate import read_probe

        read_probe(args.probe)
    if args.exclude_node:
        recipe = dataclasses.replace(
            recipe, name=f"{recipe.name}+exclude", nodes_to_exclude=(*recipe.nodes_to_exclude, *args.exclude_node)
        )
    entry = requantize(args.bundle, recipe, _thresholds(), args.allow_degraded, args.variant, args.probe)
    print(f"{entry.name}: {entry.file} ({entry.recipe.name if entry.recipe else '-'})")
    _print_quality(entry.quality)
    return 0


def _print_quality(q: Quality | None) -> None:
    if not q:
        return
    figures = ", ".join(f"{k} {v}" for k, v in q.figures().items())
    status = {True: "passed", False: "FAILED (kept with --allow-degraded)", None: "not measured"}[q.passed]
    where = f" on {q.device}" if q.device else ""
    where += f" ({q.engine})" if q.engine else ""
    print(f"    quality vs {q.reference or 'fp32'}{where}: {figures or q.note or ''} — {status}")
    if q.batch_drift_max is not None:
        kind = "batch-invariant" if q.batch_invariant is not False else "BATCH-DEPENDENT (opt-in recipe)"
        print(
            f"    batch drift (a text alone vs among random companions): max element {q.batch_drift_max}, "
            f"min cosine {q.batch_cosine_min} — {kind}"
        )


def _print_info(path: Path) -> None:
    from ..bundle import open_bundle

    b = open_bundle(path)
    m = b.manifest
    src = m.source
    print(f"bundle     {b.path}")
    print(f"source     {src.model_id or src.local_path} @ {src.revision or '-'}")
    model = m.model
    tasks = "embed" + (", fill-mask" if model.has_mlm_head else "") + (f", {m.task}" if m.head else "")
    print(
        f"model      {model.architecture}: {model.num_layers} layers x {model.hidden_size}, "
        f"vocab {model.vocab_size}, tasks: {tasks}"
    )
    _print_head(b)
    tok = m.tokenizer
    print(f"tokenizer  lowercase={tok.lowercase} ({tok.lowercase_source}), max_length {tok.max_length}")
    print("versions   " + ", ".join(f"{k} {v}" for k, v in m.versions.items() if v))
    print("variants")
    for name, v in b.variants.items():
        print(
            f"  {name:6} {'+'.join(v.files):42} {f'{b.variant_mb(v):,.1f} MB':>10}  {v.precision} for {'/'.join(v.devices)}"
            + (f" ({', '.join(v.engines)})" if v.engines else "")
        )
        print("    ops: " + ", ".join(f"{k} {n}" for k, n in v.fused_ops.items()))
        if v.parity:
            print("    parity vs PyTorch: " + ", ".join(f"{k} {d:.2e}" for k, d in v.parity.figures().items()))
        _print_quality(v.quality)


def cmd_info(args: argparse.Namespace) -> int:
    from ..bundle import open_bundle

    if args.json:
        print(json.dumps(open_bundle(args.bundle).raw, indent=2))
    else:
        _print_info(args.bundle)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..bundle import open_bundle

    b = open_bundle(args.bundle)
    b.verify()
    for v in b.variants.values():
        b.check_external_data(v)
    print(f"ok: {len(b.files)} files match their sha256 in {b.path / MANIFEST}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import report

    info = report()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        print(f"{key:22} {value}", file=sys.stdout)
    return 0
