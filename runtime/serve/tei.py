"""Text Embeddings Inference's routes (TEI 1.9): ``/embed``, ``/embed_all``, ``/similarity``, ``/tokenize``,
``/decode``, ``/info`` fields, and the task routes (``/embed_sparse``, ``/predict``, ``/rerank``).

Request fields, defaults and response shapes are TEI's (``tei_schemas``); errors are mapped to TEI's shape
and statuses at the edge (``errors.render``). Inference goes through the staged core like every route: each
text is prepared (tokenized once), queued in the batcher, finished.

**Task routes.** A TEI route that needs a task the bundle may lack is a :class:`TaskRoute`. When a mount is
registered for it (:func:`register_route`) and the route applies to the bundle (``tasks.supported(route.task,
model)``, and ``route.serves(model)`` where a route is narrower than its task: ``/rerank`` needs a one-logit
classifier), the mount serves it; otherwise the route still exists, validates its body as TEI does, and
answers TEI's "not applicable" error (424 ``Backend``), never 404/500. ``serve/derived.py`` registers the
mounts of ``/predict`` and ``/rerank``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

from .. import __version__
from ..errors import EmptyInputError, InputError, NotApplicableError, TokenizerError, TooManyInputsError
from ..model import ClinicalBert
from ..pipelines import is_reranker
from ..pooling import l2_normalize
from ..schema import TEXT_CLASSIFICATION
from ..tasks import EmbedOptions, TokenOptions, supported
from ..windows import check_text
from . import tei_schemas as t
from .core import Runtime, option, render, render_vectors
from .inputs import INLINE_TOKENIZE_CHARS, check_request_texts

JSON = "application/json"
TAGS: list[str | Enum] = ["Text Embeddings Inference"]
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Statuses a TEI route may answer besides 200 (documented with TEI's error body).
TEI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": t.TeiError, "description": text}
    for status, text in {
        400: "Empty: no input, or an empty text",
        413: "Validation: more inputs than max_client_batch_size, or body too large",
        422: "Validation (bad field, too long without truncation) or Tokenizer",
        424: "Backend: not applicable to this bundle, or inference failed",
        429: "Overloaded: max_concurrent_requests or the queue is full (see Retry-After)",
        503: "Unhealthy: shutting down",
    }.items()
}


@dataclass(frozen=True)
class TaskRoute:
    """A TEI route served by a task that not every bundle has."""

    path: str
    task: str  # its name in ``tasks.TASKS``
    not_applicable: str  # TEI's message when the bundle cannot serve it
    request: type[BaseModel]
    response: Any
    summary: str
    serves: Callable[[ClinicalBert], bool] | None = None  # narrower than the task (None: the task decides)

    def applies(self, model: ClinicalBert) -> bool:
        """Whether the loaded bundle serves this route."""
        return supported(self.task, model) and (self.serves is None or self.serves(model))


TASK_ROUTES: dict[str, TaskRoute] = {
    r.path: r
    for r in (
        TaskRoute(
            "/embed_all",
            "token-embeddings",
            "Model is not an embedding model",
            t.EmbedAllRequest,
            t.EmbedAllResponse,
            "Token-level vectors (last hidden state, [CLS]/[SEP] included, not normalized), one matrix per input.",
        ),
        TaskRoute(
            "/embed_sparse",
            "embed-sparse",
            "Model is not an embedding model with SPLADE pooling",
            t.EmbedSparseRequest,
            t.EmbedSparseResponse,
            "Sparse (SPLADE) embeddings: this dense model answers 424.",
        ),
        TaskRoute(
            "/predict",
            TEXT_CLASSIFICATION,
            "Model is not a classifier model",
            t.PredictRequest,
            t.PredictResponse,
            "Sequence classification: answers 424 unless the bundle has a classifier head.",
        ),
        TaskRoute(
            "/rerank",
            TEXT_CLASSIFICATION,
            "model is not a re-ranker model",
            t.RerankRequest,
            t.RerankResponse,
            "Re-ranking: answers 424 unless the bundle has a re-ranker head.",
            serves=is_reranker,
        ),
    )
}
Mount = Callable[[FastAPI, Runtime, TaskRoute], None]
MOUNTS: dict[str, Mount] = {}


def register_route(path: str, mount: Mount) -> None:
    """Serve task route ``path`` with ``mount(app, runtime, route)`` for bundles whose task is supported."""
    if path not in TASK_ROUTES:
        raise ValueError(f"{path} is not a task route; add a TaskRoute to TASK_ROUTES first")
    MOUNTS[path] = mount


# ------------------------------------------------------------------------------------------------- inputs
def check_prompt(prompt_name: str | None) -> None:
    """TEI's answer for a model without Sentence Transformers prompts (the name is not echoed)."""
    if prompt_name is not None:
        raise InputError("`prompt_name` is set but no prompts were found in the Sentence Transformers configuration")


def decode_ids(rt: Runtime, index: int, ids: list[int]) -> str:
    """Token ids (as TEI's tokenizer gives them) back to text; they are tokenized again with the text path."""
    if not ids:
        raise EmptyInputError.at(index, "has no token ids")
    vocab = rt.model.tokenizer.get_vocab_size()
    if max(ids) >= vocab:
        raise TokenizerError.at(index, f"has token ids outside the vocabulary (size {vocab})")
    return str(rt.model.tokenizer.decode(ids, skip_special_tokens=True))


