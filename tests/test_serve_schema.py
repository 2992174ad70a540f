"""Schemathesis against the served OpenAPI schema (real uvicorn on 127.0.0.1): valid and invalid requests for
every operation; no 5xx, and every response matches its declared status codes, content types and schemas."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serve_support import running  # noqa: E402

from clinbert_onnx import ClinicalBert  # noqa: E402
from clinbert_onnx.serve import ServeConfig, create_app  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def served_schema(tiny_bundle: Path):
    config = ServeConfig(max_inputs=16, max_queue=64, max_chars=4000, max_body_bytes=256 * 1024)
    with running(create_app(ClinicalBert.load(tiny_bundle), config)) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_and_never_5xx(case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=30)
