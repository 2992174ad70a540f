"""Classifier heads of fine-tuned derivatives, appended to the fused encoder like the masked-LM head.

The encoder goes through Optimum and the transformer optimizer exactly as the base model does; the head is
added after it, so every bundle keeps ``last_hidden_state`` and ``mean_pooled`` (embeddings) and the head's
MatMuls are ordinary constant-weight MatMuls that the per-token INT8 recipe rewrites like the encoder's:

- token classification: ``last_hidden_state [B,S,H] -> MatMul(W [H,L]) + b -> logits [B,S,L]``;
- text classification: ``last_hidden_state -> Gather(position 0) [B,H] -> pooler MatMul + b -> Tanh
  -> classifier MatMul + b -> logits [B,L]`` (BERT's pooler, then the classifier; dropout is inert).

The head's nodes are named ``head/*`` (:data:`HEAD_NODES`: exclude them from INT8 with ``--exclude-node``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from clinbert_onnx.errors import ExportError
from clinbert_onnx.schema import LAST_HIDDEN_STATE as HIDDEN
from clinbert_onnx.schema import LOGITS, SCORE_FUNCTIONS, TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION, HeadInfo

POOLER_NODE = "head/pooler/MatMul"
CLASSIFIER_NODE = "head/classifier/MatMul"
HEAD_NODES = (POOLER_NODE, CLASSIFIER_NODE)
#: Labels that are not entities but artefacts of how a data set was labelled (sub-word continuation, special
#: tokens): token classification leaves them out by default, like "O".
PSEUDO_LABELS = ("X", "[CLS]", "[SEP]", "[PAD]")


@dataclass(frozen=True)
class ClassifierHead:
    """Weights as torch stores them (out, in); ``pooler_*`` for text classification only."""

    weight: np.ndarray
    bias: np.ndarray
    pooler_weight: np.ndarray | None = None
    pooler_bias: np.ndarray | None = None


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy(), dtype=np.float32)


def head_from_torch(model: Any, task: str) -> ClassifierHead:
    classifier = model.classifier
    if task == TOKEN_CLASSIFICATION:
        return ClassifierHead(_np(classifier.weight), _np(classifier.bias))
    pooler = getattr(model.bert, "pooler", None)
    if pooler is None:
        raise ExportError("the sequence classifier has no pooler (BertForSequenceClassification always has one)")
    return ClassifierHead(
        _np(classifier.weight), _np(classifier.bias), _np(pooler.dense.weight), _np(pooler.dense.bias)
    )


def add_classifier_head(model: Any, head: ClassifierHead, task: str) -> None:
    """Append the head to the fused encoder ``model`` (an onnx ModelProto) and declare ``logits``."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    labels = head.weight.shape[0]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(head.weight.T), "head.classifier.weight"),
        numpy_helper.from_array(head.bias, "head.classifier.bias"),
    ]
    nodes = []
    x = HIDDEN
    if task == TEXT_CLASSIFICATION:
        if head.pooler_weight is None or head.pooler_bias is None:
            raise ExportError("a text-classification head needs the pooler's weights")
        inits += [
            numpy_helper.from_array(np.array(0, dtype=np.int64), "head.first"),
            numpy_helper.from_array(np.ascontiguousarray(head.pooler_weight.T), "head.pooler.weight"),
            numpy_helper.from_array(head.pooler_bias, "head.pooler.bias"),
        ]
        nodes += [
            helper.make_node("Gather", [HIDDEN, "head.first"], ["head.cls"], name="head/cls", axis=1),
            helper.make_node("MatMul", ["head.cls", "head.pooler.weight"], ["head.pooled_mm"], name=POOLER_NODE),
            helper.make_node("Add", ["head.pooled_mm", "head.pooler.bias"], ["head.pooled_b"], name="head/pooler/Add"),
            helper.make_node("Tanh", ["head.pooled_b"], ["head.pooled"], name="head/pooler/Tanh"),
        ]
        x = "head.pooled"
        dims: list[Any] = ["batch_size", labels]
    elif task == TOKEN_CLASSIFICATION:
        dims = ["batch_size", "sequence_length", labels]
    else:
        raise ExportError(f"no classifier head for task {task!r}")
    nodes += [
        helper.make_node("MatMul", [x, "head.classifier.weight"], ["head.logits_mm"], name=CLASSIFIER_NODE),
        helper.make_node("Add", ["head.logits_mm", "head.classifier.bias"], [LOGITS], name="head/classifier/Add"),
    ]
    graph.initializer.extend(inits)
    graph.node.extend(nodes)
    graph.output.append(helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, dims))


# ------------------------------------------------------------------------------------------------ labels
def default_function(problem_type: str | None, num_labels: int) -> str:
    """The scoring function transformers' text-classification pipeline applies when none is asked for."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def label_scheme(labels: list[str]) -> str:
    """ "BILOU", "BIOES", "BIO" or "other", from the labels' prefixes."""
    prefixes = {label.split("-", 1)[0] for label in labels if "-" in label}
    if prefixes & {"L", "U"} and prefixes <= {"B", "I", "L", "U"}:
        return "BILOU"
    if prefixes & {"E", "S"} and prefixes <= {"B", "I", "E", "S"}:
        return "BIOES"
    if prefixes and prefixes <= {"B", "I"}:
        return "BIO"
    return "other"


def head_info(config: dict[str, Any], task: str) -> HeadInfo:
    """The manifest's ``head`` from the checkpoint's config (``id2label``, ``problem_type``)."""
    raw = config.get("id2label") or {}
    try:
        by_id = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ExportError("config.json's id2label has keys that are not label ids") from None
    num = int(config.get("num_labels") or len(by_id) or 0)
    if num < 1 or sorted(by_id) != list(range(num)):
        raise ExportError(f"config.json's id2label must name labels 0..{num - 1}")
    labels = [by_id[i] for i in range(num)]
    problem = config.get("problem_type")
    problem_type = str(problem) if problem else None
    function = default_function(problem_type, num) if task == TEXT_CLASSIFICATION else "softmax"
    if function not in SCORE_FUNCTIONS:
        raise ExportError(f"unknown scoring function {function!r}")
    if task == TOKEN_CLASSIFICATION:
        ignore = tuple(label for label in ("O", *PSEUDO_LABELS) if label in labels or label == "O")
        return HeadInfo(
            labels=tuple(labels),
            function=function,
            problem_type=problem_type,
            scheme=label_scheme(labels),
            ignore_labels=ignore,
        )
    return HeadInfo(labels=tuple(labels), function=function, problem_type=problem_type)
