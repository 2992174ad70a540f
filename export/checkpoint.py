"""Resolve a checkpoint (Hub id + revision, or a local folder), inspect it, and load it safely.

Weights load from safetensors where present. A pickled ``pytorch_model.bin`` is read only with an explicit
``allow_pickle=True`` and then through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinbert_onnx.errors import ExportError
from clinbert_onnx.schema import FEATURE_EXTRACTION, FILL_MASK, TASKS, TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_HUB_PATTERNS = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
]


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    model_id: str | None
    revision: str | None
    config: dict[str, Any]
    weight_files: tuple[Path, ...]
    safetensors: bool
    has_mlm_head: bool
    #: The bundle task (``schema.TASKS``) the checkpoint's head exports to.
    task: str = FEATURE_EXTRACTION

    @property
    def name(self) -> str:
        return (self.model_id or self.path.name).rstrip("/").split("/")[-1].lower()

    def weights_sha256(self) -> str:
        digest = hashlib.sha256()
        for f in self.weight_files:
            with open(f, "rb") as fh:
                while chunk := fh.read(4 << 20):
                    digest.update(chunk)
        return digest.hexdigest()


def _looks_like_path(model: str) -> bool:
    """A Hub id is "name" or "org/name"; anything else is meant as a path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)


def resolve(model: str, revision: str | None, allow_pickle: bool) -> Checkpoint:
    """Turn MODEL into a local folder: a directory as it is, a Hub id through the Hugging Face cache."""
    local = Path(model).expanduser()
    if local.is_dir():
        return inspect(local, model_id=None, revision=None, allow_pickle=allow_pickle)
    if _looks_like_path(model) or local.exists():
        raise ExportError(f"checkpoint folder not found: {model}")
    return inspect(_download(model, revision, allow_pickle), model_id=model, revision=None, allow_pickle=allow_pickle)


def _download(repo_id: str, revision: str | None, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    if revision is None:
        warnings.warn(
            f"no --revision given for {repo_id}: using the current 'main'; pin a commit for a reproducible bundle",
            UserWarning,
            stacklevel=2,
        )
    patterns = _HUB_PATTERNS + (
        ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"] if allow_pickle else []
    )
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except HFValidationError:
        raise ExportError(f"{repo_id!r} is neither a local folder nor a valid Hub model id") from None
    except Exception as exc:  # the hub client raises many types: offline, 404, auth, network
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ExportError(f"cannot fetch {repo_id}@{revision or 'main'} from the Hub: {first}") from None


def _weight_keys(files: tuple[Path, ...], safetensors: bool) -> set[str]:
    keys: set[str] = set()
    if safetensors:
        from safetensors import safe_open

        for f in files:
            with safe_open(str(f), framework="np") as fh:
                keys.update(fh.keys())
        return keys
    import torch

    for f in files:
        keys.update(torch.load(f, map_location="meta", weights_only=True).keys())
    return keys


def _files_from_index(path: Path, index_name: str) -> tuple[Path, ...]:
    index = json.loads((path / index_name).read_text())
    return tuple(sorted({path / name for name in index["weight_map"].values()}))


def inspect(path: Path, model_id: str | None, revision: str | None, allow_pickle: bool) -> Checkpoint:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{path} has no config.json: not a transformers checkpoint")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{config_file} is not valid JSON: {exc}") from None
    model_type = config.get("model_type")
    if model_type != "bert":
        raise ExportError(f"{path} is a '{model_type}' checkpoint; clinbert-onnx exports BERT models only")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ExportError(f"{path} has no tokenizer (tokenizer.json or vocab.txt)")
    files: tuple[Path, ...]
    if (path / SAFETENSORS[0]).is_file():
        files, safe = (path / SAFETENSORS[0],), True
    elif (path / SAFETENSORS[1]).is_file():
        files, safe = _files_from_index(path, SAFETENSORS[1]), True
    elif (path / PICKLES[0]).is_file() or (path / PICKLES[1]).is_file():
        if not allow_pickle:
            raise ExportError(
                f"{path} has only pickled weights (pytorch_model.bin); pass --allow-pickle to load them with "
                "torch.load(weights_only=True), or convert the checkpoint to safetensors"
            )
        files = (path / PICKLES[0],) if (path / PICKLES[0]).is_file() else _files_from_index(path, PICKLES[1])
        safe = False
    else:
        raise ExportError(f"{path} has no weights (model.safetensors or pytorch_model.bin)")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ExportError(f"{path} is missing weight shards: {', '.join(m.name for m in missing)}")
    keys = _weight_keys(files, safe)
    has_head = any(k.startswith("cls.predictions.transform.dense") for k in keys)
    task = checkpoint_task(config, keys, has_head, path)
    if revision is None and model_id is not None:
        revision = path.name  # a Hub snapshot folder is named after the resolved commit
    return Checkpoint(path, model_id, revision, config, files, safe, has_head and task == FILL_MASK, task)


