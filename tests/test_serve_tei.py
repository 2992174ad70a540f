"""The Text Embeddings Inference contract: every response and error body of the TEI routes validated with
``jsonschema`` against schemas written from TEI's published OpenAPI document (``tei_contract``), TEI's
semantics (truncation, prompts, empty inputs, overload, routes that do not apply), and real TEI clients:
``huggingface_hub.InferenceClient`` and LangChain's ``HuggingFaceEndpointEmbeddings``."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
jsonschema = pytest.importorskip("jsonschema")

import tei_contract as contract  # noqa: E402
from clinbert_onnx import ClinicalBert  # noqa: E402
from clinbert_onnx.serve import ServeConfig, create_app  # noqa: E402
from clinbert_onnx.tasks import EmbedOptions  # noqa: E402
from serve_support import MARKER, running, wait_for  # noqa: E402

TEXTS = ["Patient denies chest pain.", "Fièvre à 39 °C, toux productive.", "Afebrile overnight."]
LIMITS = ServeConfig(max_inputs=8, max_queue=64, max_chars=2000, max_body_bytes=64 * 1024)
LONG = " ".join(["pain"] * 300)


@pytest.fixture(scope="module")
def tiny(tiny_bundle: Path) -> ClinicalBert:
    return ClinicalBert.load(tiny_bundle)


@pytest.fixture(scope="module")
def url(tiny: ClinicalBert) -> Iterator[str]:
    with running(create_app(tiny, LIMITS)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Any]:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


def ok(response: Any, route: str) -> Any:
    """A 200 whose body validates against TEI's response schema for ``route``."""
    schema, statuses = contract.ROUTES[route]
    assert response.status_code == 200 and 200 in statuses, response.text
    body = response.json()
    jsonschema.validate(body, schema)
    return body


def tei_error(response: Any, route: str, status: int, error_type: str) -> str:
    """A TEI error: documented status for the route, TEI's ErrorResponse schema, status matching its type."""
    assert response.status_code == status, response.text
    assert status in contract.ROUTES[route][1] and status in contract.STATUS_OF_TYPE[error_type]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    jsonschema.validate(body, contract.ERROR)
    assert body["error_type"] == error_type, body
    assert MARKER not in response.text
    return str(body["error"])


# ------------------------------------------------------------------------------------------------- routes
def test_info_has_every_field_of_teis_info(client, tiny: ClinicalBert) -> None:
    info = client.get("/info").json()
    jsonschema.validate(info, contract.INFO)
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["task"] == "fill-mask" and info["labels"] is None
    assert info["max_input_length"] == tiny.max_length and info["max_client_batch_size"] == 8
    assert info["max_concurrent_requests"] == 512 and info["auto_truncate"] is False
    assert info["model_dtype"] == "int8" and {"embed", "token-embeddings", "fill-mask"} <= set(info["tasks"])


def test_embed(client, tiny: ClinicalBert) -> None:
    batch = ok(client.post("/embed", json={"inputs": TEXTS}), "/embed")
    np.testing.assert_allclose(batch, tiny.embed(TEXTS), atol=1e-5)
    single = ok(client.post("/embed", json={"inputs": TEXTS[0], "normalize": False}), "/embed")
    np.testing.assert_allclose(single[0], tiny.embed(TEXTS[0], normalize=False)[0], rtol=1e-4, atol=1e-5)
    # token ids (as TEI's /tokenize gives them) are accepted like TEI's InputIds
    ids = [t["id"] for t in client.post("/tokenize", json={"inputs": TEXTS[0]}).json()[0]]
    np.testing.assert_allclose(ok(client.post("/embed", json={"inputs": ids}), "/embed")[0], batch[0], atol=1e-5)
    both = ok(client.post("/embed", json={"inputs": [ids, TEXTS[2]]}), "/embed")
    np.testing.assert_allclose(both, [batch[0], batch[2]], atol=1e-5)
    # dimensions: the first N, then normalized (TEI's Matryoshka truncation)
    cut = np.array(ok(client.post("/embed", json={"inputs": TEXTS[0], "dimensions": 16}), "/embed")[0])
    raw = tiny.embed(TEXTS[0], normalize=False)[0][:16]
    np.testing.assert_allclose(cut, raw / np.linalg.norm(raw), atol=1e-5)


def test_embed_truncation_and_prompt_name(client, tiny: ClinicalBert) -> None:
    tei_error(client.post("/embed", json={"inputs": LONG}), "/embed", 422, "Validation")
    right = ok(client.post("/embed", json={"inputs": LONG + " end", "truncate": True}), "/embed")
    np.testing.assert_allclose(right[0], tiny.embed(LONG + " end", long_text="truncate")[0], atol=1e-5)
    body = {"inputs": LONG + " end", "truncate": True, "truncation_direction": "left"}
    left = ok(client.post("/embed", json=body), "/embed")
    want = tiny.process(LONG + " end", "embed", EmbedOptions(long_text="truncate", truncation_direction="left"))
    np.testing.assert_allclose(left[0], want.vectors[0], atol=1e-5)
    for route, request in [
        ("/embed", {"inputs": "x", "prompt_name": "query"}),
        ("/embed", {"inputs": "x", "parameters": {"prompt_name": "query"}}),
        ("/embed_all", {"inputs": "x", "prompt_name": "query"}),
        ("/tokenize", {"inputs": "x", "prompt_name": "query"}),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"prompt_name": "q"}}),
    ]:
        message = tei_error(client.post(route, json=request), route, 422, "Validation")
        assert "prompts" in message and "query" not in message  # TEI's answer, without echoing the request


def test_auto_truncate(tiny: ClinicalBert) -> None:
    with running(create_app(tiny, ServeConfig(auto_truncate=True, warmup=False))) as base:
        assert httpx.get(f"{base}/info").json()["auto_truncate"] is True
        ok(httpx.post(f"{base}/embed", json={"inputs": LONG}), "/embed")  # truncate not set: the server's default
        ok(httpx.post(f"{base}/embed_all", json={"inputs": LONG}), "/embed_all")
        tei_error(httpx.post(f"{base}/embed", json={"inputs": LONG, "truncate": False}), "/embed", 422, "Validation")


def test_embed_all_token_vectors(client, tiny: ClinicalBert) -> None:
    got = ok(client.post("/embed_all", json={"inputs": TEXTS}), "/embed_all")
    tokens = client.post("/tokenize", json={"inputs": TEXTS}).json()
    assert [len(m) for m in got] == [len(t) for t in tokens]  # [CLS] ... [SEP], one vector per token
    assert all(len(row) == tiny.hidden_size for m in got for row in m)
    pooled = tiny.embed(TEXTS, normalize=False)  # mean pooling over the same tokens
    for matrix, want in zip(got, pooled, strict=True):
        np.testing.assert_allclose(np.mean(matrix, axis=0), want, rtol=1e-3, atol=1e-4)
    single = ok(client.post("/embed_all", json={"inputs": TEXTS[0]}), "/embed_all")
    np.testing.assert_allclose(single[0], got[0], atol=1e-5)
    tei_error(client.post("/embed_all", json={"inputs": LONG}), "/embed_all", 422, "Validation")
    cut = ok(client.post("/embed_all", json={"inputs": LONG, "truncate": True}), "/embed_all")
    assert len(cut[0]) == tiny.max_length


def test_tokenize_offsets_and_special_tokens(client, tiny: ClinicalBert) -> None:
    got = ok(client.post("/tokenize", json={"inputs": TEXTS}), "/tokenize")
    for text, tokens in zip(TEXTS, got, strict=True):
        assert tokens[0]["special"] and tokens[-1]["special"] and tokens[0]["start"] is None
        assert [t["id"] for t in tokens] == tiny.tokenizer.encode(text).ids
        raw = text.encode("utf-8")
        for t in tokens[1:-1]:  # TEI's offsets are UTF-8 byte offsets, and text is that slice of the input
            assert raw[t["start"] : t["stop"]].decode("utf-8") == t["text"] and not t["special"]
    plain = ok(client.post("/tokenize", json={"inputs": TEXTS[1], "add_special_tokens": False}), "/tokenize")
    assert plain[0] == got[1][1:-1]


