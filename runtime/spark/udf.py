"""``embed_udf``: a pandas UDF returning a struct, for SQL users.

No ``from __future__ import annotations`` here: Spark reads the UDF's type hints (pd.Series → pd.DataFrame) as
objects to decide the kind of pandas UDF.
"""

from pathlib import Path
from typing import Any

from ..errors import require
from ..tasks import EmbedOptions
from .api import model_spec, spark_result_fields, task_spec
from .worker import get_model, score_column


def embed_udf(
    bundle: str | Path,
    *,
    options: EmbedOptions | None = None,
    device: str = "auto",
    variant: str | None = None,
    threads: int | None = None,
    verify: bool = True,
    ship: str = "path",
    spark: Any = None,
) -> Any:
    """A pandas UDF: text → struct<embedding array<float>, windows int, tokens int, error string>.

    >>> spark.udf.register("embed", embed_udf("/Volumes/clin/models/bio-clinicalbert"))
    >>> spark.sql("SELECT note_id, embed(note_text).embedding AS embedding FROM notes")

    or ``df.select(embed_udf(bundle)("note_text").alias("e"))``. Same model cache, threads, bundle checks and
    error reasons as :func:`clinbert_onnx.spark.score`; ``ship="files"`` needs ``spark`` (the active session
    otherwise).
    """
    require("pyspark", "spark")
    require("pandas", "spark")
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StructType

    if ship == "files" and spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    spec = task_spec("embed", options)
    model = model_spec(
        bundle, "embed", spark=spark, ship=ship, device=device, variant=variant, verify=verify, threads=threads
    )
    schema = StructType(spark_result_fields("embed"))
    names = [field.name for field in schema.fields]

    def embed(texts: pd.Series) -> pd.DataFrame:
        columns = score_column(get_model(model), spec, texts.tolist(), "")
        return pd.DataFrame({name: column.to_pylist() for name, column in zip(names, columns, strict=True)})

    return pandas_udf(embed, schema)  # type: ignore[call-overload]
