"""Scoring: an ONNX sentence encoder and an ONNX head give each label a probability.

A model directory holds ``head.onnx`` and ``manifest.json`` (labels, the encoder to use,
how many head and tail tokens of a prompt it reads). Policy — which route a label means,
and when to abstain — lives in :mod:`routers.classifier_router`, not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
    """Chosen at training when the data had out-of-scope rows."""
    ngram_accept: float | None = None
    """Confidence at which the n-gram stage answers alone; ``None``: no n-gram stage."""

    @classmethod
    def read(cls, model_dir: Path) -> Manifest:
        data = json.loads((model_dir / "manifest.json").read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def encoder_dir(self, model_dir: Path) -> Path:
        if self.encoder.startswith(SHIPPED_PREFIX):
            return MODELS_DIR / self.encoder.removeprefix(SHIPPED_PREFIX)
        return (model_dir / self.encoder).resolve()


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
        self._probability_output = self._head.get_outputs()[1].name
        accept = self.manifest.ngram_accept
        self._ngram = NgramScorer.load(model_dir / "ngram.npz") if accept is not None else None

    def fast_scores(self, text: str) -> NDArray[np.float32] | None:
        """The n-gram stage's scores when it is confident enough to answer alone, else ``None``."""
        if self._ngram is None:
            return None
        row = self._ngram.scores(text)
        return row if float(row.max()) >= (self.manifest.ngram_accept or 1.0) else None

    def encoder_scores(self, texts: list[str]) -> NDArray[np.float32]:
        """One row per text from the sentence encoder and its head, in ``self.labels`` order."""
        return self.scores_of_embeddings(self.encoder.encode(texts))

    def scores(self, texts: list[str]) -> NDArray[np.float32]:
        """The cascade: the n-gram stage where it is confident, the encoder for the rest."""
        fast = [self.fast_scores(t) for t in texts]
        slow = [t for t, row in zip(texts, fast, strict=True) if row is None]
        slow_rows = iter(self.encoder_scores(slow)) if slow else iter(())
        return np.stack([row if row is not None else next(slow_rows) for row in fast])

    def scores_of_embeddings(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        (probabilities,) = self._head.run([self._probability_output], {self._head_input: embeddings})
        return np.asarray(probabilities, dtype=np.float32)