#: Heads exported as an encoder plus a masked-LM head (pre-training heads keep the MLM part).
_MLM_ARCHITECTURES = ("BertForMaskedLM", "BertForPreTraining", "BertLMHeadModel")
_ARCHITECTURE_TASKS = {spec.architecture: name for name, spec in TASKS.items()}


def checkpoint_task(config: dict[str, Any], keys: set[str], has_mlm_head: bool, path: Path) -> str:
    """The bundle task of a checkpoint, from ``config.architectures`` (else from its weights). A head this
    package does not serve (question answering, multiple choice...) is an ExportError naming it."""
    names = config.get("architectures") or []
    architecture = str(names[0]) if isinstance(names, list) and names else None
    if architecture is None:
        if any(k.startswith("classifier.") for k in keys):
            raise ExportError(
                f"{path} has a classifier head but its config.json names no architecture: set "
                '"architectures": ["BertForTokenClassification"] or ["BertForSequenceClassification"]'
            )
        return FILL_MASK if has_mlm_head else FEATURE_EXTRACTION
    if architecture in _MLM_ARCHITECTURES or architecture == TASKS[FEATURE_EXTRACTION].architecture:
        return FILL_MASK if has_mlm_head else FEATURE_EXTRACTION
    if architecture not in _ARCHITECTURE_TASKS:
        served = ", ".join([*_ARCHITECTURE_TASKS, *_MLM_ARCHITECTURES[1:]])
        raise ExportError(f"{path} is a {architecture} checkpoint: clinbert-onnx exports {served}")
    task = _ARCHITECTURE_TASKS[architecture]
    if task in (TOKEN_CLASSIFICATION, TEXT_CLASSIFICATION) and "classifier.weight" not in keys:
        raise ExportError(f"{path} says {architecture} but its weights have no classifier.weight")
    return task


def load_torch_model(ckpt: Checkpoint) -> Any:
    """The torch module to export: the checkpoint's classifier for a fine-tuned derivative, BertForMaskedLM when
    the checkpoint has an MLM head, else BertModel."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertForSequenceClassification,
        BertForTokenClassification,
        BertModel,
    )

    kwargs: dict[str, Any] = {"attn_implementation": "eager"}
    source: str | None = str(ckpt.path)
    if ckpt.safetensors:
        kwargs["use_safetensors"] = True
    else:
        # Pickled weights: read them ourselves with weights_only=True (no arbitrary code), then hand them over.
        state_dict: dict[str, Any] = {}
        for f in ckpt.weight_files:
            state_dict.update(torch.load(f, map_location="cpu", weights_only=True))
        kwargs.update(state_dict=state_dict, config=BertConfig.from_pretrained(str(ckpt.path)))
        source = None
    try:
        if ckpt.task == TOKEN_CLASSIFICATION:
            model = BertForTokenClassification.from_pretrained(source, **kwargs)
        elif ckpt.task == TEXT_CLASSIFICATION:
            model = BertForSequenceClassification.from_pretrained(source, **kwargs)
        elif ckpt.has_mlm_head:
            model = BertForMaskedLM.from_pretrained(source, **kwargs)
        else:
            model = BertModel.from_pretrained(source, add_pooling_layer=False, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ExportError(f"cannot load the weights in {ckpt.path}: {str(exc).splitlines()[0][:300]}") from None
    return model.eval()
