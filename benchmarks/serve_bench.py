"""Server throughput and latency: dynamic batching vs one-request-one-inference vs in-process batches.

    python benchmarks/serve_bench.py BUNDLE [--clients 16] [--rounds 5] [--seconds 10] [--json out.json]

Three setups, measured in turns (order rotating each round; medians reported), so that a shared machine's
changing load hits them alike:

1. In-process: ``model.encode`` on ``--batch`` texts per call (the library's own token-budget batching), and
   the same with each call's texts split into groups of similar length first (what the server does with the
   batches it merges); texts/s. The better of the two, round by round, is the 100% reference.
2. ``clinbert serve BUNDLE`` (dynamic batching) as a separate process; CLIENTS concurrent clients, each sending
   one text per request to ``/v1/embeddings`` (base64, as the openai SDK asks) and waiting for the answer
   before sending the next; texts/s, p50/p99 latency, mean texts per inference call (from /metrics).
3. The same load against a one-request-one-inference server: a plain FastAPI endpoint calling
   ``model.encode`` per request in FastAPI's thread pool (how such servers are usually written).

All three use ``clinbert serve``'s ONNX Runtime and tokenizer settings (no spin-waiting, serial tokenizer).

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams, so that on small machines it
takes as little CPU as possible from the server it measures. Texts: clinical sentences from tests/data.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "data" / "clinical_corpus.txt"


# ------------------------------------------------------------------------------------------------- texts, model
def load_texts(n: int) -> list[str]:
    lines = [x for x in CORPUS.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [lines[i % len(lines)] for i in range(n)]


def load_model(args: argparse.Namespace) -> Any:
    """With ``clinbert serve``'s settings everywhere (no spin-waiting threads, serial tokenizer), so that the
    setups differ only in how texts reach the model."""
    from clinbert_onnx import ClinicalBert, SessionConfig

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    session = SessionConfig(intra_op_threads=args.threads, spin=False)
    return ClinicalBert.load(args.bundle, variant=args.variant, verify=False, session_config=session)


def in_process(model: Any, texts: list[str], batch: int, seconds: float, grouped: bool) -> float:
    """Texts/s of ``model.encode`` on consecutive slices of ``batch`` texts, for about ``seconds``; ``grouped``:
    each text prepared as its own request and the windows merged into one run, as the server's batcher does."""
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        chunk = [texts[(i + j) % len(texts)] for j in range(batch)]
        if grouped:
            requests = [model.prepare([text], "embed") for text in chunk]
            outputs = model.run([w for r in requests for w in r.windows])
            offset = 0
            for request in requests:
                model.finish(request, outputs[offset : offset + len(request.windows)])
                offset += len(request.windows)
        else:
            model.encode(chunk)
        done += batch
        i += batch
    return done / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------- naive server
def naive_server(args: argparse.Namespace) -> None:
    import uvicorn
    from clinbert_onnx.serve.app import render_openai
    from clinbert_onnx.serve.schemas import EmbeddingsRequest
    from fastapi import FastAPI
    from fastapi.responses import Response

    model = load_model(args)
    model.encode(["warm up"])
    app = FastAPI()

    def embeddings(body: EmbeddingsRequest) -> Response:  # sync: FastAPI runs it in its thread pool
        texts = [body.input] if isinstance(body.input, str) else body.input
        result = model.encode(texts, long_text=body.long_text)
        payload = render_openai(result, "naive", sum(result.tokens) + 2 * len(texts), body.encoding_format)
        return Response(payload, media_type="application/json")

    app.post("/v1/embeddings")(embeddings)
    app.get("/ready")(lambda: {"status": "ready"})
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


