"""Building a SparkSession for ``clinbert score --engine spark`` (and tests): Java checked first, workers on
this interpreter.

A user's own session (Databricks, ``spark-submit``) is never touched: :func:`clinbert_onnx.spark.score` takes
whatever session the DataFrame has. Only :func:`build_session` starts one, and only it sets ``PYSPARK_PYTHON``
(to the running interpreter, for the time the session is being built; the process environment is restored).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependencyError, require

MIN_JAVA = 17
JAVA_HELP = (
    "Spark needs Java 17 or newer: on Debian/Ubuntu `sudo apt-get install -y openjdk-17-jre-headless` "
    "(or set JAVA_HOME to a Java 17+ installation)"
)
#: Settings every session built here gets (a caller's ``conf`` wins).
DEFAULTS: dict[str, str] = {
    "spark.python.worker.reuse": "true",  # one model load per Python worker, not per task
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "1024",
}
#: For local masters: the driver and its executors talk over the loopback interface only.
LOCAL_NETWORK: dict[str, str] = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def java_command() -> str | None:
    """The ``java`` Spark's launcher will run: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def java_major(version_text: str) -> int | None:
    """The major version in ``java -version`` output: ``"17.0.15"`` → 17, ``"1.8.0_292"`` → 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> int:
    """Raise MissingDependencyError (exit code 7) unless Java 17+ is there; return its major version."""
    java = java_command()
    if java is None:
        where = "JAVA_HOME/bin/java does not exist" if os.environ.get("JAVA_HOME") else "no `java` on PATH"
        raise MissingDependencyError(f"Java not found ({where}). {JAVA_HELP}")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(f"cannot run {java} -version ({type(exc).__name__}). {JAVA_HELP}") from None
    major = java_major(done.stderr + done.stdout)
    if major is None or major < MIN_JAVA:
        found = f"Java {major}" if major is not None else "an unrecognised Java"
        raise MissingDependencyError(f"{java} is {found}. {JAVA_HELP}")
    return major


def parse_conf(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["spark.task.cpus=2", ...]`` → a dict; InputError for an item without ``=``."""
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--spark-conf takes KEY=VALUE; got {pair!r}")
        conf[key.strip()] = value.strip()
    return conf


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ for the block (the JVM and SparkContext read them at start), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def build_session(
    master: str | None = None, *, app_name: str = "clinbert-score", conf: Mapping[str, str] | None = None
) -> Any:
    """A SparkSession (``getOrCreate``) whose Python workers run this interpreter.

    ``master``: e.g. ``"local[8]"``, ``"local-cluster[2,1,1024]"``, ``"spark://host:7077"``; None leaves it to
    ``spark-submit``/the environment. Java is checked first: a missing or old Java is a MissingDependencyError
    with the install command, not a Py4J stack trace.
    """
    require("pyspark", "spark")
    check_java()
    from pyspark.sql import SparkSession

    settings = dict(DEFAULTS)
    env = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    if master is not None and master.startswith("local"):
        settings.update(LOCAL_NETWORK)
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # the standalone workers of local-cluster[...] too
    settings.update(conf or {})
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    with _environment(env):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
