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


class Encoder:
    def __init__(
        self, model_dir: Path, threads: int | None = None, head_tokens: int = 64, tail_tokens: int = 62
    ) -> None:
        self.head_tokens = head_tokens
        self.tail_tokens = tail_tokens
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._session = session_for(model_dir / "encoder.onnx", threads)
        self.provider = self._session.get_providers()[0]

    def token_ids(self, text: str) -> list[int]:
        # A token is rarely over 16 characters: this bound keeps every token the model reads.
        text = bounded(text, 16 * self.head_tokens, 16 * self.tail_tokens)
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) > self.head_tokens + self.tail_tokens:
            ids = ids[: self.head_tokens] + (ids[-self.tail_tokens :] if self.tail_tokens else [])
        return [CLS_ID, *ids, SEP_ID]

    def encode(self, texts: list[str]) -> NDArray[np.float32]:
        """L2-normalised embeddings, one row per text."""
        rows = [self.token_ids(t) for t in texts]
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        (embedding,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(embedding, dtype=np.float32)
