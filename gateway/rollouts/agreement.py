"""Whether two answers to the same request agree.

Short answers (a label, a number, a name: either under :data:`SHORT_CHARS` once normalised) agree
only when equal after normalising case, whitespace and trailing punctuation, and score 1 or 0.
Longer ones score the cosine similarity of their sentence embeddings under all-MiniLM-L6-v2, the
encoder the task router was fine-tuned from, shipped in the package (``routers/models/minilm-l6``).
Not the fine-tuned router itself: it was trained to place prompts of one task together, so any two
summaries would look alike to it. The encoder loads on the first comparison, in a thread, and every
comparison runs in one worker thread, so comparing never holds up the event loop or takes more
than one core.
"""

from __future__ import annotations

import asyncio
import re

import numpy as np

from contracts.wire import ChatCompletion
from routers.encoder import Encoder

SHORT_CHARS = 40
HEAD_TOKENS, TAIL_TOKENS = 64, 62
_SPACE = re.compile(r"\s+")


def normalised(text: str) -> str:
    return _SPACE.sub(" ", text).strip().rstrip(".!").strip().lower()


def answer_text(completion: ChatCompletion) -> str:
    """The first choice's text, its tool calls written out after it."""
    message = (completion.choices[0].model_extra or {}).get("message") or {}
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls") or []
    named = [str((call.get("function") or {}).get("name", "")) for call in calls if isinstance(call, dict)]
    return " ".join([text, *named]).strip()


class Agreement:
    def __init__(self, threads: int | None = 1) -> None:
        self._threads = threads
        self._encoder: Encoder | None = None
        self._one_at_a_time = asyncio.Semaphore(1)

    async def similarity(self, first: str, second: str) -> float:
        """1.0 for the same answer, 0.0 for different short ones, else the two texts' cosine similarity."""
        a, b = normalised(first), normalised(second)
        if a == b:
            return 1.0
        if len(a) < SHORT_CHARS or len(b) < SHORT_CHARS:
            return 0.0
        async with self._one_at_a_time:
            return await asyncio.to_thread(self._cosine, first, second)

    def _cosine(self, first: str, second: str) -> float:
        if self._encoder is None:
            from routers.classifier import MODELS_DIR

            self._encoder = Encoder(MODELS_DIR / "minilm-l6", self._threads, HEAD_TOKENS, TAIL_TOKENS)
        vectors = self._encoder.encode([first, second])
        norms = np.linalg.norm(vectors, axis=1)
        if not norms.all():
            return 0.0
        return float(np.clip(vectors[0] @ vectors[1] / (norms[0] * norms[1]), 0.0, 1.0))
