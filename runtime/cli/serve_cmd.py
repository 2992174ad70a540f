"""``clinbert serve``: the HTTP server (needs the ``[serve]`` extra)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .args import add_engine, add_no_verify, options_from

API_KEY_ENV = "CLINBERT_API_KEY"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="HTTP server: OpenAI/TEI-compatible embeddings and fill-mask",
        description="Serve a bundle over HTTP. Binds 127.0.0.1 unless --host is given; give an API key (flag or "
        f"{API_KEY_ENV}) before binding anything else. Stops gracefully on SIGTERM.",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument(
        "--host", "--hostname", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    p.add_argument("--port", type=int, default=8080, help="(default: 8080)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--variant", help="variant to use (default: int8 on CPU, fp16/fp32 on CUDA)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (default: all available cores)")
    p.add_argument(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' (prefer the {API_KEY_ENV} environment variable: "
        "command lines are visible to other users)",
    )
    p.add_argument("--served-model-name", help="the 'model' reported by /v1/embeddings (default: the bundle's id)")
    p.add_argument("--max-batch-tokens", type=int, help="tokens merged into one inference (default: model budget)")
    p.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long an idle batcher waits for company (default: 5)"
    )
    p.add_argument("--max-queue", type=int, default=4096, help="texts waiting for inference before 429 (default: 4096)")
    p.add_argument(
        "--max-inputs",
        "--max-client-batch-size",
        dest="max_inputs",
        type=int,
        default=2048,
        help="texts per request, 413 beyond (default: 2048; TEI's --max-client-batch-size)",
    )
    p.add_argument(
        "--max-concurrent-requests",
        type=int,
        default=512,
        help="inference requests handled at once; beyond, 429 at once instead of a long wait (default: 512, as TEI)",
    )
    p.add_argument(
        "--auto-truncate",
        action="store_true",
        help="TEI routes truncate over-long texts when the request does not set 'truncate' (default: 422)",
    )
    p.add_argument(
        "--max-chars",
        type=int,
        default=100_000,
        help="characters per text, 422 beyond unless truncating (default: 100000)",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=4 * 1024 * 1024, help="request body size, 413 beyond (default: 4 MiB)"
    )
    p.add_argument(
        "--cors-origin",
        "--cors-allow-origin",
        dest="cors_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; CORS is off by default)",
    )
    p.add_argument(
        "--graceful-timeout", type=float, default=30.0, help="seconds in-flight requests get at shutdown (default: 30)"
    )
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="report ready without warm-up inferences")
    add_engine(p)
    add_no_verify(p)
    p.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="server log level (request bodies are never logged)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..serve import ServeConfig, serve

    if args.threads < 0:
        raise InputError("--threads must be 0 (all cores) or more")
    args.api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    args.cors_origins = tuple(args.cors_origins)
    config = options_from(ServeConfig, args)
    return serve(
        args.bundle,
        config,
        device=args.device,
        variant=args.variant,
        verify=args.verify,
        threads=args.threads,
        engine=args.engine,
    )