# ------------------------------------------------------------------------------------------------- load
async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> tuple[int, bytes]:
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _client(
    port: int, texts: list[str], offset: int, stop_at: float, out: list[tuple[float, float, int]]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            body = json.dumps({"input": texts[i % len(texts)], "model": "bench", "encoding_format": "base64"})
            start = time.perf_counter()
            status, _ = await _post(reader, writer, body.encode())
            out.append((start, time.perf_counter(), status))
            i += 1
    finally:
        writer.close()


async def _load(
    port: int, texts: list[str], clients: int, ramp: float, seconds: float
) -> tuple[float, list[float], int]:
    """(texts/s, latencies in s, errors) of requests completed in the ``seconds`` after ``ramp`` seconds."""
    t0 = time.perf_counter()
    begin, end = t0 + ramp, t0 + ramp + seconds
    records: list[tuple[float, float, int]] = []
    step = max(1, len(texts) // clients)
    await asyncio.gather(*(_client(port, texts, c * step, end, records) for c in range(clients)))
    window = [r for r in records if begin <= r[1] <= end]
    errors = sum(1 for r in window if r[2] != 200)
    return (len(window) - errors) / seconds, [r[1] - r[0] for r in window], errors


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server not ready")


def _metric(port: int, name: str) -> float | None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return None


def baseline_env(code: Path) -> dict[str, str]:
    """An environment whose ``clinbert_onnx`` is ``code/runtime`` (an earlier checkout, e.g. a git worktree):
    a symlink in a scratch folder put first on PYTHONPATH, ahead of the installed package."""
    import tempfile

    shim = Path(tempfile.mkdtemp(prefix="clinbert-baseline-"))
    (shim / "clinbert_onnx").symlink_to((code / "runtime").resolve(), target_is_directory=True)
    return {**os.environ, "PYTHONPATH": str(shim)}


def start_server(kind: str, args: argparse.Namespace) -> tuple[int, subprocess.Popen[bytes]]:
    port = _free_port()
    common = ["--threads", str(args.threads)] + (["--variant", args.variant] if args.variant else [])
    env = baseline_env(args.baseline_code) if kind == "baseline" else None
    if kind in ("dynamic", "baseline"):
        cmd = [
            sys.executable,
            "-m",
            "clinbert_onnx",
            "serve",
            str(args.bundle),
            "--port",
            str(port),
            "--no-verify",
            "--log-level",
            "warning",
            "--max-wait-ms",
            str(args.max_wait_ms),
            *common,
        ]
    else:
        cmd = [sys.executable, __file__, str(args.bundle), "--naive-server", "--port", str(port), *common]
    return port, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------------------------------------- main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per setup and round")
    p.add_argument("--ramp", type=float, default=2.0, help="unmeasured seconds of load before each measurement")
    p.add_argument("--batch", type=int, default=128, help="texts per in-process encode call")
    p.add_argument("--texts", type=int, default=600, help="distinct texts cycled through")
    p.add_argument("--variant")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all cores)")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument(
        "--baseline-code",
        type=Path,
        help="also serve with an earlier checkout's runtime (a folder holding runtime/), for before/after ratios",
    )
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.naive_server:
        naive_server(args)
        return 0

    texts = load_texts(args.texts)
    kinds = ["dynamic"] if args.skip_naive else ["dynamic", "naive"]
    if args.baseline_code:
        kinds.append("baseline")
    servers = {kind: start_server(kind, args) for kind in kinds}
    try:
        for port, proc in servers.values():
            _wait_ready(port, proc)
        model = load_model(args)
        model.encode(texts[: args.batch])
        rates: dict[str, list[float]] = {k: [] for k in ["in_process", "in_process_grouped", *kinds]}
        latencies: dict[str, list[float]] = {k: [] for k in kinds}
        errors = dict.fromkeys(kinds, 0)
        load_before = os.getloadavg()[0]
        setups = ["in_process", "in_process_grouped", *kinds]
        for r in range(args.rounds):
            for setup in setups[r % len(setups) :] + setups[: r % len(setups)]:
                if setup.startswith("in_process"):
                    grouped = setup == "in_process_grouped"
                    rates[setup].append(in_process(model, texts, args.batch, args.seconds, grouped))
                else:
                    rate, lat, err = asyncio.run(_load(servers[setup][0], texts, args.clients, args.ramp, args.seconds))
                    rates[setup].append(rate)
                    latencies[setup] += lat
                    errors[setup] += err
                print(f"round {r + 1}: {setup} {rates[setup][-1]:.1f} texts/s", file=sys.stderr)
        port = servers["dynamic"][0]
        batch_texts = (_metric(port, "clinbert_batch_texts_sum") or 0) / (
            _metric(port, "clinbert_batch_texts_count") or 1
        )
    finally:
        for _, proc in servers.values():
            stop_server(proc)

    # the reference: the better in-process way, round by round
    best = [max(a, b) for a, b in zip(rates["in_process"], rates["in_process_grouped"], strict=True)]
    base = statistics.median(best)
    results: dict[str, Any] = {
        "bundle": str(args.bundle),
        "variant": model.variant,
        "device": model.device,
        "clients": args.clients,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "cpus": len(os.sched_getaffinity(0)),
        "threads": args.threads,
        "mean_tokens": statistics.mean(model.count_tokens(texts)),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "batch": args.batch,
        "in_process": {"texts_per_s": statistics.median(rates["in_process"]), "rounds": rates["in_process"]},
        "in_process_grouped": {
            "texts_per_s": statistics.median(rates["in_process_grouped"]),
            "rounds": rates["in_process_grouped"],
        },
        "reference": {"texts_per_s": base, "rounds": best},
    }
    for kind in kinds:
        ratios = [s / i for s, i in zip(rates[kind], best, strict=True)]
        results[kind] = {
            "texts_per_s": statistics.median(rates[kind]),
            "rounds": rates[kind],
            "vs_in_process": statistics.median(ratios),
            "p50_ms": _pct(latencies[kind], 0.5),
            "p99_ms": _pct(latencies[kind], 0.99),
            "requests": len(latencies[kind]),
            "errors": errors[kind],
        }
    results["dynamic"]["mean_batch_texts"] = batch_texts
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    base = results["reference"]["texts_per_s"]
    print(
        f"\n{results['variant']} on {results['device']}, {results['cpus']} CPUs, {args.clients} clients x 1 text, "
        f"mean {results['mean_tokens']:.1f} tokens/text, {args.rounds} rounds x {args.seconds:g} s, "
        f"load average {results['load_average'][0]} -> {results['load_average'][1]}"
    )
    print("| setup | texts/s (median) | vs in-process (median of rounds) | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, name in (("in_process", "in-process `encode`"), ("in_process_grouped", "in-process, length-grouped")):
        r = results[key]
        print(f"| {name}, {args.batch} texts per call | {r['texts_per_s']:.1f} | {r['texts_per_s'] / base:.0%} | | | |")
    names = {
        "dynamic": "`clinbert serve` (dynamic batching)",
        "naive": "one request = one inference",
        "baseline": f"`clinbert serve` of {args.baseline_code} (before)",
    }
    for kind, name in names.items():
        if kind in results:
            r = results[kind]
            print(
                f"| {name} | {r['texts_per_s']:.1f} | {r['vs_in_process']:.0%} | {r['p50_ms']:.0f} | "
                f"{r['p99_ms']:.0f} | {r['errors']} |"
            )
    print(
        f"\n100% = the better in-process way in each round (median {base:.1f} texts/s); "
        f"mean texts per inference call (dynamic): {results['dynamic']['mean_batch_texts']:.1f}"
    )
    if "baseline" in results:
        ratios = [a / b for a, b in zip(results["dynamic"]["rounds"], results["baseline"]["rounds"], strict=True)]
        results["dynamic_vs_baseline"] = statistics.median(ratios)
        print(f"dynamic vs baseline (median of per-round ratios): {results['dynamic_vs_baseline']:.2f}x")
    for key in ("in_process", "in_process_grouped", "dynamic", "naive", "baseline"):
        if key in results:
            print(f"{key} per round: " + ", ".join(f"{x:.1f}" for x in results[key]["rounds"]))


if __name__ == "__main__":
    sys.exit(main())