def test_decode(client, tiny: ClinicalBert) -> None:
    ids = tiny.tokenizer.encode(TEXTS[0]).ids
    assert ok(client.post("/decode", json={"ids": ids}), "/decode") == [tiny.tokenizer.decode(ids)]
    both = ok(client.post("/decode", json={"ids": [ids, ids[:3]], "skip_special_tokens": False}), "/decode")
    assert both[0].startswith("[CLS]") and len(both) == 2


def test_similarity(client, tiny: ClinicalBert) -> None:
    body = {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS}}
    got = ok(client.post("/similarity", json=body), "/similarity")
    vectors = tiny.embed(TEXTS)
    np.testing.assert_allclose(got, vectors @ vectors[0], atol=1e-5)
    assert got[0] == pytest.approx(1.0, abs=1e-5)
    root = client.post("/", json=body)  # TEI's root route: the body shape picks similarity
    np.testing.assert_allclose(ok(root, "/similarity"), got, atol=1e-6)


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("route", "body", "status", "error_type"),
    [
        ("/embed", {"inputs": []}, 400, "Empty"),
        ("/embed", {"inputs": ""}, 400, "Empty"),
        ("/embed", {"inputs": ["ok", " "]}, 400, "Empty"),
        ("/embed", {"inputs": ["a"] * 9}, 413, "Validation"),
        ("/embed", {"inputs": [MARKER + "x" * 2001]}, 422, "Validation"),
        ("/embed", {"inputs": 3}, 422, "Validation"),
        ("/embed", {"inputs": "x", "truncation_direction": "up"}, 422, "Validation"),
        ("/embed", {"inputs": "x", "dimensions": 0}, 422, "Validation"),
        ("/embed", {"inputs": [[1, 2], [999999]]}, 422, "Tokenizer"),
        ("/embed_all", {"inputs": []}, 400, "Empty"),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": []}}, 400, "Empty"),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"] * 8}}, 413, "Validation"),
        ("/similarity", {"inputs": {"source_sentence": "a"}}, 422, "Validation"),
        ("/tokenize", {"inputs": []}, 400, "Empty"),
        ("/tokenize", {"inputs": ["a"] * 9}, 413, "Validation"),
        ("/tokenize", {"inputs": 5}, 422, "Validation"),
        ("/decode", {"ids": []}, 400, "Empty"),
        ("/decode", {"ids": [[1], []]}, 400, "Empty"),
        ("/decode", {"ids": [[1]] * 9}, 413, "Validation"),
        ("/decode", {"ids": [-1]}, 422, "Validation"),
        ("/decode", {"ids": [10**7]}, 422, "Tokenizer"),
        # routes that do not apply to a dense embedding bundle: TEI's 424, after TEI's body validation
        ("/embed_sparse", {"inputs": "x"}, 424, "Backend"),
        ("/predict", {"inputs": "x"}, 424, "Backend"),
        ("/predict", {"inputs": ["premise", "hypothesis"]}, 424, "Backend"),
        ("/rerank", {"query": "q", "texts": ["a", "b"]}, 424, "Backend"),
        ("/rerank", {"query": "q"}, 422, "Validation"),
    ],
)
def test_error_contract(client, route: str, body: Any, status: int, error_type: str) -> None:
    tei_error(client.post(route, json=body), route, status, error_type)


def test_openai_route_keeps_openais_error_shape(client) -> None:
    for body, status in (({"input": []}, 422), ({"input": ["a"] * 9}, 413), ({"input": 3}, 422)):
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == status
        jsonschema.validate(response.json(), contract.OPENAI_ERROR)
    ok(client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "float"}), "/v1/embeddings")
    ok(client.post("/embeddings", json={"input": TEXTS[0]}), "/v1/embeddings")  # TEI's alias


def test_max_concurrent_requests_is_429_overloaded(tiny: ClinicalBert) -> None:
    config = ServeConfig(max_concurrent_requests=1, max_wait_ms=1000, warmup=False)
    app = create_app(tiny, config)
    with running(app) as base, cf.ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{base}/embed", json={"inputs": "one"}, timeout=30)
        wait_for(lambda: app.state.runtime.in_flight == 1)
        second = httpx.post(f"{base}/embed", json={"inputs": "two"}, timeout=30)
        tei_error(second, "/embed", 429, "Overloaded")
        assert int(second.headers["retry-after"]) >= 1
        third = httpx.post(f"{base}/v1/embeddings", json={"input": "three"}, timeout=30)
        assert third.status_code == 429 and third.json()["error"]["code"] == "overloaded"
        assert first.result().status_code == 200
        assert httpx.post(f"{base}/embed", json={"inputs": "four"}, timeout=30).status_code == 200


