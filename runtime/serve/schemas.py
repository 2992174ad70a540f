"""Request and response bodies (pydantic), shaped after the OpenAI embeddings API and the transformers fill-mask
pipeline (Text Embeddings Inference's are in ``tei_schemas``). Unknown request fields are ignored, as those servers do."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Documented as non-blank and non-empty; checked in code (so the 422 says which input is blank).
Text = Annotated[str, Field(json_schema_extra={"minLength": 1, "pattern": "\\S"})]
Texts = Annotated[list[Text], Field(json_schema_extra={"minItems": 1})]
LongText = Literal["chunk", "truncate", "error"]
LONG_TEXT_DOC = (
    "Texts longer than the model's window: 'chunk' (overlapping windows, combined), 'truncate' (keep the first "
    "window) or 'error' (422 text_too_long). Not part of the upstream API."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


# ------------------------------------------------------------------------------------------------- OpenAI
class EmbeddingsRequest(_Request):
    input: Text | Texts = Field(description="A text or a list of texts (token arrays are not supported).")
    model: str | None = Field(None, description="Accepted for compatibility; this server serves one model.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="'base64': little-endian float32 bytes, base64-encoded (what the openai SDK asks for)."
    )
    dimensions: int | None = Field(None, description="Must be the model's hidden size if given.")
    user: str | None = Field(None, description="Ignored.")
    long_text: LongText = Field("chunk", description=LONG_TEXT_DOC)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


PARAMETERS_DOC = "Options as the Hugging Face Inference API / huggingface_hub send them; top-level fields win."


# ------------------------------------------------------------------------------------------------- fill-mask
class FillMaskParameters(_Request):
    top_k: int | None = Field(None, ge=1)
    targets: str | list[str] | None = None


class FillMaskRequest(_Request):
    inputs: Text | Texts = Field(description="Text(s) containing the mask token, e.g. [MASK].")
    top_k: int = Field(5, ge=1, description="Predictions per mask (at most the server's max_top_k).")
    targets: str | list[str] | None = Field(None, description="Candidate words to score instead of the vocabulary.")
    long_text: LongText = Field("chunk", description=LONG_TEXT_DOC)
    parameters: FillMaskParameters | None = Field(None, description=PARAMETERS_DOC)


class Prediction(BaseModel):
    score: float
    token: int
    token_str: str
    sequence: str


#: One text: a list of predictions (one mask) or a list per mask; a list of texts: one such result per text.
FillMaskResponse = list[Prediction | list[Prediction] | list[list[Prediction]]]


# ------------------------------------------------------------------------------------------------- misc
class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Status(BaseModel):
    status: str


class _Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingModel(BaseModel):
    pooling: str


class ClassifierModel(BaseModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class EmbeddingType(_Variant):
    embedding: EmbeddingModel


class ClassifierType(_Variant):
    classifier: ClassifierModel


class RerankerType(_Variant):
    reranker: ClassifierModel


#: TEI's ``ModelType``: exactly one of ``classifier``, ``embedding``, ``reranker`` (``tei.model_type`` decides).
ModelType = ClassifierType | EmbeddingType | RerankerType


class Info(BaseModel):
    """Ours and every field of Text Embeddings Inference's ``Info`` (its clients parse /info with it)."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    served_model_name: str
    revision: str | None
    variant: str
    device: str
    engine: str = "onnxruntime"
    hidden_size: int
    max_length: int
    fill_mask: bool
    quality: dict[str, object] | None
    version: str
    limits: dict[str, int | float]
    tasks: list[str]
    task: str = Field(description="The bundle's task: fill-mask, feature-extraction, text-classification...")
    labels: list[str] | None = Field(description="A classifier head's labels, by id (the checkpoint's id2label).")
    # Text Embeddings Inference's Info
    model_sha: str | None
    model_dtype: str
    model_type: ModelType
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    sha: str | None
    docker_label: str | None
