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
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import ClinBertError, require
from .config import ServeConfig

log = logging.getLogger("clinbert_onnx.serve")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Our own handler for the server's loggers (access log and errors), at ``level``."""
    logger = logging.getLogger("clinbert_onnx.serve")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_clinbert_serve", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._clinbert_serve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def serve(
    bundle: str | Path,
    config: ServeConfig,
    *,
    device: str = "auto",
    variant: str | None = None,
    verify: bool = True,
    threads: int = 0,
) -> int:
    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, "serve")
    from ..model import ClinicalBert
    from ..session import SessionConfig
    from . import create_app

    configure_logging(config.log_level)
    if not config.is_loopback and not config.api_key:
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the model "
            "(set CLINBERT_API_KEY or --api-key)",
            config.host,
        )
    # The event loop needs the cores between batches: no spin-waiting ONNX Runtime threads, and no tokenizer
    # thread pool (requests are tokenized one by one as they arrive; rayon's idle threads would spin too).
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # fill-mask's "target N is not a single vocabulary token; replacing it with ..." quotes a piece of the request
    warnings.filterwarnings("ignore", message=r"target \d+ ", category=UserWarning)
    session_config = SessionConfig(intra_op_threads=threads, spin=False)
    model = ClinicalBert.load(bundle, device=device, variant=variant, verify=verify, session_config=session_config)
    log.info("loaded %s (variant %s on %s)", model.bundle.model_id, model.variant, model.device)
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
