"""Training a router head on sentence embeddings, and exporting it to ONNX.

The encoder is fixed (the shipped int8 all-MiniLM-L6-v2); only a multinomial logistic
regression over its embeddings is trained, so training 20k prompts takes minutes on a
laptop CPU and operators can train on their own labels (any number of routes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from routers.classifier import MODELS_DIR, SHIPPED_PREFIX
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


def choose_abstain_threshold(scores: NDArray[np.float32], is_out_of_scope: NDArray[np.bool_]) -> float:
    """The confidence below which to abstain that best balances in-scope recall and out-of-scope recall."""
    confidence = scores.max(axis=1)
    best, best_value = 0.0, -1.0
    for threshold in np.linspace(0.05, 0.95, 91):
        kept_in_scope = float(np.mean(confidence[~is_out_of_scope] >= threshold))
        caught_out_of_scope = float(np.mean(confidence[is_out_of_scope] < threshold))
        if (value := kept_in_scope + caught_out_of_scope) > best_value:
            best, best_value = float(threshold), value
    return round(best, 3)


def choose_ngram_acceptance(scores: NDArray[np.float32], correct: NDArray[np.bool_], precision: float) -> float | None:
    """The lowest confidence at which the n-gram stage's accepted answers are still ``precision`` right."""
    confidence = scores.max(axis=1)
    for bar in np.linspace(0.5, 0.99, 50):
        accepted = confidence >= bar
        if accepted.sum() >= 20 and correct[accepted].mean() >= precision:
            return round(float(bar), 3)
    return None


def train(
    examples: list[Example],
    out: Path,
    head_tokens: int,
    tail_tokens: int,
    c: float = 4.0,
    ngram_precision: float | None = 0.97,
) -> None:
    """Train on ``examples`` and write a model directory.

    Rows labelled ``out_of_scope`` are not a class: they teach the abstain threshold, chosen on
    a held-out fifth of the templates, so that requests fitting no route go to the default one.
    With ``ngram_precision`` a first cascade stage is trained too, answering alone only above the
    confidence at which it was that precise on the held-out fifth (out-of-scope rows count as wrong).
    """
    encoder = Encoder(MODELS_DIR / DEFAULT_ENCODER, head_tokens=head_tokens, tail_tokens=tail_tokens)
    in_scope = [e for e in examples if e.label != OUT_OF_SCOPE]
    out_of_scope = [e for e in examples if e.label == OUT_OF_SCOPE]
    fit_part, tune_part = split_by_group(in_scope, 0.2, seed=1)
    tune = tune_part + out_of_scope
    is_out_of_scope = np.array([e.label == OUT_OF_SCOPE for e in tune])
    threshold = None
    if out_of_scope:
        head = fit_head(fit_part, embed(encoder, [e.prompt for e in fit_part]), c)
        probabilities = head.predict_proba(embed(encoder, [e.prompt for e in tune]))
        threshold = choose_abstain_threshold(probabilities, is_out_of_scope)
    head = fit_head(in_scope, embed(encoder, [e.prompt for e in in_scope]), c)
    labels = [str(label) for label in head.classes_]
    out.mkdir(parents=True, exist_ok=True)
    export_head(head, out / "head.onnx")
    ngram = train_ngram(fit_part, tune, in_scope, labels, ngram_precision, out) if ngram_precision else None
    manifest = {
        "labels": labels,
        "encoder": SHIPPED_PREFIX + DEFAULT_ENCODER,
        "head_tokens": head_tokens,
        "tail_tokens": tail_tokens,
        "abstain_threshold": threshold,
        "ngram_accept": ngram,
        "trained_on": len(in_scope),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def train_ngram(
    fit_part: list[Example],
    tune: list[Example],
    everything: list[Example],
    labels: list[str],
    precision: float,
    out: Path,
) -> float | None:
    """Fit the n-gram stage on ``fit_part``, learn its acceptance bar on ``tune``, refit on everything."""
    trial = NgramScorer.fit(
        [e.prompt for e in fit_part], [e.label for e in fit_part], [e.weight for e in fit_part], labels
    )
    scores = np.stack([trial.scores(e.prompt) for e in tune])
    correct = np.array([labels[int(i)] == e.label for i, e in zip(scores.argmax(axis=1), tune, strict=True)])
    bar = choose_ngram_acceptance(scores, correct, precision)
    if bar is None:
        log.info("the n-gram stage never reached %.2f precision: the encoder decides everything", precision)
        return None
    final = NgramScorer.fit(
        [e.prompt for e in everything], [e.label for e in everything], [e.weight for e in everything], labels
    )
    final.save(out / "ngram.npz")
    return bar
