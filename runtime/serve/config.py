"""``ServeConfig``: every knob of the HTTP server in one frozen, validated value."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeConfig:
    """Server settings. Limits protect the process; they are reported as HTTP errors, never silently applied.

    Attributes:
        host, port: where to listen. Loopback by default; anything else should come with ``api_key``.
        api_key: when set, every route except ``/health`` and ``/ready`` needs ``Authorization: Bearer <key>``.
        max_batch_tokens: tokens (incl. [CLS]/[SEP]) merged into one inference call; None = the model's
            own token budget (1024 on CPU, 65536 on CUDA).
        max_wait_ms: how long the first request of an idle batcher waits for company before running.
        max_queue: texts waiting for inference (all requests together); beyond it, 429 with Retry-After.
        max_inputs: texts per request (413 beyond); 2048 is OpenAI's own limit, so clients that send large
            lists (LangChain sends 1000 texts per request) work unchanged. TEI calls it max_client_batch_size.
        max_concurrent_requests: inference requests handled at once (queued or running, all routes together);
            beyond, 429 at once instead of a long wait (TEI's flag of the same name; default as TEI's).
        auto_truncate: TEI's ``--auto-truncate``: TEI-route requests that do not say ``truncate`` truncate
            over-long texts instead of answering 422.
        max_chars: characters per text (422 beyond, except with truncation, which cuts the text).
        max_body_bytes: request body size (413 beyond).
        max_top_k, max_targets: fill-mask bounds (422 beyond).
        cors_origins: origins allowed by CORS; empty = no CORS headers at all.
        served_model_name: the ``model`` reported in OpenAI responses; None = the bundle's model id.
        graceful_timeout: seconds in-flight requests get to finish after SIGTERM.
        warmup: run a few inferences before ``/ready`` turns 200.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = field(default=None, repr=False)
    max_batch_tokens: int | None = None
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    max_inputs: int = 2048
    max_concurrent_requests: int = 512
    auto_truncate: bool = False
    max_chars: int = 100_000
    max_body_bytes: int = 4 * 1024 * 1024
    max_top_k: int = 100
    max_targets: int = 100
    cors_origins: tuple[str, ...] = ()
    served_model_name: str | None = None
    graceful_timeout: float = 30.0
    log_level: str = "info"
    warmup: bool = True

    def __post_init__(self) -> None:
        positive = {
            "max_queue": self.max_queue,
            "max_inputs": self.max_inputs,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_chars": self.max_chars,
            "max_body_bytes": self.max_body_bytes,
            "max_top_k": self.max_top_k,
            "max_targets": self.max_targets,
        }
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"{name} must be at least 1; got {value}")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise InputError(f"max_batch_tokens must be at least 1; got {self.max_batch_tokens}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise InputError(f"max_wait_ms must be between 0 and 1000; got {self.max_wait_ms}")
        if self.max_queue < self.max_inputs:
            raise InputError(
                f"max_queue ({self.max_queue}) must be at least max_inputs ({self.max_inputs}): "
                "a full-size request must fit in an empty queue"
            )
        if not 0 < self.port < 65536:
            raise InputError(f"port must be between 1 and 65535; got {self.port}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise InputError("the API key must have at least 8 characters")
        if self.log_level not in LOG_LEVELS:
            raise InputError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {self.log_level!r}")
        if self.graceful_timeout < 0:
            raise InputError(f"graceful_timeout must be >= 0; got {self.graceful_timeout}")
        if "*" in self.cors_origins and self.api_key is None and self.host not in LOOPBACK_HOSTS:
            raise InputError("CORS origin '*' on a non-loopback host needs an API key")

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS
