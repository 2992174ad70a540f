"""The FastAPI application: routes, the one error mapping, lifespan (batcher + warm-up). Importing this
module needs the ``[serve]`` extra.

``create_app(model, config)`` builds an app around an already-loaded :class:`ClinicalBert`; the ``clinbert
serve`` command loads the bundle first, so a bad bundle fails before anything listens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .. import __version__
from ..errors import ClinBertError, InputError
from ..model import ClinicalBert
from ..tasks import TASKS, EmbedOptions, MaskOptions, check_top_k, supported
from . import derived
from . import schemas as s
from .config import ServeConfig
from .core import Runtime, option, render, render_openai
from .errors import TEI_PATHS, ApiError, from_clinbert, validation_message
from .errors import render as render_error
from .middleware import OPEN_PATHS, Guard, Observe
from .tei import mount_tei, tei_info

HTTP_CODES = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


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
        description="Bio_ClinicalBERT embeddings (OpenAI- and Text Embeddings Inference-compatible) and fill-mask, "
        'served with ONNX Runtime. Errors: TEI\'s routes answer TEI\'s {"error", "error_type"}; the others '
        '{"error": {"message", "type", "code"}}.',
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.runtime = rt
    json_type = "application/json"

    def error_response(path: str, err: ApiError) -> Response:
        """The one place errors become responses: in the dialect of the route (``errors.render``)."""
        status, body = render_error(path, err)
        return Response(body, status, headers=err.headers, media_type=json_type)

    @app.exception_handler(ClinBertError)
    async def _clinbert(request: Request, exc: ClinBertError) -> Response:
        return error_response(request.url.path, from_clinbert(exc))

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        return error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request.url.path, ApiError(422, "invalid_input", validation_message(list(exc.errors()))))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        path = request.url.path
        if exc.status_code == 400:  # FastAPI could not decode the body (e.g. not UTF-8): same as bad JSON
            return error_response(path, ApiError(422, "invalid_input", "the request body is not valid UTF-8 JSON"))
        code = HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(path, ApiError(exc.status_code, code, message, dict(exc.headers or {})))

    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": s.ErrorResponse, "description": text}
        for status, text in {
            413: "Body too large or too many inputs",
            422: "Invalid input (empty, not a string, too long...)",
            429: "Queue full; see Retry-After",
            503: "Shutting down",
        }.items()
    }

    @app.post("/v1/embeddings", response_model=s.EmbeddingsResponse, responses=errors, tags=["OpenAI"])
    async def embeddings(body: s.EmbeddingsRequest) -> Response:
        """OpenAI-compatible embeddings (mean pooling, L2-normalized). Long texts are chunked unless
        ``long_text`` says otherwise; ``usage.prompt_tokens`` counts [CLS]/[SEP] and tokens before truncation."""
        if body.dimensions is not None and body.dimensions != model.hidden_size:
            raise InputError(f"dimensions must be {model.hidden_size} for this model (or left out)")
        result, prepared = await rt.run("embed", EmbedOptions(long_text=body.long_text), body.input)
        floats = result.vectors.size
        prompt_tokens = sum(n + 2 for n in prepared.tokens)  # with [CLS]/[SEP], before truncation
        payload = await render(render_openai, floats, result.vectors, rt.name, prompt_tokens, body.encoding_format)
        return Response(payload, media_type=json_type)

    app.post("/embeddings", include_in_schema=False)(embeddings)  # TEI serves OpenAI's route here too

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

    # /token-classification (fine-tuned derivatives); /predict and /rerank are TEI task routes whose mounts
    # serve/derived.py registers with serve.tei (mount_tei answers TEI's 424 where they do not apply)
    derived.register(app, rt, errors)
    mount_tei(app, rt)

    @app.get("/health", response_model=s.Status, tags=["Operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers (``GET /ping`` too, TEI's SageMaker route)."""
        return {"status": "ok"}

    app.get("/ping", include_in_schema=False)(health)

    @app.get("/ready", response_model=s.Status, responses={503: {"model": s.ErrorResponse}}, tags=["Operations"])
    async def ready() -> Any:
        """Readiness: the model is loaded and warmed up (503 before that and while shutting down)."""
        if not rt.ready:
            err = ApiError(503, "not_ready", "the model is warming up or the server is stopping")
            return error_response("/ready", err)
        return {"status": "ready"}

    @app.get("/info", response_model=s.Info, tags=["Operations"])
    async def info() -> dict[str, Any]:
        """Model id, revision, variant, device, quality report, limits, the tasks this bundle serves, and every
        field of Text Embeddings Inference's ``Info``."""
        base = model.info()
        limits = {
            "max_inputs": cfg.max_inputs,
            "max_concurrent_requests": cfg.max_concurrent_requests,
            "max_chars": cfg.max_chars,
            "max_body_bytes": cfg.max_body_bytes,
            "max_queue": cfg.max_queue,
            "max_batch_tokens": rt.max_batch_tokens,
            "max_wait_ms": cfg.max_wait_ms,
            "max_top_k": cfg.max_top_k,
            "max_targets": cfg.max_targets,
        }
        tasks = [name for name in TASKS if supported(name, model)]
        return {**base, **tei_info(rt), "version": __version__, "limits": limits, "tasks": tasks}

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
            for path, operations in schema.get("paths", {}).items():
                body = "TeiError" if path in TEI_PATHS else "ErrorResponse"
                unauthorized = {
                    "description": "Missing or invalid API key",
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
                }
                for operation in operations.values():
                    if path in OPEN_PATHS:
                        operation["security"] = []
                    else:
                        operation.setdefault("responses", {}).setdefault("401", unauthorized)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
