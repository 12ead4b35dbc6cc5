"""The sentence encoder, served with ONNX Runtime and ``tokenizers`` (no torch).

Long prompts keep their head and their tail: the instruction that says what kind of task
a prompt is sits at its start ("Summarize: ...") or its end ("... TL;DR:") about equally often.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from tokenizers import Tokenizer

from routers.routing_text import bounded

log = logging.getLogger("turnout")
CLS_ID, SEP_ID = 101, 102


def session_for(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """CUDA when ``onnxruntime-gpu`` finds a GPU, the CPU otherwise; says which."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    session = ort.InferenceSession(str(path), options, providers=providers)
    log.info("router model %s runs on %s", path.name, session.get_providers()[0])
    return session


class PromptTokenizer:
    """Token ids of what a model reads of a prompt: its first ``head_tokens`` and last ``tail_tokens``.

    Serving and fine-tuning both read prompts through this class, so they see the same tokens.
    """

    def __init__(self, tokenizer_file: Path, head_tokens: int, tail_tokens: int) -> None:
        self.head_tokens = head_tokens
        self.tail_tokens = tail_tokens
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def token_ids(self, text: str) -> list[int]:
        # A token is rarely over 16 characters: this bound keeps every token the model reads.
        text = bounded(text, 16 * self.head_tokens, 16 * self.tail_tokens)
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) > self.head_tokens + self.tail_tokens:
            ids = ids[: self.head_tokens] + (ids[-self.tail_tokens :] if self.tail_tokens else [])
        return [CLS_ID, *ids, SEP_ID]

    def batch(self, texts: list[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """``input_ids`` and ``attention_mask``, padded to the longest row."""
        rows = [self.token_ids(t) for t in texts]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


class Encoder:
    def __init__(
        self, model_dir: Path, threads: int | None = None, head_tokens: int = 64, tail_tokens: int = 62
    ) -> None:
        self.tokenizer = PromptTokenizer(model_dir / "tokenizer.json", head_tokens, tail_tokens)
        self._session = session_for(model_dir / "encoder.onnx", threads)
        self.provider = self._session.get_providers()[0]

    @property
    def head_tokens(self) -> int:
        return self.tokenizer.head_tokens

    @property
    def tail_tokens(self) -> int:
        return self.tokenizer.tail_tokens

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.token_ids(text)

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """Pooled embeddings, one row per text (L2-normalised for the shipped sentence encoder)."""
        ids, mask = self.tokenizer.batch(texts)
        (embedding,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(embedding, dtype=np.float32)
