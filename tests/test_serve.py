"""`clinbert serve`: a real uvicorn on 127.0.0.1, driven by the openai client, TEI-shaped requests and raw HTTP."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import logging
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from clinbert_onnx import ClinicalBert  # noqa: E402
from clinbert_onnx.serve import ServeConfig, create_app  # noqa: E402
from clinbert_onnx.tasks import EmbedOptions  # noqa: E402
from serve_support import MARKER, running, serve_process, wait_for  # noqa: E402

TEXTS = ["Patient denies chest pain.", "History of type 2 diabetes, on metformin.", "Afebrile overnight."]
LIMITS = ServeConfig(max_inputs=8, max_queue=64, max_chars=2000, max_body_bytes=64 * 1024)
KEY = "s3cret-key-for-tests"


@pytest.fixture(scope="module")
def tiny(tiny_bundle: Path) -> ClinicalBert:
    return ClinicalBert.load(tiny_bundle)


@pytest.fixture(scope="module")
def url(tiny: ClinicalBert) -> Iterator[str]:
    with running(create_app(tiny, LIMITS)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str):
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
    assert body["error"]["code"] == code, body
    assert MARKER not in response.text and "Zebulon" not in response.text
    return body["error"]


def assert_tei_error(response, status: int, error_type: str) -> str:
    """Text Embeddings Inference's error shape, on its routes: {"error": message, "error_type": type}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type, body
    assert MARKER not in response.text and "Zebulon" not in response.text
    return body["error"]


# ------------------------------------------------------------------------------------------------- probes, info
def test_health_ready_info(client, tiny: ClinicalBert) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    info = client.get("/info").json()
    expected = tiny.info()
    for key in ("model_id", "revision", "variant", "device", "hidden_size", "max_length", "fill_mask", "quality"):
        assert info[key] == expected[key], key
    assert info["served_model_name"] == "tiny" and info["limits"]["max_inputs"] == 8
    assert info["max_input_length"] == tiny.max_length  # TEI's /info field
    schema = client.get("/openapi.json").json()
    assert {"/v1/embeddings", "/embed", "/fill-mask", "/health", "/ready", "/info", "/metrics"} <= set(schema["paths"])


def test_ready_is_503_until_warm(tiny: ClinicalBert) -> None:
    app = create_app(tiny, ServeConfig())
    with running(app) as base:  # once warm-up is over...
        app.state.runtime.ready = False  # ...pretend it is not (as before it ends, or while stopping)
        assert_error(httpx.get(f"{base}/ready"), 503, "not_ready")
        assert httpx.get(f"{base}/health").status_code == 200


# ------------------------------------------------------------------------------------------------- OpenAI
def test_openai_client_base64_default(url: str, tiny: ClinicalBert) -> None:
    from openai import OpenAI

    oa = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    response = oa.embeddings.create(model="clinbert", input=TEXTS)  # the SDK asks for base64 and decodes it
    assert [d.index for d in response.data] == [0, 1, 2]
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, tiny.embed(TEXTS), atol=1e-5)
    assert response.model == "tiny"
    assert response.usage.prompt_tokens == sum(tiny.count_tokens(TEXTS)) == response.usage.total_tokens


def test_openai_client_float_single_string(url: str, tiny: ClinicalBert) -> None:
    from openai import OpenAI

    oa = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    response = oa.embeddings.create(model="x", input=TEXTS[0], encoding_format="float")
    assert len(response.data) == 1
    np.testing.assert_allclose(response.data[0].embedding, tiny.embed(TEXTS[0])[0], atol=1e-5)


