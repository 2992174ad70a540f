"""The bundle: a folder with ``manifest.json``, ``tokenizer.json``, ``config.json`` and one ONNX file per variant.

This module is the runtime half of the contract documented in ``docs/bundle-format.md``: it reads and checks a
manifest, verifies file checksums and refuses ONNX files whose external data would be read from outside the
bundle. It imports nothing heavier than the standard library.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError, ChecksumError
from .onnx_scan import external_data_locations

FORMAT_NAME = "clinbert-onnx-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_HASH_CHUNK = 4 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TokenizerInfo:
    file: str
    lowercase: bool
    max_length: int
    cls_token_id: int
    sep_token_id: int
    pad_token_id: int
    mask_token_id: int
    unk_token_id: int
    mask_token: str


@dataclass(frozen=True)
class VariantInfo:
    name: str
    file: str
    precision: str
    devices: tuple[str, ...]
    raw: dict[str, Any]
    data: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The graph file and, when the weights are stored beside it, their external-data file."""
        return (self.file, self.data) if self.data else (self.file,)


@dataclass(frozen=True)
class Bundle:
    """A parsed, checked bundle. ``manifest`` is the raw JSON for reporting; typed fields for use."""

    path: Path
    manifest: dict[str, Any]
    tokenizer: TokenizerInfo
    variants: dict[str, VariantInfo]
    hidden_size: int
    has_mlm_head: bool
    model_id: str

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest["files"])

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
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise BundleError(f"{name} is not listed in {self.path / MANIFEST}")
        target = self.path / name
        if not target.is_file():
            raise BundleError(f"bundle file missing: {target}")
        if target.stat().st_size != entry["size"]:
            raise ChecksumError(
                f"{target} has {target.stat().st_size} bytes, the manifest says {entry['size']}: "
                "the file was modified or truncated"
            )
        return target

    def _check_hash(self, name: str, target: Path) -> None:
        if sha256_file(target) != self.manifest["files"][name]["sha256"]:
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
            if name not in self.manifest["files"]:
                raise BundleError(f"{variant.file} references external data {location!r} not in the manifest")
            found.append(name)
        return found

    def variant_mb(self, variant: VariantInfo) -> float:
        """Size on disk of a variant (graph plus weights), from the manifest."""
        files = self.files
        return sum(int(files.get(f, {}).get("size", 0)) for f in variant.files) / 1e6


def _done() -> None:
    """Nothing left to wait for."""


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise BundleError(f"manifest is missing '{where}{key}'")
    return mapping[key]


def read_manifest(path: str | Path) -> dict[str, Any]:
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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BundleError(f"{manifest_path} is not a {FORMAT_NAME} manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path} has format_version {version}; this clinbert-onnx reads version {FORMAT_VERSION}"
        )
    return manifest


def open_bundle(path: str | Path) -> Bundle:
    """Parse and sanity-check a bundle's manifest. Does not hash files: call :meth:`Bundle.verify`."""
    root = Path(path)
    manifest = read_manifest(root)
    try:
        tok = _require(manifest, "tokenizer", "")
        tokenizer = TokenizerInfo(
            file=str(tok["file"]),
            lowercase=bool(tok["lowercase"]),
            max_length=int(tok["max_length"]),
            cls_token_id=int(tok["cls_token_id"]),
            sep_token_id=int(tok["sep_token_id"]),
            pad_token_id=int(tok["pad_token_id"]),
            mask_token_id=int(tok["mask_token_id"]),
            unk_token_id=int(tok["unk_token_id"]),
            mask_token=str(tok["mask_token"]),
        )
        model = _require(manifest, "model", "")
        variants = {
            name: VariantInfo(
                name=name,
                file=str(v["file"]),
                precision=str(v["precision"]),
                devices=tuple(v.get("devices", ("cpu",))),
                raw=v,
                data=str(v["data"]) if v.get("data") else None,
            )
            for name, v in _require(manifest, "variants", "").items()
        }
        _require(manifest, "files", "")
        source = manifest.get("source", {})
        model_id = str(source.get("model_id") or root.resolve().name)  # never expose a local path
        return Bundle(
            path=root,
            manifest=manifest,
            tokenizer=tokenizer,
            variants=variants,
            hidden_size=int(model["hidden_size"]),
            has_mlm_head=bool(model["has_mlm_head"]),
            model_id=model_id,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{root / MANIFEST} is malformed: {exc!r}") from None


def file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (temporary file + rename)."""
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(folder / MANIFEST)