def test_a_registered_task_route_switches_on(tiny: ClinicalBert, monkeypatch: pytest.MonkeyPatch) -> None:
    """The not-applicable answer is a mechanism: a task that registers itself and a mount serves the route."""
    from clinbert_onnx import tasks
    from clinbert_onnx.serve import tei

    class Classify:
        options_type = EmbedOptions

        def supports(self, model: ClinicalBert) -> bool:
            return True

    def mount(app: Any, rt: Any, route: tei.TaskRoute) -> None:
        async def predict(body: Any) -> list[dict[str, Any]]:
            return [{"score": 1.0, "label": "stable"}]

        predict.__annotations__ = {"body": route.request}
        app.post(route.path)(predict)

    monkeypatch.setitem(tasks.TASKS, "text-classification", Classify())
    monkeypatch.setitem(tei.MOUNTS, "/predict", mount)
    with running(create_app(tiny, ServeConfig(warmup=False))) as base:
        assert httpx.post(f"{base}/predict", json={"inputs": "x"}).json() == [{"score": 1.0, "label": "stable"}]
        tei_error(httpx.post(f"{base}/rerank", json={"query": "q", "texts": ["a"]}), "/rerank", 424, "Backend")


def test_embed_all_not_applicable_without_hidden_state(tiny_bundle: Path) -> None:
    model = ClinicalBert.load(tiny_bundle)
    model.engine.output_names = frozenset(model.engine.output_names - {"last_hidden_state"})
    with running(create_app(model, ServeConfig(warmup=False))) as base:
        tei_error(httpx.post(f"{base}/embed_all", json={"inputs": "x"}), "/embed_all", 424, "Backend")
        assert "token-embeddings" not in httpx.get(f"{base}/info").json()["tasks"]


# ------------------------------------------------------------------------------------------------- clients
@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)  # only loopback is reached: the model is a URL
    hub.utils.reset_sessions()  # a session cached by an earlier test carries the offline adapter
    yield hub
    monkeypatch.undo()
    hub.utils.reset_sessions()


def test_huggingface_hub_inference_client(hub, url: str, tiny: ClinicalBert) -> None:
    for model in (url, f"{url}/embed"):
        vectors = hub.InferenceClient(model=model).feature_extraction(TEXTS)
        np.testing.assert_allclose(vectors, tiny.embed(TEXTS), atol=1e-5)
    cut = hub.InferenceClient(model=url).feature_extraction(LONG, truncate=True, truncation_direction="Left")
    want = tiny.process(LONG, "embed", EmbedOptions(long_text="truncate", truncation_direction="left"))
    np.testing.assert_allclose(cut[0], want.vectors[0], atol=1e-5)
    vectors = tiny.embed(TEXTS)
    for model in (url, f"{url}/similarity"):
        scores = hub.InferenceClient(model=model).sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
        np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-5)


def test_langchain_huggingface_endpoint_embeddings(hub, url: str, tiny: ClinicalBert) -> None:
    """LangChain's TEI integration. Since langchain-huggingface 1.2 its validator refuses a URL as ``model`` (a
    TEI server has the same problem; LangChain's docs now point TEI users at ``OpenAIEmbeddings``): there, its
    client is pointed at the server instead, which is what ``model=URL`` did before."""
    lc = pytest.importorskip("langchain_huggingface")
    try:
        embeddings = lc.HuggingFaceEndpointEmbeddings(model=url)
    except ValueError:
        embeddings = lc.HuggingFaceEndpointEmbeddings(model="emilyalsentzer/Bio_ClinicalBERT")
        embeddings.client = hub.InferenceClient(model=url)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), tiny.embed(TEXTS), atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[0]), tiny.embed(TEXTS[0])[0], atol=1e-5)
