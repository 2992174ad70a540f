"""Spark's overhead: ``clinbert score --engine spark`` / ``score(df)`` on ``local[N]`` against ``clinbert score``
in one process, on the same input and the same cores.

Measured (each printed and written to ``--json``):

- *ratio*: rows/s and tokens/s of the Spark job (warm session and workers) over those of ``clinbert score``
  in one process (all cores, timed end to end as a subprocess); the target is >= 0.85;
- *session*: SparkSession start, and the first task (Python worker start + model load + one row);
- *cold vs warm job*: the first job pays a model load per Python worker, later ones reuse it;
- *task cpus x threads*: ``spark.task.cpus`` in {1, 2} with threads from it, and 1 task cpu with 2 threads
  (oversubscribed), each in a new session;
- *maxRecordsPerBatch*: ``score(df)`` over the Parquet file with 256 / 1024 / 4096 rows per Arrow batch;
- *peak memory per worker*: the largest peak RSS of the Python workers (``getrusage`` inside them; the JVM
  is not included);
- *one task retry*: the same job with one Python worker killed mid-chunk (``os._exit``), minus the clean job;
- *skew*: the same rows with the long notes spread over every chunk vs. all in the last chunks.

    python benchmarks/spark_bench.py --bundle models/bio-clinicalbert-shaped --rows 20000 --cores 2
    python benchmarks/spark_bench.py --bundle /tmp/fx/tiny --quick          # a smoke run (seconds of work)

Do not compare numbers from a machine that is busy with something else (load average above the cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from notes_mix import describe, make_mix, write


def single_process(bundle: Path, data: Path, out: Path, window_rows: int) -> float:
    """Seconds for ``clinbert score`` in one process (subprocess, end to end)."""
    cmd = [sys.executable, "-m", "clinbert_onnx", "score", str(bundle), str(data), "--out", str(out)]
    cmd += ["--text-column", "note_text", "--id-column", "note_id", "--window-rows", str(window_rows), "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def spark_job(spark: Any, bundle: Path, data: Path, out: Path, args: argparse.Namespace, **kw: Any) -> Any:
    from clinbert_onnx.spark import SparkScoreOptions, run_spark_score

    shutil.rmtree(out, ignore_errors=True)
    crash = kw.pop("crash_chunk", -1)
    options = SparkScoreOptions(
        bundle=bundle,
        input=str(data),
        out=out,
        text_column="note_text",
        id_column="note_id",
        window_rows=args.window_rows,
        chunk_rows=args.chunk_rows,
        quiet=True,
        **kw,
    )
    return run_spark_score(options, spark=spark, crash_chunk=crash)


def worker_peak_rss_mb(spark: Any, partitions: int) -> float:
    """The largest peak RSS among the Python workers that answer (worker reuse: the ones that scored)."""

    def probe(batches: Any) -> Any:
        import resource

        import pyarrow as pa

        for batch in batches:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            yield pa.RecordBatch.from_pylist([{"mb": float(peak)}] * batch.num_rows)

    rows = spark.range(partitions * 4).repartition(partitions).mapInArrow(probe, "mb double").collect()
    return round(max(r.mb for r in rows), 1)


def session(args: argparse.Namespace, **conf: str) -> tuple[Any, float]:
    from clinbert_onnx.spark import build_session

    start = time.perf_counter()
    spark = build_session(args.master, app_name="clinbert-spark-bench", conf={"spark.ui.enabled": "false", **conf})
    return spark, time.perf_counter() - start


def rate(rows: int, tokens: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1),
        "tokens_per_s": round(tokens / seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--cores", type=int, default=2, help="cores for both sides (local[N])")
    ap.add_argument("--window-rows", type=int, default=1024)
    ap.add_argument("--chunk-rows", type=int, help="rows per chunk (default: rows / (4 x cores), whole batches)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: few rows, one extra session")
    ap.add_argument("--json", type=Path, default=Path("bench_out/spark_bench.json"))
    args = ap.parse_args()
    if args.quick:
        args.rows, args.window_rows = min(args.rows, 240), min(args.window_rows, 32)
    if args.chunk_rows is None:
        per = max(args.window_rows, args.rows // (4 * args.cores))
        args.chunk_rows = -(-per // args.window_rows) * args.window_rows
    args.master = f"local[{args.cores},2]"  # two attempts per task: the retry measurement needs one
    work = Path(tempfile.mkdtemp(prefix="spark-bench-"))
    result: dict[str, Any] = {"rows": args.rows, "cores": args.cores, "window_rows": args.window_rows}
    result["chunk_rows"] = args.chunk_rows
    try:
        kinds, texts, counts = make_mix(args.bundle, args.rows)
        result["mix"] = describe(kinds, counts)
        tokens = int(sum(counts))
        data = work / "notes.parquet"
        write(data, texts)

        single = single_process(args.bundle, data, work / "single.parquet", args.window_rows)
        result["single_process"] = rate(args.rows, tokens, single)

        spark, started = session(args)
        from clinbert_onnx.spark import score

        first = time.perf_counter()
        one = spark.createDataFrame([("a", "First task: start a worker and load the model.")], "id string, text string")
        score(one, args.bundle).collect()
        result["session"] = {"start_s": round(started, 2), "first_task_s": round(time.perf_counter() - first, 2)}

        cold = spark_job(spark, args.bundle, data, work / "cold", args)
        warm = spark_job(spark, args.bundle, data, work / "warm", args)
        result["spark_cold"] = rate(args.rows, tokens, cold.seconds)
        result["spark_warm"] = rate(args.rows, tokens, warm.seconds)
        result["ratio_warm"] = round(single / warm.seconds, 3)
        result["ratio_cold"] = round(single / cold.seconds, 3)
        result["peak_rss_per_worker_mb"] = worker_peak_rss_mb(spark, args.cores)

        retried = spark_job(spark, args.bundle, data, work / "retry", args, crash_chunk=0)
        result["one_retry"] = {"extra_s": round(retried.seconds - warm.seconds, 2), "retried": retried.retried}

        order = sorted(range(len(texts)), key=lambda i: counts[i])  # every long note in the last chunks
        skewed = work / "skewed.parquet"
        write(skewed, [texts[i] for i in order])
        result["skew"] = {
            "spread_s": round(warm.seconds, 2),
            "long_notes_together_s": round(spark_job(spark, args.bundle, skewed, work / "skew", args).seconds, 2),
        }

        frame = spark.read.parquet(str(data))
        batches = {}
        for n in (256, 1024) if args.quick else (256, 1024, 4096):
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(n))
            start = time.perf_counter()
            score(frame.repartition(args.cores * 4), args.bundle, text_col="note_text", id_col="note_id").write.format(
                "noop"
            ).mode("overwrite").save()
            batches[str(n)] = rate(args.rows, tokens, time.perf_counter() - start)
        result["max_records_per_batch"] = batches
        spark.stop()

        grid = {}
        settings = [("2", None)] if args.quick else [("1", None), ("1", 2), ("2", None)]
        for cpus, threads in settings:
            spark, _ = session(args, **{"spark.task.cpus": cpus})
            spark_job(spark, args.bundle, data, work / "grid", args, threads=threads)  # warm the workers
            job = spark_job(spark, args.bundle, data, work / "grid", args, threads=threads)
            grid[f"task.cpus={cpus} threads={threads or cpus}"] = rate(args.rows, tokens, job.seconds)
            spark.stop()
        result["task_cpus_x_threads"] = grid
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
