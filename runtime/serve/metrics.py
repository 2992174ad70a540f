"""Prometheus metrics on a per-app registry (several apps can live in one process, e.g. in tests)."""

from __future__ import annotations

from typing import Any

from .errors import TEI_PATHS

#: Routes reported by name; anything else is counted as "other" so scanners cannot inflate label cardinality.
ROUTES = TEI_PATHS | {
    "/v1/embeddings",
    "/embeddings",
    "/fill-mask",
    "/token-classification",
    "/health",
    "/ping",
    "/ready",
    "/info",
    "/metrics",
    "/openapi.json",
    "/docs",
}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


class Metrics:
    """The server's metrics. ``render()`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "clinbert_http_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "clinbert_http_request_duration_seconds",
            "Time from request start to response end",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("clinbert_http_requests_in_flight", "HTTP requests being handled", registry=r)
        self.queue_texts = Gauge("clinbert_queue_texts", "Texts waiting for inference", registry=r)
        self.queue_requests = Gauge("clinbert_queue_requests", "Requests waiting for inference", registry=r)
        self.queue_wait = Histogram(
            "clinbert_queue_wait_seconds",
            "Time a request waited before its batch ran",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_texts = Histogram(
            "clinbert_batch_texts", "Texts per inference call", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "clinbert_batch_requests", "Requests merged into one inference call", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "clinbert_batch_tokens", "Tokens per inference call", buckets=TOKEN_BUCKETS, registry=r
        )
        self.inference = Histogram(
            "clinbert_inference_duration_seconds",
            "Time of one inference call",
            ["task"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "clinbert_tokens_processed",
            "Tokens processed (incl. [CLS]/[SEP], before truncation)",
            ["task"],
            registry=r,
        )
        self.texts = Counter("clinbert_texts_processed", "Texts processed", ["task"], registry=r)
        self.ready = Gauge("clinbert_ready", "1 once the model is loaded and warmed up", registry=r)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def sample(self, name: str, labels: dict[str, str] | None = None) -> Any:
        """One sample's value (for tests and the benchmark)."""
        return self.registry.get_sample_value(name, labels or {})
