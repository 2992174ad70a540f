"""Helpers for the server tests: a real uvicorn on 127.0.0.1 (in a thread, or `clinbert serve` as a process)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

MARKER = "Zebulon Quackenbush MRN 7734519"  # stands for patient text: must never appear in errors or logs


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    """Poll ``condition()`` until it is true (state a test waits on, instead of sleeping a guessed time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.005)


@contextmanager
def running(app: Any, *, ready: bool = True) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a pre-bound loopback socket; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if ready:
            wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clinbert_command() -> list[str]:
    script = Path(sys.executable).parent / "clinbert"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "clinbert_onnx"]


@contextmanager
def serve_process(
    bundle: Path, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``clinbert serve BUNDLE --port P ARGS`` as a child process; yields (URL, process). Always stopped."""
    port = free_port()
    cmd = [*clinbert_command(), "serve", str(bundle), "--port", str(port), "--no-verify", *args]
    full_env = {**os.environ, **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc=proc)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if log:
            out.close()  # type: ignore[union-attr]


def have_serve_deps() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "prometheus_client", "httpx"))
