"""Pure ASGI middleware: ``Guard`` (API key, body size, before the body is parsed) and ``Observe`` (access log,
metrics, and the last-resort 500 that never carries internals). Request bodies are never logged."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import GENERIC_500, ApiError, log_unexpected, render
from .metrics import Metrics, route_label

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("clinbert_onnx.serve.access")
#: Routes that answer without the API key (probes carry no data; /ping is TEI's SageMaker health route).
OPEN_PATHS = frozenset({"/health", "/ready", "/ping"})


async def send_error(send: Send, path: str, err: ApiError) -> None:
    """Answer ``err`` in the dialect of ``path`` (see ``errors.render``)."""
    status, body = render(path, err)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class Guard:
    """Checks the API key (constant-time) and buffers the body up to ``max_body_bytes`` (413 beyond)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.key_digest = _digest(api_key) if api_key else None
        self.max_body_bytes = max_body_bytes

    def authorized(self, scope: Scope) -> bool:
        if self.key_digest is None:
            return True
        header = _header(scope, b"authorization") or ""
        scheme, _, given = header.partition(" ")
        ok_scheme = scheme.lower() == "bearer"
        return hmac.compare_digest(_digest(given.strip()), self.key_digest) and ok_scheme

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in OPEN_PATHS and scope["method"] != "OPTIONS" and not self.authorized(scope):
            text = "missing or invalid API key (send 'Authorization: Bearer <key>')"
            await send_error(
                send, scope["path"], ApiError(401, "invalid_api_key", text, {"WWW-Authenticate": "Bearer"})
            )
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(scope, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        message = f"the request body exceeds {self.max_body_bytes} bytes"
        await send_error(send, scope["path"], ApiError(413, "body_too_large", message, {"Connection": "close"}))


class Observe:
    """Outermost layer: times every request, counts it by route and status, writes one access-log line
    (method, route, status, latency, sizes, client address), and turns any escaped exception into a generic
    500 without re-raising it (so no server logs its message)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = route_label(scope["path"])
        state = {"status": 0, "in": 0, "out": 0}

        async def counting_receive() -> Message:
            message = await receive()
            state["in"] += len(message.get("body", b""))
            return message

        async def watching_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, watching_send)
        except Exception as exc:
            log_unexpected(exc)
            if state["status"] == 0:
                await send_error(watching_send, scope["path"], ApiError(500, "internal_error", GENERIC_500))
            else:
                state["status"] = 500
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - start
            status = state["status"] or 499  # client went away before an answer
            self.metrics.observe_request(route, status, seconds)
            client = scope.get("client")
            access_log.info(
                "%s %s %d %.1fms in=%dB out=%dB client=%s",
                scope["method"],
                route,
                status,
                seconds * 1000,
                state["in"],
                state["out"],
                client[0] if client else "-",
            )
