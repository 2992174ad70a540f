"""``clinbert serve``: an HTTP server for embeddings (OpenAI- and TEI-compatible) and fill-mask.

Needs the ``[serve]`` extra (FastAPI, uvicorn, prometheus-client); importing this package does not import them.
``create_app(model, config)`` builds the ASGI app; ``serve(bundle, config, ...)`` loads a bundle and runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .config import ServeConfig

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


def serve(
    bundle: str | Path,
    config: ServeConfig,
    *,
    device: str = "auto",
    variant: str | None = None,
    verify: bool = True,
    threads: int = 0,
) -> int:
    """Load ``bundle`` and serve it until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop)."""
    from .server import serve as run

    return run(bundle, config, device=device, variant=variant, verify=verify, threads=threads)