def tei_texts(rt: Runtime, inputs: Any) -> str | list[str]:
    """TEI's ``Input`` (a text, token ids, or a list of either) as texts."""
    if isinstance(inputs, str):
        return inputs
    if not inputs:
        raise EmptyInputError("`inputs` cannot be empty")
    if all(isinstance(x, int) for x in inputs):
        return [decode_ids(rt, 0, inputs)]
    if len(inputs) > rt.config.max_inputs:
        raise TooManyInputsError(f"batch size {len(inputs)} > maximum allowed batch size {rt.config.max_inputs}")
    return [x if isinstance(x, str) else decode_ids(rt, i, x) for i, x in enumerate(inputs)]


def long_text(rt: Runtime, truncate: bool | None) -> str:
    """TEI's truncation: the request's ``truncate``, else the server's ``--auto-truncate``."""
    return "truncate" if (rt.config.auto_truncate if truncate is None else truncate) else "error"


def byte_offsets(text: str) -> list[int]:
    """UTF-8 byte offset of each character position (TEI reports byte offsets; ``tokenizers`` gives chars)."""
    out = [0]
    for ch in text:
        out.append(out[-1] + len(ch.encode("utf-8", "surrogatepass")))
    return out


def simple_tokens(rt: Runtime, texts: list[str], add_special_tokens: bool) -> list[list[dict[str, Any]]]:
    out = []
    for text, enc in zip(
        texts, rt.model.tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens), strict=True
    ):
        where = None if text.isascii() else byte_offsets(text)
        tokens = []
        for tid, (a, b), special, token in zip(enc.ids, enc.offsets, enc.special_tokens_mask, enc.tokens, strict=True):
            if special:
                tokens.append({"id": tid, "text": token, "special": True, "start": None, "stop": None})
            else:
                start, stop = (a, b) if where is None else (where[a], where[b])
                tokens.append({"id": tid, "text": text[a:b], "special": False, "start": start, "stop": stop})
        out.append(tokens)
    return out


# ------------------------------------------------------------------------------------------------- routes
def mount_tei(app: FastAPI, rt: Runtime) -> None:
    model, cfg = rt.model, rt.config

    @app.post("/embed", response_model=t.EmbedResponse, responses=TEI_ERRORS, tags=TAGS)
    async def embed(body: t.EmbedRequest) -> Response:
        """One vector per input (mean pooling). ``truncate`` not set: the server's --auto-truncate; false:
        422 for texts longer than the window. ``dimensions``: keep the first N (then normalize)."""
        check_prompt(option(body, "prompt_name"))
        normalize, dimensions = option(body, "normalize"), option(body, "dimensions")
        if dimensions is not None and not 0 < dimensions <= model.hidden_size:
            raise InputError(f"`dimensions` must be between 1 and {model.hidden_size}")
        direction = option(body, "truncation_direction").lower()
        mode = body.long_text or long_text(rt, option(body, "truncate"))
        options = EmbedOptions(normalize=normalize, long_text=mode, truncation_direction=direction)
        result, _ = await rt.run("embed", options, tei_texts(rt, body.inputs))
        vectors = result.vectors
        if dimensions is not None and dimensions < model.hidden_size:
            vectors = vectors[:, :dimensions]
            vectors = l2_normalize(vectors) if normalize else vectors
        return Response(await render(render_vectors, vectors.size, vectors), media_type=JSON)

    @app.post("/similarity", response_model=t.SimilarityResponse, responses=TEI_ERRORS, tags=TAGS)
    async def similarity(body: t.SimilarityRequest) -> Response:
        """Cosine similarity of ``source_sentence`` with each of ``sentences`` (one batch, as TEI)."""
        params = body.parameters or t.SimilarityParameters.model_validate({})
        check_prompt(params.prompt_name)
        if not body.inputs.sentences:
            raise EmptyInputError("`inputs.sentences` cannot be empty")
        texts = [body.inputs.source_sentence, *body.inputs.sentences]
        if len(texts) > cfg.max_inputs:
            raise TooManyInputsError(f"batch size {len(texts)} > maximum allowed batch size {cfg.max_inputs}")
        direction = params.truncation_direction.lower()
        options = EmbedOptions(long_text=long_text(rt, params.truncate), truncation_direction=direction)
        result, _ = await rt.run("embed", options, texts)
        scores = result.vectors[1:] @ result.vectors[0]
        return Response(json.dumps(scores.tolist()).encode(), media_type=JSON)

    async def root(body: t.EmbedRequest | t.SimilarityRequest) -> Response:
        return await (similarity(body) if isinstance(body, t.SimilarityRequest) else embed(body))

    # TEI's root route (where huggingface_hub posts) and its SageMaker route: embeddings, or similarity when
    # the body is a similarity request (TEI picks one with its TASK variable; the body shape says it here).
    app.post("/", include_in_schema=False)(root)
    app.post("/invocations", include_in_schema=False)(root)

    @app.post("/tokenize", response_model=t.TokenizeResponse, responses=TEI_ERRORS, tags=TAGS)
    async def tokenize(body: t.TokenizeRequest) -> list[list[dict[str, Any]]]:
        """Tokens with ids, text, special flag and UTF-8 byte offsets (``start``/``stop``, null for special
        tokens); ``add_special_tokens`` (true) adds [CLS]/[SEP]. No truncation."""
        check_prompt(body.prompt_name)
        texts = check_request_texts(body.inputs, cfg, "error")
        texts = [check_text(i, text) for i, text in enumerate(texts)]
        if sum(len(x) for x in texts) <= INLINE_TOKENIZE_CHARS:
            return simple_tokens(rt, texts, body.add_special_tokens)
        return await asyncio.to_thread(simple_tokens, rt, texts, body.add_special_tokens)

    @app.post("/decode", response_model=t.DecodeResponse, responses=TEI_ERRORS, tags=TAGS)
    async def decode(body: t.DecodeRequest) -> list[str]:
        """Token ids back to text (``skip_special_tokens``: true)."""
        ids: list[Any] = body.ids
        if not ids:
            raise EmptyInputError("`input_ids` cannot be empty")
        batch: list[list[int]] = [ids] if isinstance(ids[0], int) else ids
        if len(batch) > cfg.max_inputs:
            raise TooManyInputsError(f"batch size {len(batch)} > maximum allowed batch size {cfg.max_inputs}")
        vocab = model.tokenizer.get_vocab_size()
        for i, row in enumerate(batch):
            if not row:
                raise EmptyInputError.at(i, "has no token ids")
            if max(row) >= vocab:
                raise TokenizerError.at(i, f"has token ids outside the vocabulary (size {vocab})")
        return list(model.tokenizer.decode_batch(batch, skip_special_tokens=body.skip_special_tokens))

    for route in TASK_ROUTES.values():
        mount = MOUNTS.get(route.path)
        if mount is not None and route.applies(model):
            mount(app, rt, route)
        else:
            _not_applicable(app, route, model.bundle.task)


