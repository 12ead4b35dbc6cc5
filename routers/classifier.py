"""Scoring: an ONNX sentence encoder and an ONNX head give each label a probability.

A model directory holds ``head.onnx`` and ``manifest.json`` (labels, the encoder to use,
how many head and tail tokens of a prompt it reads). Policy — which route a label means,
and when to abstain — lives in :mod:`routers.classifier_router`, not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from routers.encoder import Encoder, session_for
from routers.ngram import NgramScorer

MODELS_DIR = Path(__file__).parent / "models"
SHIPPED_MODEL = MODELS_DIR / "taskmix"
SHIPPED_PREFIX = "shipped:"


@dataclass(frozen=True)
class Manifest:
    labels: list[str]
    encoder: str
    head_tokens: int
    tail_tokens: int
    abstain_threshold: float | None = None
    """Chosen at training: on held-out out-of-scope rows, or on held-out datasets."""
    ngram_weight: float = 0.0
    """The n-gram model's share of the blend; 0: the model has none."""

    @classmethod
    def read(cls, model_dir: Path) -> Manifest:
        data = json.loads((model_dir / "manifest.json").read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def encoder_dir(self, model_dir: Path) -> Path:
        if self.encoder.startswith(SHIPPED_PREFIX):
            return MODELS_DIR / self.encoder.removeprefix(SHIPPED_PREFIX)
        return (model_dir / self.encoder).resolve()


class Reading(NamedTuple):
    probabilities: NDArray[np.float32]
    embedding: NDArray[np.float32]


def blend(head: NDArray[np.float32], ngram: NDArray[np.float32], ngram_weight: float) -> NDArray[np.float32]:
    """A weighted geometric mean of two models' probabilities, renormalised: rows still sum to 1."""
    log = (1 - ngram_weight) * np.log(np.clip(head, 1e-9, None)) + ngram_weight * np.log(np.clip(ngram, 1e-9, None))
    exp = np.exp(log - log.max(axis=1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


class TaskClassifier:
    def __init__(self, model_dir: Path = SHIPPED_MODEL, threads: int | None = None) -> None:
        self.model_dir = model_dir
        self.manifest = Manifest.read(model_dir)
        self.labels = self.manifest.labels
        self.encoder = Encoder(
            self.manifest.encoder_dir(model_dir), threads, self.manifest.head_tokens, self.manifest.tail_tokens
        )
        self._head = session_for(model_dir / "head.onnx", threads)
        self._head_input = self._head.get_inputs()[0].name
        self._ngram = NgramScorer.load(model_dir / "ngram.npz") if self.manifest.ngram_weight > 0 else None

    def scores(self, texts: list[str]) -> NDArray[np.float32]:
        """One row of label probabilities per text, in ``self.labels`` order; each row sums to 1."""
        return self.scores_of(texts, self.encoder.encode(texts))

    def read(self, texts: list[str]) -> list[Reading]:
        """Each text's label probabilities and the embedding they came from (what examples are matched on)."""
        embeddings = self.encoder.encode(texts)
        return [Reading(p, e) for p, e in zip(self.scores_of(texts, embeddings), embeddings, strict=True)]

    def scores_of(self, texts: list[str], embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        (probabilities,) = self._head.run(["probabilities"], {self._head_input: embeddings})
        head = np.asarray(probabilities, dtype=np.float32)
        if self._ngram is None:
            return head
        return blend(head, np.stack([self._ngram.scores(t) for t in texts]), self.manifest.ngram_weight)
