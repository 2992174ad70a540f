"""The bundle: a folder with ``manifest.json``, ``tokenizer.json``, ``config.json`` and one ONNX file per variant.

This module is the runtime half of the contract documented in ``docs/bundle-format.md``: it reads and checks a
manifest, verifies file checksums and refuses ONNX files whose external data would be read from outside the
bundle. It imports nothing heavier than the standard library.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError, ChecksumError
from .onnx_scan import external_data_locations
from .schema import FORMAT_NAME, FORMAT_VERSION, MANIFEST, FileEntry, Manifest, TokenizerInfo, VariantInfo

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST",
    "Bundle",
    "TokenizerInfo",
    "VariantInfo",
    "file_entry",
    "open_bundle",
    "read_manifest",
    "sha256_file",
    "write_manifest",
]
_HASH_CHUNK = 4 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A parsed, checked bundle: the typed ``manifest`` (see :mod:`clinbert_onnx.schema`) and ``raw``, the JSON
    as read (for ``clinbert info --json``)."""

    path: Path
    manifest: Manifest
    raw: dict[str, Any]

    @property
    def tokenizer(self) -> TokenizerInfo:
        return self.manifest.tokenizer

    @property
    def variants(self) -> Mapping[str, VariantInfo]:
        return self.manifest.variants

    @property
    def files(self) -> Mapping[str, FileEntry]:
        return self.manifest.files

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def hidden_size(self) -> int:
        return self.manifest.model.hidden_size

    @property
    def has_mlm_head(self) -> bool:
        return self.manifest.model.has_mlm_head

    @property
    def model_id(self) -> str:
        """The Hub id, else the bundle folder's name (never a local path)."""
        return self.manifest.source.model_id or self.path.resolve().name

    def variant(self, name: str) -> VariantInfo:
        if name not in self.variants:
            present = ", ".join(sorted(self.variants)) or "none"
            raise BundleError(f"bundle {self.path} has no variant '{name}' (present: {present})")
        return self.variants[name]

    def verify(self, names: Iterable[str] | None = None) -> None:
        """Check size and sha256 of the listed files (all files when ``names`` is None)."""
        for name in self.files if names is None else names:
            self._check_hash(name, self._check_size(name))

    def verify_in_background(self, names: Iterable[str]) -> Callable[[], None]:
        """Check sizes now, hash in a thread; the returned function waits and raises ChecksumError on a mismatch.

        For the weights (external-data) file only: its bytes are copied into tensors, never parsed, so they
        can be hashed while ONNX Runtime builds the session (cold start -0.1 s on BERT-base int8). The caller
        must wait before producing any result.
        """
        checked = [(name, self._check_size(name)) for name in names]
        if not checked:
            return _done

        import threading

        failure: list[BaseException] = []

        def work() -> None:
            try:
                for name, target in checked:
                    self._check_hash(name, target)
            except BaseException as exc:  # handed to the waiting thread
                failure.append(exc)

        thread = threading.Thread(target=work, name="clinbert-verify", daemon=True)
        thread.start()

        def wait() -> None:
            thread.join()
            if failure:
                raise failure[0]

        return wait

    def _check_size(self, name: str) -> Path:
        entry = self.files.get(name)
        if entry is None:
            raise BundleError(f"{name} is not listed in {self.path / MANIFEST}")
        target = self.path / name
        if not target.is_file():
            raise BundleError(f"bundle file missing: {target}")
        if target.stat().st_size != entry.size:
            raise ChecksumError(
                f"{target} has {target.stat().st_size} bytes, the manifest says {entry.size}: "
                "the file was modified or truncated"
            )
        return target

    def _check_hash(self, name: str, target: Path) -> None:
        if sha256_file(target) != self.files[name].sha256:
            raise ChecksumError(f"{target} does not match its sha256 in the manifest: the file was modified")

    def check_external_data(self, variant: VariantInfo) -> list[str]:
        """Refuse ONNX external data that is not a manifest-listed file inside the bundle folder.

        Returns the external-data files the graph reads (bundle-relative), for :meth:`verify`.
        """
        root = self.path.resolve()
        graph = self.path / variant.file
        found: list[str] = []
        for location in dict.fromkeys(external_data_locations(graph)):
            target = (graph.parent / location).resolve()
            if root not in target.parents:
                raise BundleError(
                    f"{variant.file} references external data outside the bundle ({location!r}); refusing to load"
                )
            name = target.relative_to(root).as_posix()
            if name not in self.files:
                raise BundleError(f"{variant.file} references external data {location!r} not in the manifest")
            found.append(name)
        return found

    def variant_mb(self, variant: VariantInfo) -> float:
        """Size on disk of a variant (graph plus weights), from the manifest."""
        return sum(self.files[f].size for f in variant.files if f in self.files) / 1e6


def _done() -> None:
    """Nothing left to wait for."""


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest's JSON object, after checking that ``path`` is a bundle folder (not yet its fields)."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"bundle not found: {root}")
    if not root.is_dir():
        raise BundleError(f"not a bundle folder: {root}")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root} has no {MANIFEST}: not a clinbert-onnx bundle (or an interrupted export)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path} is not a {FORMAT_NAME} manifest")
    return manifest


def open_bundle(path: str | Path) -> Bundle:
    """Parse and sanity-check a bundle's manifest. Does not hash files: call :meth:`Bundle.verify`."""
    root = Path(path)
    raw = read_manifest(root)
    try:
        manifest = Manifest.from_dict(raw)
    except BundleError as exc:
        raise BundleError(f"{root / MANIFEST}: {exc}") from None
    return Bundle(path=root, manifest=manifest, raw=raw)


def file_entry(path: Path) -> FileEntry:
    return FileEntry(size=path.stat().st_size, sha256=sha256_file(path))


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically (temporary file + rename)."""
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(folder / MANIFEST)
