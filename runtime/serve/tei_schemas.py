"""Request and response bodies of Text Embeddings Inference's routes (TEI 1.9, its published OpenAPI document):
field names, defaults and shapes as TEI has them. Unknown fields are ignored, as TEI does. ``long_text`` is
ours (not TEI's) and documented as such."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .schemas import LONG_TEXT_DOC, PARAMETERS_DOC, LongText, Text, _Request

#: TEI accepts both spellings (its enum is "Left"/"Right", with lower-case aliases).
Direction = Literal["right", "left", "Right", "Left"]
TokenId = Annotated[int, Field(ge=0, le=2**32 - 1)]
TokenIds = list[TokenId]
#: A text or token ids (``[CLS] ... [SEP]`` included, as TEI's tokenizer produces them), or a list of those.
TeiInput = Text | TokenIds | list[Text | TokenIds]
TRUNCATE_DOC = "Truncate texts longer than the window (else 422). Not set: the server's --auto-truncate (off)."
DIRECTION_DOC = "Which end truncation cuts: 'right' keeps the start of the text, 'left' its end."
PROMPT_DOC = "This model has no prompts (no Sentence Transformers 'prompts'): any value answers 422, as TEI does."


class _Truncation(_Request):
    truncate: bool | None = Field(None, description=TRUNCATE_DOC)
    truncation_direction: Direction = Field("right", description=DIRECTION_DOC)


class _Prompted(_Truncation):
    prompt_name: str | None = Field(None, description=PROMPT_DOC)


class EmbedParameters(_Request):
    normalize: bool | None = None
    truncate: bool | None = None
    truncation_direction: Direction | None = None
    prompt_name: str | None = None
    dimensions: int | None = Field(None, ge=0)


class EmbedRequest(_Prompted):
    inputs: TeiInput
    normalize: bool = True
    dimensions: int | None = Field(None, ge=0, description="Keep the first N dimensions (then normalize).")
    long_text: LongText | None = Field(None, description=LONG_TEXT_DOC + " Overrides 'truncate' when given.")
    parameters: EmbedParameters | None = Field(None, description=PARAMETERS_DOC)


class EmbedAllRequest(_Prompted):
    inputs: TeiInput


class EmbedSparseRequest(_Prompted):
    inputs: str | TokenIds | list[str | TokenIds]  # only validated: the route does not apply to dense models


class TokenizeRequest(_Request):
    inputs: Text | list[Text]
    add_special_tokens: bool = True
    prompt_name: str | None = Field(None, description=PROMPT_DOC)


class DecodeRequest(_Request):
    ids: TokenIds | list[TokenIds]
    skip_special_tokens: bool = True


class SimilarityInput(_Request):
    source_sentence: Text
    sentences: list[Text] = Field(description="Compared with source_sentence (cosine similarity).")


class SimilarityParameters(_Prompted):
    pass


class SimilarityRequest(_Request):
    inputs: SimilarityInput
    parameters: SimilarityParameters | None = None


#: One text, a pair of texts, or a batch of single texts and pairs.
PredictInput = str | Annotated[list[str], Field(min_length=2, max_length=2)] | list[list[str]]


class PredictRequest(_Truncation):
    inputs: PredictInput
    raw_scores: bool = False


class RerankRequest(_Truncation):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False


# ------------------------------------------------------------------------------------------------- responses
class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(None, description="UTF-8 byte offset in the input (null for special tokens).")
    stop: int | None = None


class Prediction(BaseModel):
    score: float
    label: str


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class SparseValue(BaseModel):
    index: int
    value: float


class TeiError(BaseModel):
    error: str
    error_type: Literal["Unhealthy", "Backend", "Overloaded", "Validation", "Tokenizer", "Empty"]


EmbedResponse = list[list[float]]
EmbedAllResponse = list[list[list[float]]]
TokenizeResponse = list[list[SimpleToken]]
DecodeResponse = list[str]
SimilarityResponse = list[float]
PredictResponse = list[Prediction] | list[list[Prediction]]
RerankResponse = list[Rank]
EmbedSparseResponse = list[list[SparseValue]]
