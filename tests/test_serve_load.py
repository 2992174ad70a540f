"""Bounded load test: 32 concurrent clients for 20 s against `clinbert serve` (a separate process).

Only 200 and 429 (with Retry-After) may come back, every 200 carries exactly its own texts' results, requests
really get merged, and /health keeps answering quickly throughout.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from clinbert_onnx import ClinicalBert  # noqa: E402
from serve_support import serve_process  # noqa: E402

CLIENTS = 32
SECONDS = 20.0
HEALTH_EVERY = 0.1
HEALTH_MAX_SECONDS = 2.0  # two shared cores, client and server on the same machine: generous, still bounded


def poll_health(url: str, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                response = client.get(f"{url}/health")
                if response.status_code != 200:
                    failures.append(f"status {response.status_code}")
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
            latencies.append(time.perf_counter() - start)
            stop.wait(HEALTH_EVERY)


async def client_loop(
    http: Any,
    rng: random.Random,
    deadline: float,
    texts: list[str],
    vectors: np.ndarray,
    masked: list[str],
    top: list[int],
    counts: dict[str, int],
    problems: list[str],
) -> None:
    while time.monotonic() < deadline:
        kind = rng.choice(("embed", "openai", "fill-mask"))
        picks = rng.sample(range(len(texts)), rng.randint(1, 4))
        if kind == "embed":
            response = await http.post("/embed", json={"inputs": [texts[i] for i in picks]})
        elif kind == "openai":
            response = await http.post(
                "/v1/embeddings", json={"input": [texts[i] for i in picks], "encoding_format": "float"}
            )
        else:
            response = await http.post("/fill-mask", json={"inputs": [masked[i] for i in picks], "top_k": 1})
        counts[str(response.status_code)] = counts.get(str(response.status_code), 0) + 1
        if response.status_code == 429:
            if "retry-after" not in response.headers:
                problems.append("429 without Retry-After")
            await asyncio.sleep(0.05 + rng.random() * 0.05)  # a load generator, not a polite client
            continue
        if response.status_code != 200:
            problems.append(f"{kind}: {response.status_code} {response.text[:200]}")
            continue
        body = response.json()
        if kind == "fill-mask":
            got = [preds[0]["token"] for preds in body]
            if got != [top[i] for i in picks]:
                problems.append("fill-mask result of another text")
            continue
        rows = body if kind == "embed" else [d["embedding"] for d in body["data"]]
        if not np.allclose(np.array(rows), vectors[picks], atol=1e-4):
            problems.append(f"{kind}: embeddings of another text")


async def drive(url: str, texts: list[str], vectors: np.ndarray, masked: list[str], top: list[int]) -> tuple:
    counts: dict[str, int] = {}
    problems: list[str] = []
    deadline = time.monotonic() + SECONDS
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        await asyncio.gather(
            *(
                client_loop(http, random.Random(seed), deadline, texts, vectors, masked, top, counts, problems)
                for seed in range(CLIENTS)
            )
        )
    return counts, problems


@pytest.mark.slow  # 20 s of load: in `make test-all` (CI's full suite), not in the default `make test`
def test_32_clients_for_20_seconds(tiny_bundle: Path, tmp_path: Path) -> None:
    reference = ClinicalBert.load(tiny_bundle, variant="fp32")
    texts = [
        f"Day {i}: {'stable ' * (i % 7 + 1)}vitals, furosemide {10 * i} mg, creatinine {i / 10:.1f}." for i in range(40)
    ]
    masked = [f"Day {i}: the patient has [MASK] pain, {'stable ' * (i % 5)}vitals." for i in range(40)]
    vectors = reference.embed(texts)
    top = [preds[0]["token"] for preds in reference.fill_mask(masked, top_k=1)]
    args = (
        "--variant",
        "fp32",
        "--max-queue",
        "12",
        "--max-inputs",
        "4",
        "--max-wait-ms",
        "5",
        "--log-level",
        "warning",
    )
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()
    with serve_process(tiny_bundle, *args) as (url, _proc):
        poller = threading.Thread(target=poll_health, args=(url, stop, latencies, failures), daemon=True)
        poller.start()
        try:
            counts, problems = asyncio.run(drive(url, texts, vectors, masked, top))
        finally:
            stop.set()
            poller.join(30)
        metrics = httpx.get(f"{url}/metrics").text
    print(f"\nstatuses {counts}; /health: {len(latencies)} probes, max {max(latencies) * 1000:.0f} ms")
    assert not problems, problems[:10]
    assert set(counts) <= {"200", "429"}, counts
    assert counts.get("200", 0) >= 200, counts
    assert not failures, failures[:10]
    assert len(latencies) >= SECONDS / (HEALTH_EVERY + HEALTH_MAX_SECONDS)
    assert max(latencies) < HEALTH_MAX_SECONDS, max(latencies)
    calls = _sample(metrics, "clinbert_batch_requests_count")
    merged = _sample(metrics, "clinbert_batch_requests_sum")
    assert merged > calls, (merged, calls)  # several requests per inference call on average


def _sample(metrics: str, name: str) -> float:
    line = next(x for x in metrics.splitlines() if x.startswith(name + " "))
    return float(line.split()[-1])
