"""The work folder (``OUT.partial/``) and its checkpoint: what makes ``--resume`` lose and repeat nothing.

Protocol, per window of rows: the writers append the window's results and fsync them; then
``checkpoint.json`` is replaced atomically (write a temporary file, fsync, rename, fsync the folder) with the
number of input rows consumed, the input byte offset after them (for .txt/.jsonl) and each writer's committed
size. A run killed at any instant leaves a checkpoint that describes durable data; anything written after it
is cut off when the run resumes, and the input is re-read from the row after the last committed one.

At the end the checkpoint moves to ``finalizing`` (final files are built inside the folder), then to
``publishing`` (files are renamed to their destinations: errors and sidecar first, the output last), then the
folder is removed. Both steps are idempotent, so a kill during them is resumed too.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from .options import OutputExistsError, ResumeError
from .writers import fsync_dir

FORMAT = "clinbert-score-checkpoint"
VERSION = 1
CHECKPOINT = "checkpoint.json"
_OURS = {
    CHECKPOINT,
    CHECKPOINT + ".tmp",
    "data.jsonl",
    "data.npy",
    "ids.jsonl",
    "errors.jsonl",
    "parts",
    "final.parquet",
    "final.parquet.tmp",
}


class WorkDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoint = path / CHECKPOINT

    def exists(self) -> bool:
        return self.path.exists()

    def _check_ours(self) -> None:
        if not self.path.is_dir():
            raise OutputExistsError(f"{self.path} exists and is not a work folder of clinbert score; remove it")
        strangers = sorted(p.name for p in self.path.iterdir() if p.name not in _OURS)
        if strangers:
            raise OutputExistsError(
                f"{self.path} holds files clinbert score did not write ({', '.join(strangers[:5])}); "
                "refusing to delete it"
            )

    def remove(self) -> None:
        if self.path.exists():
            self._check_ours()
            shutil.rmtree(self.path)

    def create(self) -> None:
        """An empty work folder (an old one, checked to be ours, is removed first)."""
        self.remove()
        self.path.mkdir()
        fsync_dir(self.path.parent)

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint, or None when the run was killed before its first commit."""
        self._check_ours()
        if not self.checkpoint.exists():
            return None
        try:
            data = json.loads(self.checkpoint.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ResumeError(f"{self.checkpoint} is unreadable; start over with --force") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ResumeError(
                f"{self.checkpoint} was not written by this version of clinbert score; start over with --force"
            )
        return data

    def save(self, data: dict[str, Any]) -> None:
        tmp = self.checkpoint.with_name(CHECKPOINT + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"format": FORMAT, "version": VERSION, **data}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.checkpoint)
        fsync_dir(self.path)


def publish(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` atomically (a copy to ``dst``'s folder, then a rename, across file systems).
    Does nothing when ``src`` is gone: an interrupted publish already moved it."""
    if not src.exists():
        return
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(dst.name + ".partial-copy")
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
        src.unlink()
    fsync_dir(dst.parent)


def check_same_job(saved: dict[str, Any], identity: dict[str, Any]) -> None:
    """Raise ResumeError unless the interrupted run read the same input with the same options and model."""
    old_input, new_input = saved.get("input"), identity["input"]
    if old_input != new_input:
        what = "was a different file" if (old_input or {}).get("path") != new_input["path"] else "has changed"
        raise ResumeError(
            f"the input {what} since the interrupted run (path, size or modification time differ); "
            "resuming would mix outputs: start over with --force"
        )
    old_opts, new_opts = saved.get("options", {}), identity["options"]
    changed = [
        f"{k} ({old_opts.get(k)!r} → {new_opts.get(k)!r})"
        for k in sorted(set(old_opts) | set(new_opts))
        if old_opts.get(k) != new_opts.get(k)
    ]
    if changed:
        raise ResumeError(
            f"options differ from the interrupted run: {', '.join(changed)}; resume with the same options "
            "or start over with --force"
        )
    old_model, new_model = saved.get("model", {}), identity["model"]
    if old_model != new_model:
        changed = [
            f"{k} ({old_model.get(k)!r} → {new_model.get(k)!r})"
            for k in sorted(new_model)
            if old_model.get(k) != new_model.get(k)
        ]
        raise ResumeError(
            f"the model differs from the interrupted run's: {', '.join(changed)}; resume with the same bundle, "
            "--variant and --device, or start over with --force"
        )
