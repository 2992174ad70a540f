"""The runtime needs onnxruntime, tokenizers and numpy only — proven in a fresh virtual environment."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
from clinbert_onnx import ClinicalBert

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "optimum", "onnx")

PROBE = """
import sys, json
from clinbert_onnx import ClinicalBert
m = ClinicalBert.load(sys.argv[1])
m.embed(["Chest pain.", "Patient with pneumonia."])
m.fill_mask("The patient was started on [MASK].")
print(json.dumps(sorted({k.split('.')[0] for k in sys.modules} & set(sys.argv[2].split(',')))))
"""


def test_import_and_inference_load_no_heavy_module(tiny_bundle):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tiny_bundle), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_fresh_venv_without_extras_runs_fill_mask_and_embed(tmp_path, tiny_bundle):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for module in HEAVY:
        probe = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is installed in the runtime-only environment"
    cli = env_dir / "bin" / "clinbert"
    text = "The patient was started on [MASK] for pneumonia."
    fm = subprocess.run(
        [str(cli), "fill-mask", str(tiny_bundle), text, "--json", "--variant", "fp32"],
        capture_output=True,
        text=True,
        check=True,
    )
    emb = subprocess.run(
        [str(cli), "embed", str(tiny_bundle), "Chest pain.", "--json", "--variant", "fp32"],
        capture_output=True,
        text=True,
        check=True,
    )
    here = ClinicalBert.load(tiny_bundle, device="cpu", variant="fp32")
    theirs = json.loads(fm.stdout.splitlines()[0])["predictions"]
    ours = here.fill_mask(text)
    assert [p["token"] for p in theirs] == [p["token"] for p in ours]
    vec = np.array(json.loads(emb.stdout.splitlines()[0])["embedding"], dtype=np.float32)
    assert float(vec @ here.embed("Chest pain.")[0]) > 0.99999
    imports = subprocess.run(
        [str(py), "-c", PROBE, str(tiny_bundle), ",".join(HEAVY)], capture_output=True, text=True, check=True
    )
    assert json.loads(imports.stdout.strip().splitlines()[-1]) == []
