"""Training a router head on sentence embeddings, and exporting it to ONNX.

The encoder is fixed (the shipped int8 all-MiniLM-L6-v2); a multinomial logistic regression
over its embeddings and one over word n-grams are trained and blended, so training 15k prompts
takes a few minutes on a laptop CPU and operators can train on their own labels (any number of
routes, from ten examples each). The shipped task router is fine-tuned end to end instead
(:mod:`routers.recipes.taskmix`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from routers.calibration import out_of_scope_threshold
from routers.classifier import MODELS_DIR, SHIPPED_PREFIX, blend
from routers.dataset import OUT_OF_SCOPE, Example
from routers.encoder import Encoder
from routers.ngram import NgramScorer

log = logging.getLogger("turnout")
DEFAULT_ENCODER = "minilm-l6"
CACHE_DIR = Path(os.environ.get("TURNOUT_CACHE_DIR", Path.home() / ".cache" / "turnout"))


def split_by_group(examples: list[Example], test_fraction: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Hold out whole groups (prompt templates) per label; a label with under 5 groups is split by row."""
    rng = random.Random(seed)
    by_label: dict[str, dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for example in examples:
        by_label[example.label][example.group].append(example)
    train: list[Example] = []
    test: list[Example] = []
    for groups in by_label.values():
        if len(groups) < 5:
            groups = {f"row-{i}": [e] for i, e in enumerate(e for rows in groups.values() for e in rows)}
        names = sorted(groups)
        rng.shuffle(names)
        wanted = test_fraction * sum(len(rows) for rows in groups.values())
        held = 0
        for name in names:
            target = test if held < wanted else train
            target.extend(groups[name])
            held += len(groups[name]) if target is test else 0
    return train, test


def embed(encoder: Encoder, texts: list[str], batch_size: int = 32) -> NDArray[np.float32]:
    """Embeddings in input order, cached on disk by content (encoding is the slow part)."""
    key = hashlib.sha256(f"{encoder.head_tokens}/{encoder.tail_tokens}\0".encode() + "\0".join(texts).encode())
    cached = CACHE_DIR / f"embeddings-{key.hexdigest()[:24]}.npy"
    if cached.exists():
        return np.load(cached)  # type: ignore[no-any-return]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        out[chunk] = encoder.encode([texts[i] for i in chunk])
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cached, out)
    return out


def fit_head(examples: list[Example], embeddings: NDArray[np.float32], c: float = 4.0) -> LogisticRegression:
    """Classes weighted to balance: the training mix of labels says nothing about production traffic."""
    head = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    head.fit(embeddings, [e.label for e in examples], sample_weight=[e.weight for e in examples])
    return head


def export_head(head: LogisticRegression, path: Path) -> None:
    from skl2onnx import to_onnx

    sample = np.zeros((1, head.coef_.shape[1]), dtype=np.float32)
    model = to_onnx(head, sample, options={id(head): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    path.write_bytes(model.SerializeToString())


@dataclass
class Experts:
    """The two scorers a trained model blends: the head over sentence embeddings, and n-grams."""

    head: LogisticRegression
    ngram: NgramScorer | None

    @classmethod
    def fit(cls, examples: list[Example], embeddings: NDArray[np.float32], c: float, ngram: bool) -> Experts:
        head = fit_head(examples, embeddings, c)
        labels = [str(label) for label in head.classes_]
        texts, truth, weights = [e.prompt for e in examples], [e.label for e in examples], [e.weight for e in examples]
        return cls(head, NgramScorer.fit(texts, truth, weights, labels) if ngram else None)

    def scores(self, texts: list[str], embeddings: NDArray[np.float32], ngram_weight: float) -> NDArray[np.float32]:
        head = np.asarray(self.head.predict_proba(embeddings), dtype=np.float32)
        if self.ngram is None:
            return head
        return blend(head, np.stack([self.ngram.scores(t) for t in texts]), ngram_weight)


def train(
    examples: list[Example],
    out: Path,
    head_tokens: int,
    tail_tokens: int,
    c: float = 16.0,
    ngram_weight: float = 0.3,
    out_of_scope_recall: float = 0.8,
) -> None:
    """Train on ``examples`` and write a model directory.

    A fifth of the prompt templates (of the rows, where a label has few templates) is held out
    first: the model trained on the rest is measured there, and that estimate is written to the
    manifest so that an operator knows how sure to be of a model trained on few examples. Rows
    labelled ``out_of_scope`` are not a class: with the held-out fifth they set the abstain bar
    that sends ``out_of_scope_recall`` of them to the default route. The final model is then
    trained on every row. With ``ngram_weight`` > 0 a linear model over word n-grams is blended
    with the embedding head (a weighted geometric mean of their probabilities).
    """
    encoder = Encoder(MODELS_DIR / DEFAULT_ENCODER, head_tokens=head_tokens, tail_tokens=tail_tokens)
    in_scope = [e for e in examples if e.label != OUT_OF_SCOPE]
    out_of_scope = [e for e in examples if e.label == OUT_OF_SCOPE]
    fit_part, tune_part = split_by_group(in_scope, 0.2, seed=1)
    tune = tune_part + out_of_scope
    use_ngram = ngram_weight > 0
    trial = Experts.fit(fit_part, embed(encoder, [e.prompt for e in fit_part]), c, use_ngram)
    tune_texts = [e.prompt for e in tune]
    tune_scores = trial.scores(tune_texts, embed(encoder, tune_texts), ngram_weight)
    threshold = None
    if out_of_scope:
        is_out_of_scope = np.array([e.label == OUT_OF_SCOPE for e in tune])
        threshold = out_of_scope_threshold(tune_scores, is_out_of_scope, out_of_scope_recall)
    held_out = held_out_estimate(
        [str(label) for label in trial.head.classes_], tune_part, tune_scores[: len(tune_part)], threshold
    )
    final = Experts.fit(in_scope, embed(encoder, [e.prompt for e in in_scope]), c, use_ngram)
    labels = [str(label) for label in final.head.classes_]
    out.mkdir(parents=True, exist_ok=True)
    export_head(final.head, out / "head.onnx")
    if final.ngram is not None:
        final.ngram.save(out / "ngram.npz")
    manifest = {
        "labels": labels,
        "encoder": SHIPPED_PREFIX + DEFAULT_ENCODER,
        "head_tokens": head_tokens,
        "tail_tokens": tail_tokens,
        "abstain_threshold": threshold,
        "ngram_weight": ngram_weight if use_ngram else 0.0,
        "trained_on": len(in_scope),
        "fewest_examples_of_a_label": min(Counter(e.label for e in in_scope).values()),
        "held_out": held_out,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def held_out_estimate(
    labels: list[str], rows: list[Example], scores: NDArray[np.float32], threshold: float | None
) -> dict[str, float | int]:
    """How the model trained without ``rows`` did on them: the operator's best guess of its quality."""
    predicted = [labels[i] for i in scores.argmax(axis=1)]
    right = np.array([p == e.label for p, e in zip(predicted, rows, strict=True)])
    kept = scores.max(axis=1) >= (threshold or 0.0)
    return {
        "rows": len(rows),
        "accuracy": round(float(right.mean()), 4),
        "accuracy_after_abstaining": round(float((right & kept).mean()), 4),
    }
