"""``clinbert serve``: an HTTP server for embeddings (OpenAI- and TEI-compatible) and fill-mask.

Needs the ``[serve]`` extra (FastAPI, uvicorn, prometheus-client); importing this package does not import them.
``create_app(model, config)`` builds the ASGI app; ``serve(bundle, config, ...)`` loads a bundle and runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ServeConfig
from .server import serve  # stdlib-only at import time: uvicorn is imported when it runs

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..model import ClinicalBert

__all__ = ["ServeConfig", "create_app", "serve"]


def create_app(model: ClinicalBert, config: ServeConfig | None = None) -> FastAPI:
    from ..errors import require

    for module in ("fastapi", "prometheus_client"):
        require(module, "serve")
    from .app import create_app as build

    return build(model, config)
