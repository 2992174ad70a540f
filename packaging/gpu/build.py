"""Build ``clinbert-onnx-gpu``: the same source as ``clinbert-onnx``, with ``onnxruntime-gpu`` in place of ``onnxruntime``.

pip cannot swap a base dependency through an extra: it evaluates base requirements with an empty extra, so
``onnxruntime; extra != 'gpu'`` is installed by ``clinbert-onnx[gpu]`` too, and the CPU wheel then shadows the
GPU one (both provide the ``onnxruntime`` module). The GPU build is therefore a second distribution built from
this source tree, as fastembed / fastembed-gpu do: the main ``pyproject.toml`` with two lines changed (the name
and the ONNX Runtime requirement), so the two cannot drift apart.

    python packaging/gpu/build.py [--out dist]     # writes clinbert_onnx_gpu-VERSION-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "clinbert-onnx-gpu"
#: What the wheel is built from, relative to the repository root.
SOURCES = ("runtime", "export", "quantize", "README.md")
_CPU_REQUIREMENT = re.compile(r'^(\s*)"onnxruntime(?P<spec>[<>=!~][^";]*)",$', re.M)


def gpu_pyproject(text: str) -> str:
    """The main ``pyproject.toml`` rewritten for ``clinbert-onnx-gpu``."""
    renamed, names = re.subn(r'^name = "clinbert-onnx"$', f'name = "{NAME}"', text, count=1, flags=re.M)
    swapped, deps = _CPU_REQUIREMENT.subn(r'\1"onnxruntime-gpu\g<spec>",', renamed, count=1)
    if names != 1 or deps != 1:
        raise SystemExit("pyproject.toml no longer has the name or onnxruntime requirement this script rewrites")
    return swapped


def stage(dest: Path, gpu: bool = True) -> Path:
    """Copy the sources and pyproject.toml (rewritten when ``gpu``) into ``dest``, a project folder pip can build."""
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest / name)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (dest / "pyproject.toml").write_text(gpu_pyproject(text) if gpu else text, encoding="utf-8")
    return dest


def build(out: Path, gpu: bool = True) -> Path:
    """Build the wheel (``clinbert-onnx-gpu``, or ``clinbert-onnx`` when not ``gpu``) into ``out`` with the build
    backend installed here, and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clinbert-onnx-wheel-") as tmp:
        project = stage(Path(tmp) / "project", gpu)
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
        subprocess.run([*cmd, str(project)], check=True, capture_output=True)
    pattern = "clinbert_onnx_gpu-*.whl" if gpu else "clinbert_onnx-*.whl"
    (wheel,) = sorted(out.glob(pattern))
    return wheel


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    print(build(parser.parse_args().out))
