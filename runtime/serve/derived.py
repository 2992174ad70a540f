"""Routes for fine-tuned derivatives: the mounts of TEI's task routes ``/predict`` and ``/rerank`` (``serve.tei``
serves them where they apply to the bundle and answers TEI's 424 elsewhere) and ``/token-classification``:

- ``POST /predict`` — Text Embeddings Inference's sequence classification: ``inputs`` is a text, a pair
  ``["a", "b"]`` (TEI reads a two-text list as *one pair*), or a batch of texts and pairs (``[["a", "b"]]``);
  the answer is every label with its score, best first (a list per input for a batch); ``raw_scores`` gives
  logits; ``truncate`` / ``truncation_direction`` as TEI (without ``truncate``, a too-long input is 422);
- ``POST /rerank`` — TEI's reranking with a one-logit cross-encoder: ``query``, ``texts``, ``raw_scores``,
  ``return_text``, ``truncate``, ``truncation_direction``; ``[{"index", "score"(, "text")}]`` best first;
- ``POST /token-classification`` — the Hugging Face Inference API's shape: ``{"inputs", "parameters":
  {"aggregation_strategy", "ignore_labels", "stride"}}`` (default aggregation "simple", as that API's), the
  answer shaped as ``pipeline("token-classification")``'s; long notes are windowed, never truncated.

A route the loaded bundle cannot serve answers 422 ``task_not_supported`` naming the bundle's task.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ..classify import ClassifyOptions, ClassifyResult, TokenOptions, TokenResult, require_task
from ..errors import InputError, InputTooLongError
from ..pipelines import check_reranker, ignore_tuple, ranked
from ..schema import TEXT_CLASSIFICATION, TOKEN_CLASSIFICATION
from .tei import TAGS, TEI_ERRORS, TaskRoute, register_route

if TYPE_CHECKING:
    from .app import Runtime

JSON = "application/json"
Direction = Literal["Right", "Left", "right", "left"]
Sequence = str | list[str]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class PredictRequest(_Request):
    inputs: Sequence | list[Sequence] = Field(
        description='A text, a pair ["a", "b"], or a batch of texts and pairs ([["a", "b"], "c"]).'
    )
    raw_scores: bool = Field(False, description="Logits instead of the bundle's scoring function.")
    truncate: bool = Field(False, description="Truncate inputs longer than the window (else 422 text_too_long).")
    truncation_direction: Direction = "Right"


class RerankRequest(_Request):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = False
    truncation_direction: Direction = "Right"


class TokenParameters(_Request):
    aggregation_strategy: str = "simple"
    ignore_labels: list[str] | None = None
    stride: int | None = None


class TokenRequest(_Request):
    inputs: str | list[str]
    parameters: TokenParameters | None = None


class Prediction(BaseModel):
    score: float
    label: str


class Ranked(BaseModel):
    index: int
    score: float
    text: str | None = None


class Entity(BaseModel):
    model_config = ConfigDict(extra="allow")
    score: float
    word: str
    start: int
    end: int


def _items(inputs: Any) -> tuple[list[Any], bool]:
    """TEI's reading of ``inputs``: (items, single). A list of exactly two texts is one pair."""
    if isinstance(inputs, str):
        return [inputs], True
    if len(inputs) == 2 and all(isinstance(x, str) for x in inputs):
        return [(inputs[0], inputs[1])], True
    items: list[Any] = []
    for i, x in enumerate(inputs):
        if isinstance(x, list):
            if len(x) != 2:
                raise InputError.at(i, f"is a list of {len(x)} texts: a pair has exactly two")
            items.append((x[0], x[1]))
        else:
            items.append(x)
    return items, False


