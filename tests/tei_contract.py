"""JSON Schemas of Text Embeddings Inference's HTTP contract (TEI 1.9.x), written for the contract tests from the
facts of TEI's published OpenAPI document (huggingface/text-embeddings-inference, docs/openapi.json) and its
router (router/src/http/server.rs, types.rs; lib.rs for ``Info`` and ``ErrorType``): required fields, types,
enums, and the statuses each route documents. Not a copy of that file: only what a TEI client relies on.
"""

from __future__ import annotations

from typing import Any

NUMBER = {"type": "number"}
UINT = {"type": "integer", "minimum": 0}
NULLABLE_UINT = {"type": ["integer", "null"], "minimum": 0}

#: ErrorResponse: {"error": string, "error_type": ErrorType}; ErrorType serializes as its variant names.
ERROR_TYPES = ["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]
ERROR = {
    "type": "object",
    "required": ["error", "error_type"],
    "properties": {"error": {"type": "string"}, "error_type": {"enum": ERROR_TYPES}},
}
#: TEI's status for each error_type (router: impl From<&ErrorType> for StatusCode), plus 413 "Batch size error"
#: (documented on every batch route with error_type validation).
STATUS_OF_TYPE = {"Unhealthy": {503}, "Backend": {424}, "Overloaded": {429}, "Validation": {413, 422},
                  "Tokenizer": {422}, "Empty": {400}}  # fmt: skip

EMBED = {"type": "array", "items": {"type": "array", "items": NUMBER}}
EMBED_ALL = {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": NUMBER}}}
SIMPLE_TOKEN = {
    "type": "object",
    "required": ["id", "text", "special"],
    "properties": {
        "id": UINT,
        "text": {"type": "string"},
        "special": {"type": "boolean"},
        "start": NULLABLE_UINT,
        "stop": NULLABLE_UINT,
    },
}
TOKENIZE = {"type": "array", "items": {"type": "array", "items": SIMPLE_TOKEN}}
DECODE = {"type": "array", "items": {"type": "string"}}
SIMILARITY = {"type": "array", "items": NUMBER}
#: TEI 1.9.3's ClassifierModel (for ModelType's classifier and reranker): the checkpoint's id2label (keys: ids as
#: decimal strings) and label2id.
CLASSIFIER_MODEL = {
    "type": "object",
    "required": ["id2label", "label2id"],
    "properties": {
        "id2label": {"type": "object", "additionalProperties": {"type": "string"}},
        "label2id": {"type": "object", "additionalProperties": UINT},
    },
}
EMBEDDING_MODEL = {"type": "object", "required": ["pooling"], "properties": {"pooling": {"type": "string"}}}


def _variant(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """One variant of a Rust enum as serde writes it (externally tagged): an object with exactly that key."""
    return {"type": "object", "required": [name], "properties": {name: schema}, "additionalProperties": False}


#: TEI 1.9.3's ModelType: oneOf ClassifierModel, EmbeddingModel, RerankerModel (the last shaped as ClassifierModel).
MODEL_TYPE = {
    "oneOf": [
        _variant("classifier", CLASSIFIER_MODEL),
        _variant("embedding", EMBEDDING_MODEL),
        _variant("reranker", CLASSIFIER_MODEL),
    ]
}
INFO = {
    "type": "object",
    "required": [
        "model_id",
        "model_dtype",
        "served_model_name",
        "model_type",
        "max_concurrent_requests",
        "max_input_length",
        "max_batch_tokens",
        "max_client_batch_size",
        "auto_truncate",
        "tokenization_workers",
        "version",
    ],
    "properties": {
        "model_id": {"type": "string"},
        "model_sha": {"type": ["string", "null"]},
        "model_dtype": {"type": "string"},
        "served_model_name": {"type": "string"},
        "model_type": MODEL_TYPE,
        "max_concurrent_requests": UINT,
        "max_input_length": UINT,
        "max_batch_tokens": UINT,
        "max_batch_requests": NULLABLE_UINT,
        "max_client_batch_size": UINT,
        "auto_truncate": {"type": "boolean"},
        "tokenization_workers": UINT,
        "version": {"type": "string"},
        "sha": {"type": ["string", "null"]},
        "docker_label": {"type": ["string", "null"]},
    },
}
OPENAI_EMBEDDINGS = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["object", "embedding", "index"],
                "properties": {
                    "object": {"const": "embedding"},
                    "embedding": {"oneOf": [{"type": "array", "items": NUMBER}, {"type": "string"}]},
                    "index": UINT,
                },
            },
        },
        "model": {"type": "string"},
        "usage": {
            "type": "object",
            "required": ["prompt_tokens", "total_tokens"],
            "properties": {"prompt_tokens": UINT, "total_tokens": UINT},
        },
    },
}
#: OpenAI's own error shape (what /v1/embeddings answers here, as OpenAI clients read it).
OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"}},
        }
    },
}

_BATCH = {200, 400, 413, 422, 424, 429}
_TOKENIZER = {200, 400, 413, 422}
#: route → (response schema, statuses TEI documents for it).
ROUTES: dict[str, tuple[dict[str, Any], set[int]]] = {
    "/embed": (EMBED, _BATCH),
    "/embed_all": (EMBED_ALL, _BATCH),
    "/embed_sparse": ({"type": "array"}, _BATCH),
    "/predict": ({"type": "array"}, _BATCH),
    "/rerank": ({"type": "array"}, _BATCH),
    "/similarity": (SIMILARITY, _BATCH),
    "/tokenize": (TOKENIZE, _TOKENIZER),
    "/decode": (DECODE, _TOKENIZER),
    "/v1/embeddings": (OPENAI_EMBEDDINGS, _BATCH),
}
