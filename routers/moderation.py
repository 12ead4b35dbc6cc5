"""Scoring text for moderation with a classifier in the router's model format.

A moderation model is a model directory like a route classifier's (``head.onnx``, the encoder
named by ``manifest.json``, an optional n-gram blend), trained on ``{"text", "label"}`` rows by
``turnout router train`` or by :mod:`routers.recipes.moderation` for the shipped one. The model
reads a bounded number of tokens, so a long text (a model's whole answer) is cut into windows of
about :data:`WINDOW_CHARS` characters on word boundaries, all scored in one batch; a text is as
bad as its worst window.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from routers.classifier import MODELS_DIR, TaskClassifier

SHIPPED_MODERATION = MODELS_DIR / "moderation"
BUILTIN_PREFIX = "builtin:"
WINDOW_CHARS = 320
MAX_WINDOWS = 64
"""A text longer than this many windows is scored on its first and last windows' worth."""
_SPACE = re.compile(r"\s+")


def model_dir_of(name: str, base: Path | None = None) -> Path:
    """``builtin:moderation`` is the shipped model; anything else a directory (relative to ``base``)."""
    if name.startswith(BUILTIN_PREFIX):
        return MODELS_DIR / name.removeprefix(BUILTIN_PREFIX)
    path = Path(name)
    return path if path.is_absolute() or base is None else (base / path)


def windows(text: str, size: int = WINDOW_CHARS) -> list[str]:
    """The text in pieces of about ``size`` characters, cut at spaces, overlapping by a quarter so
    that a phrase cut in two is still whole in one piece."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= size:
        return [text] if text else []
    step = size * 3 // 4
    pieces = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + step, end)
            end = cut if cut > start else end
        pieces.append(text[start:end])
        if end >= len(text):
            break
        next_start = text.find(" ", start + step)
        start = next_start + 1 if 0 <= next_start < end else end
    if len(pieces) > MAX_WINDOWS:
        half = MAX_WINDOWS // 2
        pieces = pieces[:half] + pieces[-half:]
    return pieces


class ModerationModel:
    """The probability that a text belongs to any of a set of labels (``hate``, ``offensive``)."""

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        self.model_dir = model_dir
        self._classifier = TaskClassifier(model_dir, threads)
        self.labels = self._classifier.labels
        manifest = json.loads((model_dir / "manifest.json").read_text())
        self.threshold: float | None = manifest.get("threshold")
        """The threshold chosen when the model was trained (the shipped one's: on held-out sources)."""
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"moderation-{model_dir.name}")

    async def score(self, texts: list[str], columns: list[int], window_chars: int = WINDOW_CHARS) -> list[float]:
        """:meth:`flagged` in the model's own worker thread, off the event loop, one batch at a time."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self.flagged, texts, columns, window_chars)

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)

    def columns(self, flag_labels: list[str]) -> list[int]:
        missing = [label for label in flag_labels if label not in self.labels]
        if missing:
            raise ValueError(f"the model has no label {', '.join(missing)} (it has {', '.join(self.labels)})")
        return [self.labels.index(label) for label in flag_labels]

    def flagged(self, texts: list[str], columns: list[int], window_chars: int = WINDOW_CHARS) -> list[float]:
        """Per text, the largest summed probability of the flagged labels over its windows (0 when empty)."""
        pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            for piece in windows(text, window_chars):
                pieces.append(piece)
                owners.append(index)
        worst = [0.0] * len(texts)
        if not pieces:
            return worst
        summed = self._classifier.scores(pieces)[:, columns].sum(axis=1)
        for owner, value in zip(owners, np.asarray(summed, dtype=float), strict=True):
            worst[owner] = max(worst[owner], float(value))
        return worst