def _check_sizes(items: list[Any], max_chars: int, truncate: bool) -> list[Any]:
    """The server's ``max_chars`` on each member of a pair (single texts are checked by ``Runtime.run``)."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, tuple):
            if not truncate and any(len(t) > max_chars for t in item if isinstance(t, str)):
                raise InputTooLongError.at(i, f"has a text over {max_chars} characters (ask for truncation)")
            item = tuple(t[:max_chars] if isinstance(t, str) else t for t in item)
        out.append(item)
    return out


def register(app: FastAPI, rt: Runtime, errors: dict[int | str, dict[str, Any]]) -> None:
    """``/token-classification`` (422 naming the bundle's task when it cannot serve it). TEI's ``/predict`` and
    ``/rerank`` are task routes of ``serve.tei``: their mounts below serve the bundles they apply to, and
    ``serve.tei`` answers TEI's 424 "not applicable" (naming the bundle's task) for the others."""
    _register_token_classification(app, rt, errors)


def _mount_predict(app: FastAPI, rt: Runtime, route: TaskRoute) -> None:
    model = rt.model

    @app.post(route.path, response_model=route.response, responses=TEI_ERRORS, tags=TAGS, description=route.summary)
    async def predict(body: PredictRequest) -> Response:
        """TEI's sequence classification on a text-classification bundle (see the module doc)."""
        require_task(model, TEXT_CLASSIFICATION)
        items, single = _items(body.inputs)
        items = _check_sizes(items, rt.config.max_chars, body.truncate)
        options = ClassifyOptions(
            "none" if body.raw_scores else None,
            "truncate" if body.truncate else "error",
            body.truncation_direction.lower(),
        )
        result, _ = await rt.run(TEXT_CLASSIFICATION, options, items)
        classified: ClassifyResult = result
        rows = [ranked(scores, classified.labels, None) for scores in classified.scores]
        payload = [{"score": r["score"], "label": r["label"]} for r in rows[0]] if single else rows
        return Response(json.dumps(payload).encode(), media_type=JSON)


def _mount_rerank(app: FastAPI, rt: Runtime, route: TaskRoute) -> None:
    model = rt.model

    @app.post(route.path, response_model=route.response, responses=TEI_ERRORS, tags=TAGS, description=route.summary)
    async def rerank(body: RerankRequest) -> Response:
        """TEI's reranking with a one-logit cross-encoder bundle: every text's score against ``query``, best first."""
        check_reranker(model)
        if not body.query.strip():
            raise InputError("query must be a non-empty text")
        if not body.texts:
            raise InputError("texts must not be empty")
        items = _check_sizes([(body.query, t) for t in body.texts], rt.config.max_chars, body.truncate)
        options = ClassifyOptions(
            "none" if body.raw_scores else "sigmoid",
            "truncate" if body.truncate else "error",
            body.truncation_direction.lower(),
        )
        result, _ = await rt.run(TEXT_CLASSIFICATION, options, items)
        scores = result.scores[:, 0]
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        rows: list[dict[str, Any]] = [{"index": i, "score": float(scores[i])} for i in order]
        if body.return_text:
            for row in rows:
                row["text"] = body.texts[row["index"]]
        return Response(json.dumps(rows, ensure_ascii=False).encode(), media_type=JSON)


register_route("/predict", _mount_predict)
register_route("/rerank", _mount_rerank)


def _register_token_classification(app: FastAPI, rt: Runtime, errors: dict[int | str, dict[str, Any]]) -> None:
    model = rt.model

    @app.post(
        "/token-classification",
        response_model=list[Entity] | list[list[Entity]],
        responses=errors,
        tags=["Token classification"],
    )
    async def token_classification(body: TokenRequest) -> Response:
        """Entities as ``pipeline("token-classification")`` returns them (the Hugging Face Inference API's body)."""
        require_task(model, TOKEN_CLASSIFICATION)
        params = body.parameters or TokenParameters()
        options = TokenOptions(params.aggregation_strategy.lower(), ignore_tuple(params.ignore_labels), params.stride)
        result, _ = await rt.run(TOKEN_CLASSIFICATION, options, body.inputs)
        found: TokenResult = result
        payload = found.entities[0] if isinstance(body.inputs, str) else found.entities
        return Response(json.dumps(payload, ensure_ascii=False).encode(), media_type=JSON)
