"""Tiny fine-tuned derivatives for the tests: synthetic clinical sentences from templates, trained in seconds.

- ``ner``: BIO labels with ``O`` at a non-zero id and 64 positions (long notes need many windows);
- ``bilou``: BILOU labels plus the pseudo-label ``X`` on continuation word pieces (old de-identification style);
- ``assertion``: present / absent / possible (negation cues), a Bio_ClinicalBERT-style checkpoint (vocab.txt
  only: transformers builds a lowercasing tokenizer over the cased vocabulary, which the derivative keeps);
- ``multilabel``: four document labels, ``problem_type="multi_label_classification"`` (sigmoid);
- ``reranker``: one logit on (query, passage) pairs;
- ``nli``: MedNLI-style premise / hypothesis pairs, three labels (entailment, contradiction, neutral).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

DRUGS = [
    "piperacillin-tazobactam",
    "amoxicillin",
    "vancomycin",
    "heparin",
    "metoprolol",
    "lisinopril",
    "furosemide",
    "ceftriaxone",
    "warfarin",
    "Zosyn",
]
DOSES = ["4.5 g", "500 mg", "1 g", "5000 units", "25 mg", "10 mg", "40 mg", "2 g", "5 mg"]
ROUTES = ["IV", "PO", "SC", "IM", "intravenously", "by mouth"]
FREQS = ["q8h", "daily", "twice daily", "q6h", "at bedtime"]
PROBLEMS = [
    "chest pain",
    "pneumonia",
    "shortness of breath",
    "fever",
    "acute kidney injury",
    "atrial fibrillation",
    "cellulitis",
    "hyperkalemia",
]
FILLERS = [
    "Vital signs were stable overnight.",
    "The patient ambulated in the hallway.",
    "Family was updated at the bedside.",
    "Labs were reviewed this morning.",
]
CUES = {
    "present": ["reports", "presents with", "complains of"],
    "absent": ["denies", "no evidence of", "negative for"],
    "possible": ["possible", "concern for", "rule out"],
}
DOC_LABELS = ["infection", "cardiac", "renal", "anticoagulation"]
TOPIC = {
    "pneumonia": "infection",
    "cellulitis": "infection",
    "fever": "infection",
    "chest pain": "cardiac",
    "atrial fibrillation": "cardiac",
    "acute kidney injury": "renal",
    "hyperkalemia": "renal",
    "heparin": "anticoagulation",
    "warfarin": "anticoagulation",
}

Words = list[tuple[str, str | None]]  # (word group, entity type or None)


def med_sentence(rng: random.Random) -> Words:
    return [
        (rng.choice(["Started on", "Continue", "Give", "Restarted"]), None),
        (rng.choice(DRUGS), "DRUG"),
        (rng.choice(DOSES), "DOSE"),
        (rng.choice(ROUTES), "ROUTE"),
        (rng.choice(FREQS) + ".", None),
    ]


def problem_sentence(rng: random.Random) -> Words:
    return [
        (rng.choice(["Patient", "He", "She"]) + " " + rng.choice(CUES["present"]), None),
        (rng.choice(PROBLEMS), "PROBLEM"),
        (".", None),
    ]


def sentence(rng: random.Random) -> Words:
    r = rng.random()
    if r < 0.5:
        return med_sentence(rng)
    if r < 0.85:
        return problem_sentence(rng)
    return [(rng.choice(FILLERS), None)]


def text_of(words: Words) -> str:
    return " ".join(w for w, _ in words).replace(" .", ".")


def note(rng: random.Random, sentences: int) -> tuple[str, list[Words]]:
    parts = [sentence(rng) for _ in range(sentences)]
    return " ".join(text_of(p) for p in parts), parts


def vocab_corpus() -> list[str]:
    rng = random.Random(1)
    lines = [text_of(sentence(rng)) for _ in range(400)]
    lines += [f"{rng.choice([c for cues in CUES.values() for c in cues])} {p}" for p in PROBLEMS for _ in range(3)]
    return lines


def _vocab(folder: Path, size: int) -> None:
    import builders
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=size, special_tokens=builders.SPECIALS, min_frequency=1)
    tok.train_from_iterator(builders.corpus()[:200] + vocab_corpus(), trainer)
    # the trainer's id order (and, at its size cut-off, a few tokens) varies from run to run: ids in sorted order
    # make the checkpoints, trained from seeded weights, the same on every machine for the same token set
    words = builders.SPECIALS + sorted(set(tok.get_vocab()) - set(builders.SPECIALS))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")


def _tokenizer(folder: Path, max_positions: int, save: bool) -> Any:
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=False, model_max_length=max_positions)
    if save:
        tok.save_pretrained(folder)
    return tok


def _config(num_labels: int, max_positions: int, vocab: int, labels: list[str] | None, **extra: Any) -> Any:
    from transformers import BertConfig

    names = labels or [f"LABEL_{i}" for i in range(num_labels)]
    return BertConfig(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=max_positions,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **extra,
    )


def _train(model: Any, batches: list[dict[str, Any]], steps: int, lr: float = 3e-3) -> None:
    import torch

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend (16x slower on a busy 2-core machine)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        model.train()
        for step in range(steps):
            out = model(**batches[step % len(batches)])
            out.loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
    finally:
        torch.set_num_threads(threads)


def _token_labels(words: Words, scheme: str, tok: Any) -> tuple[list[str], list[str]]:
    """Word pieces of the sentence and their labels (BIO, or BILOU with X on continuation pieces)."""
    pieces: list[str] = []
    labels: list[str] = []
    for group, kind in words:
        parts = tok.tokenize(group)
        words_in = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(group)
        k = 0
        for w, (word, _) in enumerate(words_in):
            sub = tok.tokenize(word)
            for j, piece in enumerate(sub):
                pieces.append(piece)
                if kind is None:
                    labels.append("O")
                elif scheme == "BIO":
                    labels.append(("B-" if w == 0 and j == 0 else "I-") + kind)
                elif j > 0:
                    labels.append("X")
                elif len(words_in) == 1:
                    labels.append("U-" + kind)
                else:
                    first, last = w == 0, w == len(words_in) - 1
                    labels.append(("B-" if first else "L-" if last else "I-") + kind)
            k += len(sub)
        if k != len(parts):
            raise RuntimeError("pre-tokenization disagrees with tokenization")
    return pieces, labels


NER_LABELS = ["B-DRUG", "I-DRUG", "B-DOSE", "I-DOSE", "B-ROUTE", "I-ROUTE", "O", "B-PROBLEM", "I-PROBLEM"]
BILOU_LABELS = [
    "X",
    "B-DRUG",
    "I-DRUG",
    "L-DRUG",
    "U-DRUG",
    "B-DOSE",
    "I-DOSE",
    "L-DOSE",
    "U-DOSE",
    "O",
    "B-ROUTE",
    "L-ROUTE",
    "U-ROUTE",
    "B-PROBLEM",
    "I-PROBLEM",
    "L-PROBLEM",
    "U-PROBLEM",
]


def token_classifier(folder: Path, scheme: str = "BIO", max_positions: int = 64, steps: int = 300) -> Path:
    import torch
    from transformers import BertForTokenClassification

    labels = NER_LABELS if scheme == "BIO" else BILOU_LABELS
    _vocab(folder, 300)  # small: drug names split into word pieces (sub-word aggregation, X labels)
    tok = _tokenizer(folder, max_positions, save=True)
    torch.manual_seed(0)
    model = BertForTokenClassification(_config(len(labels), max_positions, tok.vocab_size, labels))
    rng = random.Random(2)
    batches = []
    for _ in range(20):
        rows = []
        for _ in range(16):
            # several sentences cropped to a random window: every position is trained, and a window may
            # start or end mid-sentence, as the windows of a long note do
            pieces: list[str] = []
            tags: list[str] = []
            while len(pieces) < max_positions:
                more_pieces, more_tags = _token_labels(sentence(rng), scheme, tok)
                pieces, tags = pieces + more_pieces, tags + more_tags
            width = rng.randint(8, max_positions - 2)
            start = rng.randint(0, len(pieces) - width) if rng.random() < 0.7 else 0
            pieces, tags = pieces[start : start + width], tags[start : start + width]
            ids = tok.convert_tokens_to_ids(pieces)
            rows.append(([tok.cls_token_id, *ids, tok.sep_token_id], [-100, *[labels.index(t) for t in tags], -100]))
        width = max(len(r[0]) for r in rows)
        batches.append(
            {
                "input_ids": torch.tensor([r[0] + [0] * (width - len(r[0])) for r in rows]),
                "attention_mask": torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows]),
                "labels": torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows]),
            }
        )
    _train(model, batches, steps)
    model.save_pretrained(folder)
    return folder


def _sequence_classifier(
    folder: Path,
    examples: list[tuple[Any, list[float] | int]],
    labels: list[str] | None,
    num_labels: int,
    steps: int,
    save_tokenizer: bool = True,
    **extra: Any,
) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    _vocab(folder, 600)
    tok = _tokenizer(folder, 128, save=save_tokenizer)
    torch.manual_seed(0)
    model = BertForSequenceClassification(_config(num_labels, 128, tok.vocab_size, labels, **extra))
    batches = []
    for start in range(0, len(examples), 16):
        chunk = examples[start : start + 16]
        firsts = [x[0] if isinstance(x, tuple) else x for x, _ in chunk]
        seconds = [x[1] for x, _ in chunk if isinstance(x, tuple)] or None
        enc = tok(firsts, seconds, padding=True, return_tensors="pt")
        target = [y for _, y in chunk]
        dtype = torch.long if isinstance(target[0], int) else torch.float
        batches.append({**enc, "labels": torch.tensor(target, dtype=dtype)})
    _train(model, batches, steps)
    if "problem_type" not in extra:
        model.config.problem_type = None  # training a one-logit head sets "regression"; a reranker has none
    model.save_pretrained(folder)
    if not save_tokenizer:
        (folder / "tokenizer_config.json").unlink(missing_ok=True)
    return folder


ASSERTION_LABELS = ["present", "absent", "possible"]


def assertion_classifier(folder: Path, steps: int = 150) -> Path:
    rng = random.Random(3)
    examples: list[tuple[Any, Any]] = []
    for _ in range(320):
        label = rng.randrange(3)
        cue = rng.choice(CUES[ASSERTION_LABELS[label]])
        examples.append((f"{rng.choice(['Patient', 'He', 'She'])} {cue} {rng.choice(PROBLEMS)}.", label))
    return _sequence_classifier(
        folder, examples, ASSERTION_LABELS, 3, steps, save_tokenizer=False, problem_type="single_label_classification"
    )


def multilabel_classifier(folder: Path, steps: int = 150) -> Path:
    rng = random.Random(4)
    examples: list[tuple[Any, Any]] = []
    for _ in range(320):
        text, parts = note(rng, rng.randint(1, 3))
        present = {TOPIC[w] for p in parts for w, _ in p if w in TOPIC}
        examples.append((text, [1.0 if label in present else 0.0 for label in DOC_LABELS]))
    return _sequence_classifier(folder, examples, DOC_LABELS, 4, steps, problem_type="multi_label_classification")


def reranker(folder: Path, steps: int = 150) -> Path:
    rng = random.Random(5)
    examples: list[tuple[Any, Any]] = []
    for _ in range(320):
        query = rng.choice(PROBLEMS)
        other = rng.choice([p for p in PROBLEMS if p != query])
        positive = rng.random() < 0.5
        passage = f"{rng.choice(['Patient', 'She'])} {rng.choice(CUES['present'])} {query if positive else other}."
        examples.append(((query, passage), [1.0 if positive else 0.0]))
    return _sequence_classifier(folder, examples, None, 1, steps)


NLI_LABELS = ["entailment", "contradiction", "neutral"]


def nli_classifier(folder: Path, steps: int = 200) -> Path:
    """(premise, hypothesis) → entailment / contradiction / neutral, learnable by a tiny model from both texts:
    the premise's cue decides entailment ("reports fever") or contradiction ("denies fever") of "The patient
    has fever.", and a hypothesis unrelated to the problem (a filler sentence) is neutral."""
    rng = random.Random(6)
    examples: list[tuple[Any, Any]] = []
    for _ in range(320):
        label = rng.randrange(3)
        problem = rng.choice(PROBLEMS)
        cue = rng.choice(CUES[rng.choice(["present", "absent"]) if label == 2 else ("present", "absent")[label]])
        premise = f"{rng.choice(['Patient', 'He', 'She'])} {cue} {problem}."
        hypothesis = rng.choice(FILLERS) if label == 2 else f"The patient has {problem}."
        examples.append(((premise, hypothesis), label))
    return _sequence_classifier(folder, examples, NLI_LABELS, 3, steps, problem_type="single_label_classification")


BUILDERS = {
    "ner": lambda p: token_classifier(p, "BIO", 64),
    "bilou": lambda p: token_classifier(p, "BILOU", 128),
    "assertion": assertion_classifier,
    "multilabel": multilabel_classifier,
    "reranker": reranker,
    "nli": nli_classifier,
}


def cached(name: str) -> Path:
    """The checkpoint ``name`` (see ``BUILDERS``), trained once per version of this file and kept in
    ``$CLINBERT_TEST_CACHE`` (default ``~/.cache/clinbert-onnx-tests``): training is the slow part."""
    import contextlib
    import hashlib
    import os
    import shutil
    import tempfile

    import builders

    source = Path(__file__).read_bytes() + Path(builders.__file__).read_bytes()
    key = hashlib.sha256(source).hexdigest()[:16]
    root = Path(os.environ.get("CLINBERT_TEST_CACHE", Path.home() / ".cache" / "clinbert-onnx-tests")) / key
    target = root / name
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    BUILDERS[name](scratch / name)
    with contextlib.suppress(OSError):  # built concurrently by another run: keep theirs
        (scratch / name).rename(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target
