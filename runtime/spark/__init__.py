"""Scoring on Apache Spark: the same bundle, results and batching as ``clinbert score``, on a cluster.

>>> from clinbert_onnx.spark import score
>>> out = score(df, bundle="/Volumes/clin/models/bio-clinicalbert", text_col="note_text", id_col="note_id")
>>> out.write.parquet("s3a://…/embeddings")     # id, embedding array<float>, windows, tokens, error

- :func:`score`: ``DataFrame.mapInArrow`` (Arrow in, Arrow out), one model per Python worker;
- :func:`embed_udf`: a pandas UDF returning a struct, for SQL;
- :func:`run_spark_score`: ``clinbert score --engine spark``, resumable chunk by chunk;
- :func:`build_session`: a session whose workers run this interpreter, after checking Java 17+.

pyspark (the ``[spark]`` extra) is imported only inside these functions: importing this package needs none.
"""

from __future__ import annotations

from .api import score
from .job import SparkScoreOptions, SparkScoreSummary, run_spark_score
from .session import build_session, check_java
from .udf import embed_udf

__all__ = [
    "SparkScoreOptions",
    "SparkScoreSummary",
    "build_session",
    "check_java",
    "embed_udf",
    "run_spark_score",
    "score",
]
