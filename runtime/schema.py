"""The bundle schema: every manifest key and every graph tensor name, in one module.

A bundle's ``manifest.json`` is a serialised :class:`Manifest`. Each record is a frozen dataclass whose field
names are the JSON keys: ``to_dict`` writes the current format (:data:`FORMAT_VERSION`), ``from_dict`` reads
it and every older version in :data:`READABLE_VERSIONS`, so bundles written before a format change still load.
Keys a record does not know are kept in its ``extra`` and written back unchanged, so a newer exporter's
additions survive ``clinbert quantize``. ``docs/bundle-format.md`` documents every field; a test holds the two
together. Standard library only: the runtime imports this module.

Format versions: a reader refuses a ``format_version`` outside :data:`READABLE_VERSIONS` and ignores keys it does
not know, so fields are added without a new version when an older reader stays correct by ignoring them; the
version goes up when it would not. Within version 1, ``task`` was added (0.2): a manifest written before it
gets its task from ``model.has_mlm_head`` (fill-mask with a head, else feature-extraction), as older readers do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import BundleError
from .records import NOT_A_KEY, OMIT_NONE, Record, as_object

FORMAT_NAME = "clinbert-onnx-bundle"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"

# ------------------------------------------------------------------------------------------------ graph names
#: Graph inputs (int64). ``mask_positions`` holds flat indices ``row * padded_length + position``.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"
MASK_POSITIONS = "mask_positions"
#: Graph outputs (float32).
LAST_HIDDEN_STATE = "last_hidden_state"
MEAN_POOLED = "mean_pooled"
MASK_LOGITS = "mask_logits"
#: Classifier logits: ``[batch, seq, labels]`` for token classification, ``[batch, labels]`` for text classification.
LOGITS = "logits"
ENCODER_INPUTS = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)
MASK_POSITIONS_LAYOUT = "int64 [num_masks]: flat indices row * padded_length + position"

# ------------------------------------------------------------------------------------------------ engines
ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"

# ------------------------------------------------------------------------------------------------ tasks
FEATURE_EXTRACTION = "feature-extraction"
FILL_MASK = "fill-mask"
TOKEN_CLASSIFICATION = "token-classification"
TEXT_CLASSIFICATION = "text-classification"
#: Tasks whose bundles carry a classifier head (manifest key ``head``).
CLASSIFIER_TASKS = (TOKEN_CLASSIFICATION, TEXT_CLASSIFICATION)
#: Reserved for heads a later version adds; a bundle naming one is refused by this version.
PLANNED_TASKS: tuple[str, ...] = ()
#: Scoring functions of a classifier head (as transformers' text-classification pipeline names them).
SCORE_FUNCTIONS = ("softmax", "sigmoid", "none")


@dataclass(frozen=True)
class TaskSpec:
    """What a task's graph looks like: the transformers class exported, its inputs and outputs.

    Every task also serves embeddings (``last_hidden_state`` and ``mean_pooled`` are always outputs).
    """

    name: str
    architecture: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


TASKS: dict[str, TaskSpec] = {
    FEATURE_EXTRACTION: TaskSpec(FEATURE_EXTRACTION, "BertModel", ENCODER_INPUTS, (LAST_HIDDEN_STATE, MEAN_POOLED)),
    FILL_MASK: TaskSpec(
        FILL_MASK,
        "BertForMaskedLM",
        (*ENCODER_INPUTS, MASK_POSITIONS),
        (LAST_HIDDEN_STATE, MEAN_POOLED, MASK_LOGITS),
    ),
    TOKEN_CLASSIFICATION: TaskSpec(
        TOKEN_CLASSIFICATION, "BertForTokenClassification", ENCODER_INPUTS, (LAST_HIDDEN_STATE, MEAN_POOLED, LOGITS)
    ),
    TEXT_CLASSIFICATION: TaskSpec(
        TEXT_CLASSIFICATION, "BertForSequenceClassification", ENCODER_INPUTS, (LAST_HIDDEN_STATE, MEAN_POOLED, LOGITS)
    ),
}


# ------------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class FileEntry(Record):
    """One file of the bundle: ``size`` in bytes and ``sha256`` (hex) of its content."""

    size: int
    sha256: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceInfo(Record):
    """Where the weights came from. ``model_id`` is None for a local folder (then ``local_path`` is set)."""

    model_id: str | None = None
    revision: str | None = None
    local_path: str | None = None
    weights_format: str = ""
    weights_sha256: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo(Record):
    """The exported network's shape; ``decoder_tied_to_embeddings`` is None without a masked-LM head."""

    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    max_position_embeddings: int
    has_mlm_head: bool
    decoder_tied_to_embeddings: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenizerInfo(Record):
    """``tokenizer.json``'s casing and special tokens. ``mask_token_id`` is -1 when there is no mask token."""

    file: str
    lowercase: bool
    max_length: int
    cls_token_id: int
    sep_token_id: int
    pad_token_id: int
    mask_token_id: int
    unk_token_id: int
    mask_token: str
    lowercase_source: str | None = None
    vocab_uppercase_share: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadInfo(Record):
    """A fine-tuned classifier head (token- and text-classification bundles): ``labels`` is ``id2label`` in id
    order; ``function`` the default scoring function (chosen from ``problem_type`` and the number of labels as
    transformers' pipeline chooses it); ``scheme`` the token label scheme ("BIO", "BILOU", "BIOES" or "other");
    ``ignore_labels`` the labels token classification leaves out by default ("O" and pseudo-labels such as X)."""

    labels: tuple[str, ...]
    function: str
    problem_type: str | None = None
    scheme: str | None = field(default=None, metadata=OMIT_NONE)
    ignore_labels: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphInfo(Record):
    """The graph's input and output tensor names; ``mask_positions`` describes that input when present."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    mask_positions: str | None = field(default=None, metadata=OMIT_NONE)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_task(cls, task: str) -> GraphInfo:
        spec = TASKS[task]
        layout = MASK_POSITIONS_LAYOUT if MASK_POSITIONS in spec.inputs else None
        return cls(inputs=spec.inputs, outputs=spec.outputs, mask_positions=layout)


@dataclass(frozen=True)
class RecipeInfo(Record):
    """The quantization recipe that built a variant (``quantize/recipes.py``'s ``QuantRecipe``)."""

    name: str
    precision: str
    #: int8 only: "per-token" (one activation scale per token: batch-invariant) or "per-tensor" (ONNX Runtime's
    #: dynamic quantization, one scale per batch tensor: a text's result moves with its batch-mates).
    activations: str | None = field(default=None, metadata=OMIT_NONE)
    #: per-token only: SmoothQuant alpha used with the shipped calibration set (0 = none).
    smoothing: float | None = field(default=None, metadata=OMIT_NONE)
    #: sha256 of the calibration sentences the smoothing factors came from.
    calibration_sha256: str | None = field(default=None, metadata=OMIT_NONE)
    #: False for the batch-dependent opt-in recipes; absent in bundles older than this key (they are dynamic).
    batch_invariant: bool | None = field(default=None, metadata=OMIT_NONE)
    per_channel: bool | None = field(default=None, metadata=OMIT_NONE)
    quantize_attention: bool | None = field(default=None, metadata=OMIT_NONE)
    quantize_embeddings: bool | None = field(default=None, metadata=OMIT_NONE)
    nodes_to_exclude: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    decoder: str | None = field(default=None, metadata=OMIT_NONE)
    method: str | None = field(default=None, metadata=OMIT_NONE)
    #: The quantizer and its version (e.g. "nncf 3.4.0") where not ONNX Runtime's own tooling.
    quantizer: str | None = field(default=None, metadata=OMIT_NONE)
    #: Static INT8: calibration sentences the fixed activation ranges were measured on.
    calibration_sentences: int | None = field(default=None, metadata=OMIT_NONE)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Parity(Record):
    """FP32 ONNX against PyTorch at export: worst absolute differences and the tolerance they passed."""

    max_abs_diff_hidden: float
    tolerance: float
    max_abs_diff_mask_logits: float | None = field(default=None, metadata=OMIT_NONE)
    max_abs_diff_logits: float | None = field(default=None, metadata=OMIT_NONE)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        """The measured differences by key (the tolerance left out)."""
        return {k: v for k, v in self.to_dict().items() if k.startswith("max_abs_diff") and v is not None}


@dataclass(frozen=True)
class Quality(Record):
    """The accuracy gate's report for a variant against ``reference`` on the probe set.

    Figures a bundle cannot have are absent (fill-mask figures without a masked-LM head); ``passed`` is None
    and ``note`` says why when the gate did not run.
    """

    passed: bool | None
    missed: tuple[str, ...] = ()
    reference: str | None = field(default=None, metadata=OMIT_NONE)
    device: str | None = field(default=None, metadata=OMIT_NONE)
    probe_sentences: int | None = field(default=None, metadata=OMIT_NONE)
    embedding_cosine_mean: float | None = field(default=None, metadata=OMIT_NONE)
    embedding_cosine_min: float | None = field(default=None, metadata=OMIT_NONE)
    fill_mask_probes: int | None = field(default=None, metadata=OMIT_NONE)
    fill_mask_top1_agreement: float | None = field(default=None, metadata=OMIT_NONE)
    fill_mask_top5_overlap: float | None = field(default=None, metadata=OMIT_NONE)
    #: A probe text alone vs at a random place among random companions: worst element difference of the
    #: embedding, lowest cosine, and worst top-5 fill-mask score difference.
    batch_drift_max: float | None = field(default=None, metadata=OMIT_NONE)
    batch_cosine_min: float | None = field(default=None, metadata=OMIT_NONE)
    batch_drift_fill_mask_score_max: float | None = field(default=None, metadata=OMIT_NONE)
    #: Whether the drift was judged (the recipe claims batch invariance) or only reported (an opt-in).
    batch_invariant: bool | None = field(default=None, metadata=OMIT_NONE)
    #: Classifier bundles: the figures of the task's own gate (``quantize/task_gate.py``) on the probe text,
    #: whose sha256 is ``probe_sha256`` (the shipped probe set, or the file given with ``--probe``).
    probe_sha256: str | None = field(default=None, metadata=OMIT_NONE)
    probe_texts: int | None = field(default=None, metadata=OMIT_NONE)
    probe_pairs: int | None = field(default=None, metadata=OMIT_NONE)
    reference_entities: int | None = field(default=None, metadata=OMIT_NONE)
    entity_f1: float | None = field(default=None, metadata=OMIT_NONE)
    entity_recall: float | None = field(default=None, metadata=OMIT_NONE)
    label_top1_agreement: float | None = field(default=None, metadata=OMIT_NONE)
    probability_change_mean: float | None = field(default=None, metadata=OMIT_NONE)
    rank_correlation_mean: float | None = field(default=None, metadata=OMIT_NONE)
    rerank_top1_agreement: float | None = field(default=None, metadata=OMIT_NONE)
    thresholds: Mapping[str, float] | None = field(default=None, metadata=OMIT_NONE)
    note: str | None = field(default=None, metadata=OMIT_NONE)
    #: The inference engine the gate ran the variant on (absent: ONNX Runtime) and the CPU it ran on.
    engine: str | None = field(default=None, metadata=OMIT_NONE)
    cpu: str | None = field(default=None, metadata=OMIT_NONE)
    cpu_flags: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    extra: Mapping[str, Any] = field(default_factory=dict)

    #: The measured agreement figures, in the order reports print them.
    FIGURES = (
        "embedding_cosine_mean",
        "embedding_cosine_min",
        "fill_mask_top1_agreement",
        "fill_mask_top5_overlap",
        "entity_f1",
        "entity_recall",
        "label_top1_agreement",
        "probability_change_mean",
        "rank_correlation_mean",
        "rerank_top1_agreement",
    )

    def figures(self) -> dict[str, float]:
        return {k: v for k in self.FIGURES if (v := getattr(self, k)) is not None}


@dataclass(frozen=True)
class VariantInfo(Record):
    """One ONNX file of the bundle: graph ``file``, its weights ``data`` (None: self-contained), and facts.
    ``name`` is the variant's key in ``variants``."""

    file: str
    precision: str
    devices: tuple[str, ...] = ("cpu",)
    data: str | None = field(default=None, metadata=OMIT_NONE)
    fused_ops: Mapping[str, int] = field(default_factory=dict)
    recipe: RecipeInfo | None = None
    parity: Parity | None = field(default=None, metadata=OMIT_NONE)
    quality: Quality | None = field(default=None, metadata=OMIT_NONE)
    #: Inference engines the variant is built for, best first (absent: ONNX Runtime only; see ``runs_on``).
    engines: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    name: str = field(default="", metadata=NOT_A_KEY)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def runs_on(self, engine: str) -> bool:
        """Whether ``engine`` runs this variant: the ones it lists; without a list ONNX Runtime, and OpenVINO
        for fp32 (it reads the fused FP32 graph's contrib ops, not the int8 variants' QGemm/QAttention)."""
        if self.engines is not None:
            return engine in self.engines
        return engine == ONNXRUNTIME or (engine == OPENVINO and self.precision == "fp32")

    @property
    def files(self) -> tuple[str, ...]:
        """The graph file and, when the weights are stored beside it, their external-data file."""
        return (self.file, self.data) if self.data else (self.file,)

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> VariantInfo:
        return replace(super().from_dict(data, where), name=where.rsplit(".", 1)[-1])


@dataclass(frozen=True)
class Manifest(Record):
    """``manifest.json``. ``to_dict`` writes ``format`` and the current ``format_version`` first."""

    RESERVED = ("format", "format_version")

    created: str
    task: str
    source: SourceInfo
    versions: Mapping[str, str | None]
    opset: int
    model: ModelInfo
    tokenizer: TokenizerInfo
    graph: GraphInfo
    variants: Mapping[str, VariantInfo]
    files: Mapping[str, FileEntry]
    head: HeadInfo | None = field(default=None, metadata=OMIT_NONE)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **super().to_dict()}

    def with_variant(self, variant: VariantInfo) -> Manifest:
        return replace(self, variants={**self.variants, variant.name: variant})

    def with_files(self, files: Mapping[str, FileEntry]) -> Manifest:
        return replace(self, files=dict(files))

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Manifest:
        obj = dict(as_object(data, "."))
        if obj.get("format") != FORMAT_NAME:
            raise BundleError(f"not a {FORMAT_NAME} manifest")
        version = obj.get("format_version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            readable = ", ".join(map(str, READABLE_VERSIONS))
            raise BundleError(f"format_version {version} is not one this clinbert-onnx reads ({readable})")
        if "task" not in obj:  # written before `task` existed: the masked-LM head decides, as it did then
            has_head = as_object(obj.get("model"), "model").get("has_mlm_head")
            obj["task"] = FILL_MASK if has_head is True else FEATURE_EXTRACTION
        task = obj.get("task")
        if task not in TASKS:
            raise BundleError(f"task {task!r} needs a newer clinbert-onnx (this one runs {', '.join(TASKS)})")
        obj.setdefault("graph", GraphInfo.for_task(task).to_dict())
        manifest = super().from_dict(obj, where)
        if task in CLASSIFIER_TASKS and (manifest.head is None or not manifest.head.labels):
            raise BundleError(f"a {task} manifest needs 'head' with its labels")
        return manifest


#: Every record with the manifest path it is found at (for documentation and tests).
RECORDS: dict[str, type[Record]] = {
    "manifest": Manifest,
    "source": SourceInfo,
    "model": ModelInfo,
    "tokenizer": TokenizerInfo,
    "graph": GraphInfo,
    "head": HeadInfo,
    "variants.NAME": VariantInfo,
    "variants.NAME.recipe": RecipeInfo,
    "variants.NAME.parity": Parity,
    "variants.NAME.quality": Quality,
    "files.NAME": FileEntry,
}