def _not_applicable(app: FastAPI, route: TaskRoute, task: str) -> None:
    """``route`` for a bundle that cannot serve it: the body is validated as TEI does, then 424 ``Backend``
    with TEI's message and the bundle's task."""

    async def handler(body: Any) -> Response:
        raise NotApplicableError(f"{route.not_applicable} (this is a {task} bundle)")

    handler.__annotations__ = {"body": route.request, "return": Response}
    handler.__name__ = route.path.strip("/")
    app.post(
        route.path,
        response_model=route.response,
        responses=TEI_ERRORS,
        tags=TAGS,
        summary=route.path,
        description=route.summary,
    )(handler)


def _embed_all(app: FastAPI, rt: Runtime, route: TaskRoute) -> None:
    @app.post(
        route.path,
        response_model=route.response,
        responses=TEI_ERRORS,
        tags=TAGS,
        description=route.summary,
    )
    async def embed_all(body: t.EmbedAllRequest) -> Response:
        check_prompt(body.prompt_name)
        direction = body.truncation_direction.lower()
        options = TokenOptions(long_text=long_text(rt, body.truncate), truncation_direction=direction)
        result, _ = await rt.run("token-embeddings", options, tei_texts(rt, body.inputs))
        floats = sum(v.size for v in result.vectors)
        return Response(await render(render_vectors, floats, result.vectors), media_type=JSON)


register_route("/embed_all", _embed_all)


# ------------------------------------------------------------------------------------------------- /info
def model_type(model: ClinicalBert) -> dict[str, Any]:
    """TEI's ``ModelType``: ``reranker`` for a one-logit cross-encoder (the bundles that serve ``/rerank``),
    ``classifier`` for the other classifier heads — text classification, and token classification, for which
    TEI has no model type of its own — each with the checkpoint's ``id2label``/``label2id``; ``embedding``
    (mean pooling) for a bundle without a head."""
    head = model.bundle.manifest.head
    if head is None:
        return {"embedding": {"pooling": "mean"}}
    labels = {
        "id2label": {str(i): label for i, label in enumerate(head.labels)},
        "label2id": {label: i for i, label in enumerate(head.labels)},
    }
    return {"reranker" if is_reranker(model) else "classifier": labels}


def tei_info(rt: Runtime) -> dict[str, Any]:
    """The fields of TEI's ``Info`` schema."""
    model, cfg = rt.model, rt.config
    precision = model.bundle.variants[model.variant].precision
    return {
        "model_id": model.bundle.model_id,
        "model_sha": model.bundle.manifest.source.revision,
        "model_dtype": DTYPES.get(precision, precision),
        "served_model_name": rt.name,
        "model_type": model_type(model),
        "max_concurrent_requests": cfg.max_concurrent_requests,
        "max_input_length": model.max_length,
        "max_batch_tokens": rt.max_batch_tokens,
        "max_batch_requests": None,
        "max_client_batch_size": cfg.max_inputs,
        "auto_truncate": cfg.auto_truncate,
        "tokenization_workers": 1,
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }
