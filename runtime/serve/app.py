"""The FastAPI application: routes, the one error mapping, lifespan (batcher + warm-up). Importing this
module needs the ``[serve]`` extra.

``create_app(model, config)`` builds an app around an already-loaded :class:`ClinicalBert`; the ``clinbert
serve`` command loads the bundle first, so a bad bundle fails before anything listens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .. import __version__
from ..errors import ClinBertError, InputError
from ..model import ClinicalBert
from ..tasks import EmbedOptions, EmbedResult, MaskOptions, Prepared, check_top_k
from . import derived
from . import schemas as s
from .batcher import Batcher
from .config import ServeConfig
from .errors import ApiError, QueueFullError, error_body, from_clinbert, validation_message
from .inputs import INLINE_TOKENIZE_CHARS, check_request_texts
from .metrics import Metrics
from .middleware import OPEN_PATHS, Guard, Observe

log = logging.getLogger("clinbert_onnx.serve")
#: Responses with more floats than this are serialized on a worker thread, row by row.
INLINE_FLOATS = 16384
HTTP_CODES = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class Runtime:
    """Per-app state: model, config, metrics, batcher, readiness."""

    def __init__(self, model: ClinicalBert, config: ServeConfig) -> None:
        self.model = model
        self.config = config
        self.metrics = Metrics()
        self.max_batch_tokens = config.max_batch_tokens or model.token_budget
        self.batcher = Batcher(
            model,
            self.metrics,
            max_batch_tokens=self.max_batch_tokens,
            max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue,
        )
        self.ready = False
        self.name = config.served_model_name or model.name

    async def run(self, task: str, options: Any, raw: str | list[str]) -> tuple[Any, Prepared]:
        """Check the request's limits, prepare it (off the event loop when large), queue its windows."""
        texts = check_request_texts(raw, self.config, options.long_text)
        if sum(len(t) for t in texts if isinstance(t, str)) <= INLINE_TOKENIZE_CHARS:
            prepared = self.model.prepare(texts, task, options)
        else:
            prepared = await asyncio.to_thread(self.model.prepare, texts, task, options)
        return await self.batcher.submit(prepared), prepared

    async def warm_up(self) -> None:
        """A few inferences through the real path (short and window-long texts) before /ready says yes."""
        try:
            if self.config.warmup:
                long = " ".join(["patient"] * (self.model.max_length - 8))
                for texts in (["patient stable"], [long, "patient stable"]):
                    await self.run("embed", EmbedOptions(long_text="truncate"), texts)
                if self.model.has_mlm_head:
                    mask = self.model.bundle.tokenizer.mask_token
                    await self.run(
                        "fill-mask", MaskOptions(top_k=1, long_text="truncate"), f"the patient has {mask} pain."
                    )
        except QueueFullError:
            pass  # traffic got there first: the model is evidently loaded and running
        except ClinBertError as exc:
            log.error("warm-up failed, staying not ready: %s", exc)
            return
        self.ready = True
        self.metrics.ready.set(1)
        log.info("model %s ready (%s, %s)", self.name, self.model.variant, self.model.device)


# ------------------------------------------------------------------------------------------------- rendering
def _rows(vectors: np.ndarray, encoding: str) -> list[str]:
    if encoding == "base64":
        return ['"' + base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") + '"' for v in vectors]
    return [json.dumps(v.tolist()) for v in vectors]


def render_openai(result: EmbedResult, name: str, prompt_tokens: int, encoding: str) -> bytes:
    items = [
        f'{{"object":"embedding","index":{i},"embedding":{row}}}'
        for i, row in enumerate(_rows(result.vectors, encoding))
    ]
    usage = f'{{"prompt_tokens":{prompt_tokens},"total_tokens":{prompt_tokens}}}'
    return f'{{"object":"list","data":[{",".join(items)}],"model":{json.dumps(name)},"usage":{usage}}}'.encode()


def render_tei(result: EmbedResult) -> bytes:
    return ("[" + ",".join(_rows(result.vectors, "float")) + "]").encode()


async def render(fn: Callable[..., bytes], floats: int, *args: Any) -> bytes:
    """Small bodies inline; large ones on a thread (row by row, so the event loop keeps getting the GIL)."""
    if floats <= INLINE_FLOATS:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def option(body: Any, name: str) -> Any:
    """A request option: the top-level field if the client set it, else ``parameters.<name>`` (the Hugging
    Face Inference API's place for it) if set there, else the field's default."""
    if name not in body.model_fields_set and body.parameters is not None:
        value = getattr(body.parameters, name)
        if value is not None:
            return value
    return getattr(body, name)


# ------------------------------------------------------------------------------------------------- app
def create_app(model: ClinicalBert, config: ServeConfig | None = None) -> FastAPI:
    cfg = config or ServeConfig()
    rt = Runtime(model, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.batcher.start()
        warm = asyncio.create_task(rt.warm_up(), name="clinbert-warmup")
        try:
            yield
        finally:
            rt.ready = False
            rt.metrics.ready.set(0)
            warm.cancel()
            await rt.batcher.stop(timeout=cfg.graceful_timeout)

    app = FastAPI(
        title="clinbert-onnx",
        version=__version__,
        description="Bio_ClinicalBERT embeddings (OpenAI- and TEI-compatible) and fill-mask, served with ONNX "
        'Runtime. Errors always have the shape {"error": {"message", "type", "code"}}.',
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.runtime = rt

    def error_response(err: ApiError) -> Response:
        return JSONResponse(error_body(err.status, err.code, err.message), err.status, headers=err.headers)

    @app.exception_handler(ClinBertError)
    async def _clinbert(request: Request, exc: ClinBertError) -> Response:
        return error_response(from_clinbert(exc))

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(ApiError(422, "invalid_input", validation_message(list(exc.errors()))))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8): same as bad JSON
            return error_response(ApiError(422, "invalid_input", "the request body is not valid UTF-8 JSON"))
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(ApiError(exc.status_code, code, message, dict(exc.headers or {})))

    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": s.ErrorResponse, "description": text}
        for status, text in {
            413: "Body too large or too many inputs",
            422: "Invalid input (empty, not a string, too long...)",
            429: "Queue full; see Retry-After",
            503: "Shutting down",
        }.items()
    }
    json_type = "application/json"

    @app.post("/v1/embeddings", response_model=s.EmbeddingsResponse, responses=errors, tags=["OpenAI"])
    async def embeddings(body: s.EmbeddingsRequest) -> Response:
        """OpenAI-compatible embeddings (mean pooling, L2-normalized). Long texts are chunked unless
        ``long_text`` says otherwise; ``usage.prompt_tokens`` counts [CLS]/[SEP] and tokens before truncation."""
        if body.dimensions is not None and body.dimensions != model.hidden_size:
            raise InputError(f"dimensions must be {model.hidden_size} for this model (or left out)")
        result, prepared = await rt.run("embed", EmbedOptions(long_text=body.long_text), body.input)
        floats = len(prepared.kept) * model.hidden_size
        prompt_tokens = sum(n + 2 for n in prepared.tokens)  # with [CLS]/[SEP], before truncation
        payload = await render(render_openai, floats, result, rt.name, prompt_tokens, body.encoding_format)
        return Response(payload, media_type=json_type)

    @app.post("/embed", response_model=list[list[float]], responses=errors, tags=["TEI"])
    async def embed(body: s.EmbedRequest) -> Response:
        """Text Embeddings Inference-compatible: one vector per input. ``truncate=false`` (default) answers
        422 text_too_long for texts longer than the window. ``POST /`` is the same (as in TEI)."""
        truncate = option(body, "truncate")
        long_text = body.long_text or ("truncate" if truncate else "error")
        options = EmbedOptions(normalize=option(body, "normalize"), long_text=long_text)
        result, prepared = await rt.run("embed", options, body.inputs)
        payload = await render(render_tei, len(prepared.kept) * model.hidden_size, result)
        return Response(payload, media_type=json_type)

    @app.post("/fill-mask", response_model=s.FillMaskResponse, responses=errors, tags=["Fill-mask"])
    async def fill_mask(body: s.FillMaskRequest) -> Response:
        """Predictions shaped like ``ClinicalBert.fill_mask`` (and transformers' pipeline): for a string, a list of
        {score, token, token_str, sequence} (a list per mask if several); for a list, one such result per text."""
        top_k = check_top_k(option(body, "top_k"), limit=cfg.max_top_k)
        targets = option(body, "targets")
        targets = [targets] if isinstance(targets, str) else targets
        if targets is not None and not 1 <= len(targets) <= cfg.max_targets:
            raise InputError(f"targets must list between 1 and {cfg.max_targets} words")
        if targets is not None and any(not t.strip() or len(t) > 100 for t in targets):
            raise InputError("each target must be a non-empty word of at most 100 characters")
        options = MaskOptions(top_k, tuple(targets) if targets is not None else None, body.long_text)
        result, _ = await rt.run("fill-mask", options, body.inputs)
        predictions = result.predictions[0] if isinstance(body.inputs, str) else result.predictions
        return Response(json.dumps(predictions, ensure_ascii=False).encode(), media_type=json_type)

    app.post("/", include_in_schema=False)(embed)  # TEI's root route, where huggingface_hub clients post
    derived.register(app, rt, errors)  # /predict, /rerank, /token-classification (fine-tuned derivatives)

    @app.get("/health", response_model=s.Status, tags=["Operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", response_model=s.Status, responses={503: {"model": s.ErrorResponse}}, tags=["Operations"])
    async def ready() -> Any:
        """Readiness: the model is loaded and warmed up (503 before that and while shutting down)."""
        if not rt.ready:
            return error_response(ApiError(503, "not_ready", "the model is warming up or the server is stopping"))
        return {"status": "ready"}

    @app.get("/info", response_model=s.Info, tags=["Operations"])
    async def info() -> dict[str, Any]:
        """Model id, revision, variant, device, quality report and limits."""
        base = model.info()
        limits = {
            "max_inputs": cfg.max_inputs,
            "max_chars": cfg.max_chars,
            "max_body_bytes": cfg.max_body_bytes,
            "max_queue": cfg.max_queue,
            "max_batch_tokens": rt.max_batch_tokens,
            "max_wait_ms": cfg.max_wait_ms,
            "max_top_k": cfg.max_top_k,
            "max_targets": cfg.max_targets,
        }
        return {
            **base,
            "served_model_name": rt.name,
            "version": __version__,
            "limits": limits,
            "max_input_length": model.max_length,
            "max_client_batch_size": cfg.max_inputs,
            "max_batch_tokens": rt.max_batch_tokens,
        }

    @app.get(
        "/metrics",
        response_class=Response,
        tags=["Operations"],
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        """Prometheus metrics."""
        body, content_type = rt.metrics.render()
        return Response(body, media_type=content_type)

    app.add_middleware(Guard, api_key=cfg.api_key, max_body_bytes=cfg.max_body_bytes)
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cfg.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Observe, metrics=rt.metrics)
    if cfg.api_key:
        _document_bearer(app)
    return app


def _document_bearer(app: FastAPI) -> None:
    """Declare the bearer key in the OpenAPI schema (the check itself is the Guard middleware)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            unauthorized = {
                "description": "Missing or invalid API key",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
            }
            for path, operations in schema.get("paths", {}).items():
                for operation in operations.values():
                    if path in OPEN_PATHS:
                        operation["security"] = []
                    else:
                        operation.setdefault("responses", {}).setdefault("401", unauthorized)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
