"""``clinbert score``: batch scoring of whole files — streaming, length-aware, resumable.

>>> from clinbert_onnx.score import ScoreOptions, run_score
>>> run_score(ScoreOptions(bundle=Path("models/bio-clinicalbert"), input="notes.parquet",
...                        out=Path("embeddings.parquet"), text_column="note_text", id_column="note_id"))

pyarrow (the ``[score]`` extra) is imported only for .csv/.parquet inputs and .parquet outputs.
"""

from __future__ import annotations

from .options import OutputExistsError, ResumeError, RowError, ScoreOptions
from .runner import ScoreSummary, run_score
from .workers import WorkerError

__all__ = ["OutputExistsError", "ResumeError", "RowError", "ScoreOptions", "ScoreSummary", "WorkerError", "run_score"]
