"""Running the app under uvicorn: logging, signals and graceful shutdown.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets in-flight requests finish (up to
``graceful_timeout`` s), then the lifespan drains the batcher; the process then exits 0. Uvicorn re-raises the
signal it caught once it is done, which would kill the process with the signal's status: the handler installed
here absorbs that re-raise.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import ClinBertError, require
from .config import ServeConfig

log = logging.getLogger("clinbert_onnx.serve")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def process_settings(level: str) -> Iterator[None]:
    """What serving changes in the process, undone on exit (``serve`` is a library function too):

    - our own handler for the server's loggers (access log and errors) at ``level``, not propagated to root;
    - ``TOKENIZERS_PARALLELISM=false`` unless set: the event loop needs the cores between batches, and requests
      are tokenized one by one as they arrive (rayon's idle threads would spin).
    """
    logger = logging.getLogger("clinbert_onnx.serve")
    saved = (logger.level, logger.propagate, os.environ.get("TOKENIZERS_PARALLELISM"))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.setLevel(level.upper())
    logger.addHandler(handler)
    logger.propagate = False
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        if saved[2] is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved[2]


def serve(
    bundle: str | Path,
    config: ServeConfig,
    *,
    device: str = "auto",
    variant: str | None = None,
    verify: bool = True,
    threads: int = 0,
    engine: str = "onnxruntime",
) -> int:
    """Load ``bundle`` and serve it until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop).
    Process-wide settings it makes (logging, ``TOKENIZERS_PARALLELISM``) are undone when it returns."""
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, "serve")
    with process_settings(config.log_level):
        return _serve(bundle, config, device=device, variant=variant, verify=verify, threads=threads, engine=engine)


def _serve(
    bundle: str | Path,
    config: ServeConfig,
    *,
    device: str,
    variant: str | None,
    verify: bool,
    threads: int,
    engine: str,
) -> int:
    from ..model import ClinicalBert
    from ..session import PRESETS
    from . import create_app

    if not config.is_loopback and not config.api_key:
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the model "
            "(set CLINBERT_API_KEY or --api-key)",
            config.host,
        )
    # The event loop needs the cores between batches: no spin-waiting ONNX Runtime threads.
    session_config = PRESETS["throughput"].with_(intra_op_threads=threads)
    model = ClinicalBert.load(
        bundle, device=device, variant=variant, verify=verify, session_config=session_config, engine=engine
    )
    log.info("loaded %s (variant %s on %s, %s)", model.bundle.model_id, model.variant, model.device, engine)
    return run(create_app(model, config), config)


def run(app: Any, config: ServeConfig, sockets: list[socket.socket] | None = None) -> int:
    """Serve ``app`` until a signal (main thread) or ``should_exit``; returns 0 after a graceful stop."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            access_log=False,  # ours logs route, status, latency and sizes only
            server_header=False,
            timeout_graceful_shutdown=max(1, round(config.graceful_timeout)),
            lifespan="on",
        )
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:
        if exc.code:
            raise ClinBertError(
                f"the server could not start on {config.host}:{config.port} (see the log above)"
            ) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
