"""The driver side of :func:`score`: check the request, point executors at the bundle, map the DataFrame."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..bundle import open_bundle
from ..errors import InputError, NoMaskHeadError, require
from ..pooling import POOLINGS
from ..schema import MANIFEST
from ..score.engine import TaskSpec
from ..tasks import EmbedOptions, MaskOptions, check_top_k, get_task
from ..windows import check_long_text
from .worker import SHIP_MODES, ArrowScorer, ModelSpec, manifest_sha256

_TEXT_TYPES = ("string", "varchar", "char")


def task_spec(task: str, options: EmbedOptions | MaskOptions | None) -> TaskSpec:
    """The task and its options, checked here on the driver (not once per executor)."""
    kind = get_task(task)
    if options is None:
        options = kind.options_type()
    if not isinstance(options, kind.options_type) or not isinstance(options, EmbedOptions | MaskOptions):
        raise InputError(f"options for {task!r} must be {kind.options_type.__name__}")
    if isinstance(options, EmbedOptions) and options.pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}; got {options.pooling!r}")
    if isinstance(options, MaskOptions):
        check_top_k(options.top_k)
    check_long_text(options.long_text)
    return TaskSpec(task, options)


def model_spec(
    bundle: str | Path,
    task: str,
    *,
    spark: Any = None,
    ship: str = "path",
    device: str = "auto",
    variant: str | None = None,
    verify: bool = True,
    threads: int | None = None,
) -> ModelSpec:
    """Open the bundle on the driver (it must be readable here too), hash its manifest, and, for
    ``ship="files"``, hand it to ``SparkContext.addArchive`` (each executor fetches and unpacks its own copy
    once; nothing is broadcast)."""
    if ship not in SHIP_MODES:
        raise InputError(f"ship must be one of {', '.join(SHIP_MODES)}; got {ship!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer or None; got {threads!r}")
    path = Path(bundle).resolve()  # executors' working folders differ from the driver's
    opened = open_bundle(path)
    if variant is not None:
        opened.variant(variant)
    if task == "fill-mask" and not opened.has_mlm_head:
        raise NoMaskHeadError(f"bundle {opened.model_id} has no masked-LM head: it serves embeddings only")
    digest = manifest_sha256(path)
    name = path.name
    if ship == "files":
        if spark is None:
            raise InputError("ship='files' needs a SparkSession (SparkContext.addArchive)")
        archive = pack_bundle(path, opened.files, digest)
        spark.sparkContext.addArchive(str(archive))
        name = archive.name
    return ModelSpec(str(path), name, digest, ship, device, variant, verify, threads)


def pack_bundle(path: Path, files: Iterable[str], digest: str) -> Path:
    """The bundle as one uncompressed tar named by its manifest hash (Spark ships local folders only to local
    masters; an archive goes to any executor, fetched once and unpacked there). Made once per bundle version, in
    the temporary folder, and kept: the driver serves it for the application's lifetime."""
    import tarfile
    import tempfile

    target = Path(tempfile.gettempdir()) / "clinbert-spark" / f"clinbert-bundle-{digest[:16]}.tar"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with tarfile.open(tmp, "w") as tar:
        for name in [MANIFEST, *sorted(files)]:
            tar.add(path / name, arcname=name, recursive=False)
    os.replace(tmp, target)
    return target


def spark_result_fields(task: str) -> list[Any]:
    """Spark types of the result columns (``array<float>`` embeddings; see ``worker.result_fields``)."""
    from pyspark.sql.types import (
        ArrayType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        StringType,
        StructField,
        StructType,
    )

    if task == "embed":
        value = StructField("embedding", ArrayType(FloatType()), True)
    else:
        pred = StructType(
            [
                StructField("score", DoubleType()),
                StructField("token", LongType()),
                StructField("token_str", StringType()),
                StructField("sequence", StringType()),
            ]
        )
        value = StructField("predictions", ArrayType(ArrayType(pred)), True)
    return [
        value,
        StructField("windows", IntegerType(), True),
        StructField("tokens", IntegerType(), True),
        StructField("error", StringType(), True),
    ]


def score(
    df: Any,
    bundle: str | Path,
    *,
    text_col: str = "text",
    id_col: str = "id",
    task: str = "embed",
    options: EmbedOptions | MaskOptions | None = None,
    device: str = "auto",
    variant: str | None = None,
    threads: int | None = None,
    verify: bool = True,
    ship: str = "path",
) -> Any:
    """Score a DataFrame's texts on its Spark cluster; returns a DataFrame (lazily, like any transformation).

    Output columns: ``id`` (``id_col``'s values and type), ``embedding`` array<float> (task "embed") or
    ``predictions`` (task "fill-mask": per [MASK], the top-k {score, token, token_str, sequence}), ``windows``,
    ``tokens`` and ``error``: null for a scored row, else why it was not scored (never the text); the result
    columns are null on such rows. One output row per input row.

    ``bundle``: a folder every executor can read at the same path (verified against the manifest's sha256 on
    each executor), or any folder with ``ship="files"`` (packed into one tar and copied to each executor once
    with ``SparkContext.addArchive``; never broadcast).
    ``threads``: ONNX Runtime intra-op threads per task; None follows ``spark.task.cpus``. Rows per Arrow batch,
    which are scored together (sorted by length, batched within the token budget), follow
    ``spark.sql.execution.arrow.maxRecordsPerBatch``.
    """
    require("pyspark", "spark")
    columns = {field.name: field for field in df.schema.fields}
    for label, name in (("text_col", text_col), ("id_col", id_col)):
        if name not in columns:
            raise InputError(f"{label} {name!r} is not a column of the DataFrame (columns: {', '.join(columns)})")
    if text_col == id_col:
        raise InputError("text_col and id_col name the same column")
    if columns[text_col].dataType.typeName() not in _TEXT_TYPES:
        raise InputError(f"column {text_col!r} has type {columns[text_col].dataType.simpleString()}, not string")
    spec = task_spec(task, options)
    model = model_spec(
        bundle,
        task,
        spark=df.sparkSession,
        ship=ship,
        device=device,
        variant=variant,
        verify=verify,
        threads=threads,
    )
    from pyspark.sql.types import StructField, StructType

    schema = StructType([StructField("id", columns[id_col].dataType, True), *spark_result_fields(task)])
    return df.select(id_col, text_col).mapInArrow(ArrowScorer(model, spec, text_col, id_col), schema)