def test_openai_raw_shapes(client, tiny: ClinicalBert) -> None:
    body = client.post("/v1/embeddings", json={"input": TEXTS[:2], "encoding_format": "base64"}).json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    vec = np.frombuffer(base64.b64decode(body["data"][1]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, tiny.embed(TEXTS[:2])[1], atol=1e-5)
    ok = client.post("/v1/embeddings", json={"input": "x", "dimensions": tiny.hidden_size, "user": "u", "extra": 1})
    assert ok.status_code == 200
    assert_error(client.post("/v1/embeddings", json={"input": "x", "dimensions": 3}), 422, "invalid_input")
    tokens = assert_error(client.post("/v1/embeddings", json={"input": [[1, 2, 3]]}), 422, "invalid_input")
    assert "token arrays are not supported" in tokens["message"]
    assert_error(client.post("/v1/embeddings", json={"input": "x", "encoding_format": "int8"}), 422, "invalid_input")


def test_openai_long_text_modes(client, tiny: ClinicalBert) -> None:
    long = " ".join(["fever"] * 300)  # > 128 tokens, < max_chars
    chunked = client.post("/v1/embeddings", json={"input": long, "encoding_format": "float"})  # default: chunk
    np.testing.assert_allclose(chunked.json()["data"][0]["embedding"], tiny.embed(long)[0], atol=1e-5)
    err = assert_error(client.post("/v1/embeddings", json={"input": long, "long_text": "error"}), 422, "text_too_long")
    assert "input 0" in err["message"]
    cut = client.post("/v1/embeddings", json={"input": long, "long_text": "truncate", "encoding_format": "float"})
    np.testing.assert_allclose(cut.json()["data"][0]["embedding"], tiny.embed(long, long_text="truncate")[0], atol=1e-5)


# ------------------------------------------------------------------------------------------------- TEI
def test_tei_embed(client, tiny: ClinicalBert) -> None:
    got = client.post("/embed", json={"inputs": TEXTS}).json()
    np.testing.assert_allclose(np.array(got), tiny.embed(TEXTS), atol=1e-5)
    single = client.post("/embed", json={"inputs": TEXTS[0]}).json()
    assert len(single) == 1 and len(single[0]) == tiny.hidden_size
    raw = np.array(client.post("/embed", json={"inputs": TEXTS, "normalize": False}).json())
    np.testing.assert_allclose(raw, tiny.embed(TEXTS, normalize=False), rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_tei_truncate_semantics(client, tiny: ClinicalBert) -> None:
    long = " ".join(["pain"] * 300)
    assert_tei_error(client.post("/embed", json={"inputs": [TEXTS[0], long]}), 422, "Validation")
    cut = client.post("/embed", json={"inputs": long, "truncate": True}).json()
    np.testing.assert_allclose(cut[0], tiny.embed(long, long_text="truncate")[0], atol=1e-5)
    chunk = client.post("/embed", json={"inputs": long, "long_text": "chunk"}).json()
    np.testing.assert_allclose(chunk[0], tiny.embed(long)[0], atol=1e-5)
    right = client.post("/embed", json={"inputs": "x", "truncation_direction": "Right"})
    assert right.status_code == 200
    for left in ("Left", "left"):  # TEI accepts both spellings; left truncation keeps the end of the text
        cut = client.post("/embed", json={"inputs": long + " end", "truncate": True, "truncation_direction": left})
        want = tiny.process(long + " end", "embed", EmbedOptions(long_text="truncate", truncation_direction="left"))
        np.testing.assert_allclose(cut.json()[0], want.vectors[0], atol=1e-5)
        assert not np.allclose(cut.json()[0], tiny.embed(long + " end", long_text="truncate")[0], atol=1e-3)
    body = {"inputs": "x", "truncation_direction": "middle"}
    assert_tei_error(client.post("/embed", json=body), 422, "Validation")
    assert_tei_error(client.post("/embed", json={"inputs": "x", "prompt_name": "query"}), 422, "Validation")


def test_huggingface_hub_inference_client(url: str, tiny: ClinicalBert, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's InferenceClient (as LangChain's HuggingFaceEndpointEmbeddings uses it) posts to the
    base URL with options under "parameters"."""
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # only loopback is reached: the model is a URL
    hub.utils.reset_sessions()  # a session cached by an earlier test carries the offline adapter
    vec = hub.InferenceClient(model=url).feature_extraction(TEXTS[0])
    np.testing.assert_allclose(vec[0], tiny.embed(TEXTS[0])[0], atol=1e-5)
    raw = hub.InferenceClient(model=f"{url}/embed").feature_extraction(TEXTS[0], normalize=False)
    np.testing.assert_allclose(raw[0], tiny.embed(TEXTS[0], normalize=False)[0], rtol=1e-4, atol=1e-5)
    preds = hub.InferenceClient(model=f"{url}/fill-mask").fill_mask("The patient has [MASK] pain.", top_k=2)
    assert [p.token for p in preds] == [p["token"] for p in tiny.fill_mask("The patient has [MASK] pain.", top_k=2)]
    monkeypatch.undo()
    hub.utils.reset_sessions()


def test_top_level_options_win_over_parameters(client, tiny: ClinicalBert) -> None:
    body = {"inputs": TEXTS[0], "normalize": True, "parameters": {"normalize": False}}
    np.testing.assert_allclose(client.post("/embed", json=body).json()[0], tiny.embed(TEXTS[0])[0], atol=1e-5)
    body = {"inputs": "a [MASK] b", "parameters": {"top_k": 3}}
    assert len(client.post("/fill-mask", json=body).json()) == 3
    assert len(client.post("/fill-mask", json={**body, "top_k": 1}).json()) == 1
    body = {"inputs": "x", "parameters": {"truncation_direction": "middle"}}
    assert_tei_error(client.post("/embed", json=body), 422, "Validation")


# ------------------------------------------------------------------------------------------------- fill-mask
def test_fill_mask_shapes(client, tiny: ClinicalBert) -> None:
    one = "The patient has [MASK] pain."
    two = "The [MASK] has [MASK] pain."
    got = client.post("/fill-mask", json={"inputs": one, "top_k": 3}).json()
    want = tiny.fill_mask(one, top_k=3)
    assert [p["token"] for p in got] == [p["token"] for p in want]
    assert got[0]["sequence"] == want[0]["sequence"] and abs(got[0]["score"] - want[0]["score"]) < 1e-5
    multi = client.post("/fill-mask", json={"inputs": two, "top_k": 2}).json()
    assert len(multi) == 2 and all(len(row) == 2 for row in multi)
    both = client.post("/fill-mask", json={"inputs": [one, two], "top_k": 2}).json()
    assert len(both) == 2 and isinstance(both[0][0], dict) and isinstance(both[1][0], list)
    targeted = client.post("/fill-mask", json={"inputs": one, "targets": ["chest", "patient"]}).json()
    assert {p["token_str"] for p in targeted} == {"chest", "patient"}


def test_fill_mask_errors(client) -> None:
    assert_error(client.post("/fill-mask", json={"inputs": f"{MARKER} no mask"}), 422, "invalid_input")
    assert_error(client.post("/fill-mask", json={"inputs": "a [MASK]", "top_k": 0}), 422, "invalid_input")
    assert_error(client.post("/fill-mask", json={"inputs": "a [MASK]", "top_k": 101}), 422, "invalid_input")
    assert_error(client.post("/fill-mask", json={"inputs": "a [MASK]", "targets": []}), 422, "invalid_input")
    assert_error(client.post("/fill-mask", json={"inputs": "a [MASK]", "targets": [" "]}), 422, "invalid_input")


def test_fill_mask_on_embeddings_only_bundle(minilm_bundle: Path) -> None:
    with running(create_app(ClinicalBert.load(minilm_bundle), ServeConfig())) as base:
        assert_error(httpx.post(f"{base}/fill-mask", json={"inputs": "a [MASK]"}), 422, "no_mlm_head")
        assert httpx.post(f"{base}/embed", json={"inputs": "chest pain"}).status_code == 200


# ------------------------------------------------------------------------------------------------- limits
def test_limits_and_error_shape(client) -> None:
    too_big = {"inputs": ["x" * 1000] * 70}  # > 64 KiB
    assert_tei_error(client.post("/embed", json=too_big), 413, "Validation")
    assert_error(client.post("/v1/embeddings", json={"input": too_big["inputs"]}), 413, "body_too_large")

    def chunked():  # no Content-Length: the limit is enforced while streaming
        yield b'{"inputs": ["'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"]}'

    assert_tei_error(
        client.post("/embed", content=chunked(), headers={"content-type": "application/json"}), 413, "Validation"
    )
    assert_tei_error(client.post("/embed", json={"inputs": ["a"] * 9}), 413, "Validation")
    assert_error(client.post("/v1/embeddings", json={"input": ["a"] * 9}), 413, "too_many_inputs")
    err = assert_tei_error(client.post("/embed", json={"inputs": [MARKER + "x" * 2001]}), 422, "Validation")
    assert "2000" in err
    assert_error(client.post("/v1/embeddings", json={"input": [MARKER + "x" * 2001]}), 422, "input_too_long")
    cut = client.post("/embed", json={"inputs": ["fever " * 400], "truncate": True})  # 2400 chars, cut to 2000
    assert cut.status_code == 200
    assert_tei_error(client.post("/embed", json={"inputs": ["ok", ""]}), 400, "Empty")
    assert_tei_error(client.post("/embed", json={"inputs": ["  \n"]}), 400, "Empty")
    assert_tei_error(client.post("/embed", json={"inputs": []}), 400, "Empty")
    assert_error(client.post("/v1/embeddings", json={"input": ["ok", ""]}), 422, "empty_input")
    assert_tei_error(client.post("/embed", json={"inputs": [MARKER, 5]}), 422, "Validation")
    assert_tei_error(client.post("/embed", json={"inputs": None}), 422, "Validation")
    assert_tei_error(client.post("/embed", json={}), 422, "Validation")
    assert_tei_error(client.post("/embed", json=[MARKER]), 422, "Validation")
    assert_tei_error(client.post("/embed", content=b'{"inputs": "\\ud800"}'), 422, "Validation")  # lone surrogate
    assert_tei_error(client.post("/embed", content=MARKER.encode() + b"{"), 422, "Validation")
    assert_error(client.post("/v1/embeddings", content=MARKER.encode() + b"{"), 422, "invalid_input")
    assert_error(client.post("/v1/embeddings", json={"input": 3}), 422, "invalid_input")
    assert_error(client.get("/no-such-route"), 404, "not_found")
    assert_tei_error(client.get("/embed"), 405, "Validation")
    assert_error(client.get("/v1/embeddings"), 405, "method_not_allowed")


def test_queue_full_is_429_with_retry_after(tiny: ClinicalBert) -> None:
    # max_queue=1: a request idles in the queue for up to 1.5 s waiting for company; a second one does not fit
    config = ServeConfig(max_inputs=1, max_queue=1, max_wait_ms=1000, warmup=False)
    app = create_app(tiny, config)
    with running(app) as base, cf.ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, f"{base}/embed", json={"inputs": "one"}, timeout=30)
        wait_for(lambda: app.state.runtime.metrics.sample("clinbert_queue_texts") == 1)  # queued, not yet run
        second = httpx.post(f"{base}/embed", json={"inputs": "two"}, timeout=30)
        assert_tei_error(second, 429, "Overloaded")
        assert int(second.headers["retry-after"]) >= 1
        assert first.result().status_code == 200


def test_unexpected_error_is_generic_500_and_logged_without_text(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = ClinicalBert.load(tiny_bundle)

    def broken(windows):
        raise RuntimeError(f"boom while reading {MARKER}")

    model.run = broken
    with caplog.at_level(logging.INFO), running(create_app(model, ServeConfig(warmup=False))) as base:
        response = httpx.post(f"{base}/embed", json={"inputs": MARKER})
    err = assert_tei_error(response, 424, "Backend")  # TEI's answer when inference fails
    assert "boom" not in err and "Traceback" not in response.text
    assert MARKER not in caplog.text and "boom" not in caplog.text
    assert "RuntimeError" in caplog.text


def test_access_log_has_route_status_sizes_not_body(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="clinbert_onnx.serve.access"):
        httpx.post(f"{url}/embed", json={"inputs": MARKER})
        httpx.post(f"{url}/embed", json={"inputs": ""})
        httpx.get(f"{url}/{MARKER.replace(' ', '-')}")
        deadline = time.monotonic() + 5  # the line is written after the response has gone out
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records if r.name == "clinbert_onnx.serve.access"]
            if any(line.startswith("GET other 404 ") for line in lines):
                break
            time.sleep(0.02)
    assert any(line.startswith("POST /embed 200 ") and "in=" in line and "out=" in line for line in lines)
    assert any(line.startswith("POST /embed 400 ") for line in lines)  # TEI: an empty input is 400 Empty
    assert any(line.startswith("GET other 404 ") for line in lines)
    assert "Zebulon" not in caplog.text


# ------------------------------------------------------------------------------------------------- security
def test_api_key(tiny: ClinicalBert) -> None:
    from openai import AuthenticationError, OpenAI

    with running(create_app(tiny, ServeConfig(api_key=KEY))) as base:
        assert httpx.get(f"{base}/health").status_code == 200  # probes stay open
        assert httpx.get(f"{base}/ready").status_code == 200
        missing = httpx.post(f"{base}/embed", json={"inputs": "x"})
        assert_tei_error(missing, 401, "Validation")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": f"Bearer {KEY}x"}
        assert_tei_error(httpx.post(f"{base}/embed", json={"inputs": "x"}, headers=wrong), 401, "Validation")
        assert_error(httpx.post(f"{base}/v1/embeddings", json={"input": "x"}, headers=wrong), 401, "invalid_api_key")
        assert_error(httpx.get(f"{base}/info", headers={"Authorization": KEY}), 401, "invalid_api_key")
        assert_error(httpx.get(f"{base}/metrics"), 401, "invalid_api_key")
        good = {"Authorization": f"Bearer {KEY}"}
        assert httpx.post(f"{base}/embed", json={"inputs": "x"}, headers=good).status_code == 200
        assert httpx.get(f"{base}/openapi.json", headers=good).json()["security"] == [{"bearer": []}]
        assert len(OpenAI(base_url=f"{base}/v1", api_key=KEY).embeddings.create(model="m", input="x").data) == 1
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{base}/v1", api_key="nope", max_retries=0).embeddings.create(model="m", input="x")


def test_cors_off_by_default_and_configurable(url: str, tiny: ClinicalBert) -> None:
    origin = {"Origin": "https://ehr.example.org"}
    assert "access-control-allow-origin" not in httpx.post(f"{url}/embed", json={"inputs": "x"}, headers=origin).headers
    config = ServeConfig(cors_origins=("https://ehr.example.org",), api_key=KEY)
    with running(create_app(tiny, config)) as base:
        pre = httpx.options(
            f"{base}/embed",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://ehr.example.org"
        denied = httpx.post(f"{base}/embed", json={"inputs": "x"}, headers=origin)
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == origin["Origin"]
        other = httpx.options(
            f"{base}/embed", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_config_validation() -> None:
    from clinbert_onnx.errors import InputError

    with pytest.raises(InputError, match="max_queue"):
        ServeConfig(max_inputs=10, max_queue=5)
    with pytest.raises(InputError, match="API key"):
        ServeConfig(api_key="short")
    assert "s3cret" not in repr(ServeConfig(api_key=KEY))
    assert ServeConfig().host == "127.0.0.1" and ServeConfig().cors_origins == ()


# ------------------------------------------------------------------------------------------------- batching
def test_concurrent_requests_are_merged_and_get_their_own_results(tiny_bundle: Path) -> None:
    model = ClinicalBert.load(tiny_bundle, variant="fp32")  # fp32: results do not depend on batch company
    texts = [f"Day {i}: {' '.join(['stable'] * (i % 5 + 1))} vitals, {i} mg furosemide." for i in range(12)]
    want = model.embed(texts)
    app = create_app(model, ServeConfig(max_wait_ms=300, warmup=False))
    with running(app) as base, cf.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(httpx.post, f"{base}/embed", json={"inputs": t}, timeout=30) for t in texts]
        got = [np.array(f.result().json()[0]) for f in futures]
        metrics = app.state.runtime.metrics
    for i in range(len(texts)):
        np.testing.assert_allclose(got[i], want[i], atol=1e-5)
    calls = metrics.sample("clinbert_batch_requests_count")
    merged = metrics.sample("clinbert_batch_requests_sum")
    assert merged == len(texts) and calls < len(texts), (calls, merged)  # fewer inference calls than requests


def test_one_bad_request_does_not_fail_its_batch(tiny: ClinicalBert) -> None:
    texts = ["The [MASK] is stable.", "no mask here", "Chest [MASK] resolved."]
    with running(create_app(tiny, ServeConfig(max_wait_ms=300, warmup=False))) as base, cf.ThreadPoolExecutor(3) as p:
        futures = [p.submit(httpx.post, f"{base}/fill-mask", json={"inputs": t}, timeout=30) for t in texts]
        statuses = [f.result().status_code for f in futures]
        results = [f.result().json() for f in futures]
    assert statuses == [200, 422, 200]
    assert results[0][0]["token"] == tiny.fill_mask(texts[0])[0]["token"]
    assert results[2][0]["token"] == tiny.fill_mask(texts[2])[0]["token"]
    assert "input 0 has no [MASK]" in results[1]["error"]["message"]  # its own index, not the merged one


def test_error_index_is_within_the_request(client) -> None:
    texts = ["The [MASK] is stable and the patient was discharged home today.", "no mask", "A [MASK]."]
    err = assert_error(client.post("/fill-mask", json={"inputs": texts}), 422, "invalid_input")
    assert "input 1 has no [MASK]" in err["message"]


def test_metrics(client) -> None:
    client.post("/embed", json={"inputs": TEXTS})
    text = client.get("/metrics").text
    for needle in (
        'clinbert_http_requests_total{route="/embed",status="200"}',
        "clinbert_http_request_duration_seconds_bucket",
        "clinbert_batch_texts_bucket",
        "clinbert_batch_tokens_bucket",
        "clinbert_queue_texts",
        'clinbert_tokens_processed_total{task="embed"}',
        "clinbert_ready 1.0",
    ):
        assert needle in text, needle


# ------------------------------------------------------------------------------------------------- CLI, process
def test_cli_options_and_defaults() -> None:
    from clinbert_onnx.cli import build_parser

    args = build_parser().parse_args(["serve", "b"])
    assert (args.host, args.port, args.api_key, args.cors_origins) == ("127.0.0.1", 8080, None, [])
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for option in (
        "--max-batch-tokens",
        "--max-client-batch-size",
        "--max-concurrent-requests",
        "--auto-truncate",
        "--max-wait-ms",
        "--max-queue",
        "--max-inputs",
        "--max-chars",
        "--max-body-bytes",
        "--cors-origin",
        "--api-key",
        "--no-verify",
        "--log-level",
        "--variant",
    ):
        assert option in help_text


def test_cli_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from clinbert_onnx.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert main(["serve", "nowhere"]) == 7
    assert "clinbert-onnx[serve]" in capsys.readouterr().err


def test_cli_bad_limits_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from clinbert_onnx.cli import main

    assert main(["serve", "nowhere", "--max-inputs", "10", "--max-queue", "5"]) == 2
    assert "max_queue" in capsys.readouterr().err


def test_sigterm_finishes_in_flight_requests_and_exits_0(minilm_bundle: Path, tmp_path: Path) -> None:
    note = (Path(__file__).parent / "data" / "long_note.txt").read_text(encoding="utf-8")[:6000]
    log = tmp_path / "server.log"
    body = {"inputs": [note] * 2, "long_text": "chunk"}  # ~0.6 s of work each on two cores
    with (
        serve_process(minilm_bundle, "--log-level", "info", env={"CLINBERT_API_KEY": KEY}, log=log) as (base, proc),
        cf.ThreadPoolExecutor(3) as pool,
    ):
        headers = {"Authorization": f"Bearer {KEY}"}
        futures = [pool.submit(httpx.post, f"{base}/embed", json=body, headers=headers, timeout=120) for _ in range(3)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until all three are queued or running
            m = httpx.get(f"{base}/metrics", headers=headers).text
            line = next(x for x in m.splitlines() if x.startswith("clinbert_http_requests_in_flight"))
            if float(line.split()[-1]) >= 4:  # the three, plus this /metrics request
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
        assert proc.wait(120) == 0
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all(len(r.json()) == 2 for r in responses)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)
    text = log.read_text()
    assert "POST /embed 200" in text and note[:40] not in text


def test_cli_refuses_bad_bundle(tmp_path: Path) -> None:
    from serve_support import clinbert_command

    done = subprocess.run([*clinbert_command(), "serve", str(tmp_path / "missing")], capture_output=True, timeout=120)
    assert done.returncode == 3 and b"Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------------- the core's stages
def test_one_request_tokenizes_each_text_once(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ClinicalBert.load(tiny_bundle)
    seen: list[str] = []
    real = model.tokenize

    def counting(batch):
        seen.extend(batch)
        return real(batch)

    monkeypatch.setattr(model, "tokenize", counting)
    texts = [*TEXTS, " ".join(["fever"] * 300)]  # the last one chunked into several windows
    with running(create_app(model, ServeConfig(warmup=False))) as base:
        response = httpx.post(f"{base}/v1/embeddings", json={"input": texts, "encoding_format": "float"})
    assert response.status_code == 200 and len(response.json()["data"]) == len(texts)
    assert seen == texts  # validated, counted for usage and windowed from one tokenizer pass


def test_served_name_of_a_bundle_given_as_dot(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_bundle)
    model = ClinicalBert.load(".", verify=False)
    assert model.name == tiny_bundle.name  # was "" for `clinbert serve .`
    assert create_app(model, ServeConfig(warmup=False)).state.runtime.name == tiny_bundle.name


def test_serve_as_a_library_leaves_process_state_alone(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import warnings

    from clinbert_onnx.serve import server

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(server, "run", lambda app, config: 0)  # load and build the app, do not listen
    logger = logging.getLogger("clinbert_onnx.serve")
    before = (list(warnings.filters), logger.propagate, list(logger.handlers), logger.level)
    assert server.serve(tiny_bundle, ServeConfig(warmup=False), verify=False) == 0
    assert "TOKENIZERS_PARALLELISM" not in os.environ
    assert (list(warnings.filters), logger.propagate, list(logger.handlers), logger.level) == before
