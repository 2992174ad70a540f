"""The batcher without HTTP: merging prepared windows into one run, splitting, queue bound, shutdown."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from clinbert_onnx import ClinicalBert, InputError
from clinbert_onnx.serve.batcher import Batcher
from clinbert_onnx.serve.errors import InferenceFailedError, QueueFullError, ShuttingDownError
from clinbert_onnx.serve.metrics import Metrics
from clinbert_onnx.tasks import EmbedOptions, MaskOptions


@pytest.fixture(scope="module")
def fp32(tiny_bundle: Path) -> ClinicalBert:
    return ClinicalBert.load(tiny_bundle, variant="fp32")


async def _with_batcher(model: ClinicalBert, body, **options):
    batcher = Batcher(model, Metrics(), **{"max_batch_tokens": 8192, "max_wait_ms": 50, "max_queue": 64, **options})
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop(timeout=10)


def embed(model: ClinicalBert, texts: list[str], **options):
    return model.prepare(texts, "embed", EmbedOptions(**options))


def masks(model: ClinicalBert, texts: list[str], **options):
    return model.prepare(texts, "fill-mask", MaskOptions(**options))


def test_batcher_merges_windows_of_concurrent_requests_into_one_run(fp32: ClinicalBert, monkeypatch) -> None:
    requests = [["alpha beta"], ["gamma", "delta epsilon zeta"], ["eta theta iota kappa " * 40]]  # last: chunked
    windows = [len(embed(fp32, r).windows) for r in requests]
    assert windows[2] > 1
    runs: list[int] = []
    real = fp32.run

    def counting(windows):
        runs.append(len(windows))
        return real(windows)

    monkeypatch.setattr(fp32, "run", counting)

    async def body(b: Batcher):
        jobs = [b.submit(embed(fp32, r)) for r in requests]
        return await asyncio.gather(*jobs), b.metrics

    results, metrics = asyncio.run(_with_batcher(fp32, body))
    monkeypatch.undo()
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.vectors, fp32.embed(request), atol=1e-5)
    assert runs == [sum(windows)]  # one run over all windows of the three requests
    assert metrics.sample("clinbert_batch_requests_count") == 1
    assert metrics.sample("clinbert_batch_texts_sum") == 4


def test_batcher_token_budget_and_heads(fp32: ClinicalBert) -> None:
    size = embed(fp32, ["word " * 20]).window_tokens
    small = embed(fp32, ["other options"], normalize=False).window_tokens
    budget = 2 * size + small  # two of the long ones per run, and the small one fits with them

    async def body(b: Batcher):
        jobs = [b.submit(embed(fp32, ["word " * 20])) for _ in range(4)]
        jobs.append(b.submit(embed(fp32, ["other options"], normalize=False)))  # same head: may share a run
        jobs.append(b.submit(masks(fp32, ["a [MASK] b"], top_k=1)))  # another head: its own run
        results = await asyncio.gather(*jobs)
        return results, b.metrics

    results, metrics = asyncio.run(_with_batcher(fp32, body, max_batch_tokens=budget))
    # 2 + 2 embeds, the unnormalised one with the second pair (same head, fits the budget), 1 mask
    assert metrics.sample("clinbert_batch_requests_count") == 3
    assert abs(float(np.linalg.norm(results[4].vectors[0])) - 1.0) > 1e-3
    assert results[5].predictions[0][0]["token_str"]


def test_bad_items_fail_in_prepare_with_their_index(fp32: ClinicalBert) -> None:
    with pytest.raises(InputError) as bad:
        masks(fp32, ["fine [MASK]", "nothing"])
    assert bad.value.index == 1 and bad.value.reason == "has no [MASK] token" and "input 1" in str(bad.value)
    collected = fp32.prepare(["fine [MASK]", "nothing", "", "more [MASK]"], "fill-mask", on_error="collect")
    assert collected.kept == [0, 3] and [e.index for e in collected.errors] == [1, 2]


def test_batcher_queue_bound_and_shutdown(fp32: ClinicalBert) -> None:
    async def body(b: Batcher):
        first = asyncio.ensure_future(b.submit(embed(fp32, ["one", "two"])))
        while b.queued_texts < 2:  # queued, waiting up to 500 ms for company
            await asyncio.sleep(0)
        with pytest.raises(QueueFullError) as full:
            await b.submit(embed(fp32, ["three"]))
        assert full.value.retry_after >= 1 and full.value.http_status == 429
        return await first

    result = asyncio.run(_with_batcher(fp32, body, max_queue=2, max_wait_ms=500))
    assert result.vectors.shape[0] == 2

    async def after_stop():
        b = Batcher(fp32, Metrics(), max_batch_tokens=100, max_wait_ms=1, max_queue=4)
        await b.start()
        await b.stop()
        with pytest.raises(ShuttingDownError):
            await b.submit(embed(fp32, ["late"]))

    asyncio.run(after_stop())


def test_stop_does_not_block_the_event_loop(fp32: ClinicalBert, monkeypatch) -> None:
    """A batch still running when the graceful timeout ends: stop() waits for it off the event loop, so a
    timer on the loop still fires (before the fix, executor.shutdown(wait=True) froze the loop)."""
    started, release = threading.Event(), threading.Event()
    released_by_loop: list[bool] = []
    real = fp32.run

    def slow(windows):
        started.set()
        released_by_loop.append(release.wait(5))
        return real(windows)

    monkeypatch.setattr(fp32, "run", slow)

    async def body():
        b = Batcher(fp32, Metrics(), max_batch_tokens=100, max_wait_ms=0, max_queue=4)
        await b.start()
        job = asyncio.ensure_future(b.submit(embed(fp32, ["one"])))
        await asyncio.to_thread(started.wait, 5)
        asyncio.get_running_loop().call_later(0.05, release.set)
        await b.stop(timeout=0.01)
        with pytest.raises(ShuttingDownError):
            await job

    asyncio.run(body())
    assert released_by_loop == [True]


def test_batcher_survives_its_own_bug(fp32: ClinicalBert) -> None:
    async def body(b: Batcher):
        real = b._record

        def broken(*args):
            raise RuntimeError("bug")

        b._record = broken
        with pytest.raises(InferenceFailedError):
            await b.submit(embed(fp32, ["one"]))
        b._record = real
        return await b.submit(embed(fp32, ["two"]))

    assert asyncio.run(_with_batcher(fp32, body)).vectors.shape[0] == 1
