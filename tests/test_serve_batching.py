"""The batcher and length grouping without HTTP: merging, splitting, error isolation, queue bound, shutdown."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from clinbert_onnx import ClinicalBert, InputError
from clinbert_onnx.serve.batcher import Batcher, EmbedTask, MaskTask
from clinbert_onnx.serve.errors import InferenceFailedError, QueueFullError, ShuttingDownError
from clinbert_onnx.serve.metrics import Metrics
from clinbert_onnx.serve.planning import length_groups, run_grouped, split


def _cost(groups: list[list[int]], lengths: list[int], overhead: int) -> int:
    return sum(overhead + len(g) * max(lengths[i] for i in g) for g in groups)


def _partitions(order: list[int], max_rows: int):
    """Every split of ``order`` into consecutive runs of at most ``max_rows``."""
    n = len(order)
    for cuts in itertools.product([False, True], repeat=n - 1):
        groups, current = [], [order[0]]
        for i, cut in enumerate(cuts, 1):
            if cut:
                groups.append(current)
                current = []
            current.append(order[i])
        groups.append(current)
        if all(len(g) <= max_rows for g in groups):
            yield groups


@pytest.mark.parametrize("seed", range(6))
def test_length_groups_is_optimal_and_complete(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(3, 120, size=9)]
    for overhead, max_rows in ((0, 9), (48, 9), (48, 3), (10_000, 9)):
        groups = length_groups(lengths, overhead, max_rows)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert all(len(g) <= max_rows for g in groups)
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = min(_cost(p, lengths, overhead) for p in _partitions(order, max_rows))
        assert _cost(groups, lengths, overhead) == best
    assert length_groups(lengths, 10**9, 64) == [sorted(range(9), key=lambda i: lengths[i])]  # one call
    assert length_groups([], 48, 64) == []


@pytest.fixture(scope="module")
def fp32(tiny_bundle: Path) -> ClinicalBert:
    return ClinicalBert.load(tiny_bundle, variant="fp32")


def test_grouped_results_equal_one_call(fp32: ClinicalBert) -> None:
    texts = ["short", " ".join(["long"] * 90), "a bit longer text here", " ".join(["chunked"] * 300), "mid " * 20]
    lengths = [min(n, fp32.max_length) for n in fp32.count_tokens(texts)]
    grouped = run_grouped(fp32.encode, texts, lengths, 0, 64)  # overhead 0: several groups
    assert len(length_groups(lengths, 0, 64)) > 1
    whole = fp32.encode(texts)
    np.testing.assert_allclose(grouped.vectors, whole.vectors, atol=1e-5)
    assert grouped.windows == whole.windows and grouped.tokens == whole.tokens
    masked = [t + " [MASK]." for t in texts]
    lengths = [min(n, fp32.max_length) for n in fp32.count_tokens(masked)]
    got = run_grouped(lambda g: fp32.predict_masks(g, top_k=2), masked, lengths, 0, 64)
    want = fp32.predict_masks(masked, top_k=2)
    assert [[p["token"] for p in preds] for preds in got.predictions] == [
        [p["token"] for p in preds] for preds in want.predictions
    ]
    parts = split(whole, [2, 0, 3])
    assert [len(p.tokens) for p in parts] == [2, 0, 3]
    np.testing.assert_array_equal(parts[2].vectors, whole.vectors[2:])


async def _with_batcher(model: ClinicalBert, body, **options):
    batcher = Batcher(model, Metrics(), **{"max_batch_tokens": 8192, "max_wait_ms": 50, "max_queue": 64, **options})
    await batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.stop(timeout=10)


def test_batcher_merges_and_splits(fp32: ClinicalBert) -> None:
    requests = [["alpha beta"], ["gamma", "delta epsilon zeta"], ["eta theta iota kappa"]]

    async def body(b: Batcher):
        jobs = [b.submit(EmbedTask(), r, fp32.count_tokens(r)) for r in requests]
        return await asyncio.gather(*jobs), b.metrics

    results, metrics = asyncio.run(_with_batcher(fp32, body))
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result.vectors, fp32.embed(request), atol=1e-5)
    assert metrics.sample("clinbert_batch_requests_count") == 1  # one inference call for all three
    assert metrics.sample("clinbert_batch_texts_sum") == 4


def test_batcher_token_budget_and_task_keys(fp32: ClinicalBert) -> None:
    async def body(b: Batcher):
        jobs = [b.submit(EmbedTask(), ["word " * 20], [22]) for _ in range(4)]  # 22 tokens each, budget 50
        jobs.append(b.submit(EmbedTask(normalize=False), ["other options"], [4]))
        jobs.append(b.submit(MaskTask(top_k=1), ["a [MASK] b"], [5]))
        results = await asyncio.gather(*jobs)
        return results, b.metrics

    results, metrics = asyncio.run(_with_batcher(fp32, body, max_batch_tokens=50))
    assert metrics.sample("clinbert_batch_requests_count") == 4  # 2 + 2 embeds, 1 unnormalised, 1 mask
    assert abs(float(np.linalg.norm(results[4].vectors[0])) - 1.0) > 1e-3
    assert results[5].predictions[0][0]["token_str"]


def test_batcher_isolates_a_bad_job(fp32: ClinicalBert) -> None:
    async def body(b: Batcher):
        good = b.submit(MaskTask(), ["the [MASK] is here"], [6])
        bad = b.submit(MaskTask(), ["fine [MASK]", "nothing"], [4, 3])
        return await asyncio.gather(good, bad, return_exceptions=True)

    good, bad = asyncio.run(_with_batcher(fp32, body))
    assert good.predictions[0][0]["token_str"]
    assert isinstance(bad, InputError) and "input 1" in str(bad)


def test_batcher_queue_bound_and_shutdown(fp32: ClinicalBert) -> None:
    async def body(b: Batcher):
        first = asyncio.ensure_future(b.submit(EmbedTask(), ["one", "two"], [3, 3]))
        await asyncio.sleep(0.01)  # queued, waiting up to 500 ms for company
        with pytest.raises(QueueFullError) as full:
            await b.submit(EmbedTask(), ["three"], [3])
        assert full.value.retry_after >= 1 and full.value.http_status == 429
        return await first

    result = asyncio.run(_with_batcher(fp32, body, max_queue=2, max_wait_ms=500))
    assert result.vectors.shape[0] == 2

    async def after_stop():
        b = Batcher(fp32, Metrics(), max_batch_tokens=100, max_wait_ms=1, max_queue=4)
        await b.start()
        await b.stop()
        with pytest.raises(ShuttingDownError):
            await b.submit(EmbedTask(), ["late"], [3])

    asyncio.run(after_stop())


def test_batcher_survives_its_own_bug(fp32: ClinicalBert) -> None:
    async def body(b: Batcher):
        real = b._record

        def broken(*args):
            raise RuntimeError("bug")

        b._record = broken
        with pytest.raises(InferenceFailedError):
            await b.submit(EmbedTask(), ["one"], [3])
        b._record = real
        return await b.submit(EmbedTask(), ["two"], [3])

    assert asyncio.run(_with_batcher(fp32, body)).vectors.shape[0] == 1
