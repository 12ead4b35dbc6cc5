"""Fine-tuning with torch, export to int8 ONNX, and the two agreeing (the training-time path)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from routers.calibration import softmax
from routers.classifier import SHIPPED_MODEL, TaskClassifier
from routers.dataset import Example
from routers.finetune import (
    BalancedSampler,
    FineTuneSettings,
    TaskModel,
    export,
    fine_tune,
    logits_of,
    tokenizer_for,
    train_fine_tuned,
)
from tests.routers.test_classifier import PROMPTS

LABELS = sorted(PROMPTS)
EXAMPLES = [Example(p, label, f"{label}/{i}") for label, prompts in PROMPTS.items() for i, p in enumerate(prompts)]
SETTINGS = FineTuneSettings(steps=12, batch_size=8, head_lr=5e-3, head_tokens=16, tail_tokens=15, threads=1)
PROBES = [e.prompt for e in EXAMPLES] + ["Write a loop in Go", "What is 12 squared?", "Who painted Guernica?"]


@pytest.fixture(scope="module")
def tuned() -> TaskModel:
    return fine_tune(EXAMPLES, LABELS, SETTINGS)


def test_onnx_and_torch_agree_on_a_fixed_set_of_prompts(tuned: TaskModel, tmp_path: Path) -> None:
    export(tuned, tmp_path, LABELS, SETTINGS, temperature=1.7, abstain_threshold=0.4, facts={})
    torch_scores = softmax(logits_of(tuned, tokenizer_for(SETTINGS), PROBES), 1.7)
    onnx_scores = TaskClassifier(tmp_path, threads=1).scores(PROBES)
    assert np.mean(torch_scores.argmax(axis=1) == onnx_scores.argmax(axis=1)) >= 0.9
    assert float(np.abs(torch_scores - onnx_scores).max()) < 0.05
    np.testing.assert_allclose(onnx_scores.sum(axis=1), 1.0, rtol=1e-5)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["labels"], manifest["temperature"], manifest["abstain_threshold"]) == (LABELS, 1.7, 0.4)
    assert (tmp_path / "encoder.onnx").stat().st_size < 30 * 2**20  # int8: the fp32 graph is ~90 MB


def test_a_student_keeps_the_first_and_last_layers_and_exports_smaller(tuned: TaskModel, tmp_path: Path) -> None:
    teacher = TaskModel(len(LABELS))
    student = TaskModel(len(LABELS), layers=3)
    assert student.bert.config.num_hidden_layers == 3
    kept = [layer.attention.self.query.weight for layer in student.bert.encoder.layer]
    for mine, theirs in zip(
        kept, [teacher.bert.encoder.layer[i].attention.self.query.weight for i in (0, 2, 5)], strict=True
    ):
        assert torch.equal(mine, theirs)
    settings = replace(SETTINGS, layers=3)
    small = fine_tune(EXAMPLES, LABELS, settings)
    export(small, tmp_path / "student", LABELS, settings, temperature=1.0, abstain_threshold=None, facts={})
    export(tuned, tmp_path / "teacher", LABELS, SETTINGS, temperature=1.0, abstain_threshold=None, facts={})
    assert json.loads((tmp_path / "student" / "manifest.json").read_text())["layers"] == 3
    torch_scores = softmax(logits_of(small, tokenizer_for(settings), PROBES))
    onnx_scores = TaskClassifier(tmp_path / "student", threads=1).scores(PROBES)
    assert np.mean(torch_scores.argmax(axis=1) == onnx_scores.argmax(axis=1)) >= 0.9
    size = {name: (tmp_path / name / "encoder.onnx").stat().st_size for name in ("student", "teacher")}
    assert size["student"] < 0.8 * size["teacher"]  # three of six layers; the embeddings stay


@pytest.mark.parametrize(("power", "big_share"), [(0.5, 0.75), (0.0, 0.5)])
def test_the_sampler_draws_labels_alike_and_datasets_by_a_power_of_their_size(power: float, big_share: float) -> None:
    rows = [Example(f"big {i}", "qa", "big/t") for i in range(900)] + [
        Example(f"small {i}", "qa", "small/t") for i in range(100)
    ]
    rows += [Example(f"code {i}", "code", "mbpp") for i in range(10)]
    sampler = BalancedSampler(rows, ["code", "qa"], seed=3, dataset_power=power)
    drawn = [rows[sampler.draw()].group for _ in range(8000)]
    assert drawn.count("mbpp") / len(drawn) == pytest.approx(0.5, abs=0.03)
    qa = [group for group in drawn if group != "mbpp"]
    assert qa.count("big/t") / len(qa) == pytest.approx(big_share, abs=0.03)  # sqrt(900):sqrt(100) is 3:1


def test_fine_tuning_learns_the_labels_and_is_deterministic_for_a_seed(tuned: TaskModel) -> None:
    tokenizer = tokenizer_for(SETTINGS)
    logits = logits_of(tuned, tokenizer, [e.prompt for e in EXAMPLES])
    assert np.mean([LABELS[i] == e.label for i, e in zip(logits.argmax(axis=1), EXAMPLES, strict=True)]) >= 0.9
    again = logits_of(fine_tune(EXAMPLES, LABELS, SETTINGS), tokenizer, [e.prompt for e in EXAMPLES])
    np.testing.assert_array_equal(logits, again)


def test_operator_fine_tuning_calibrates_and_abstains_on_held_out_rows(tmp_path: Path) -> None:
    rows = [
        Example(f"{e.prompt} (take {n})", e.label, f"row-{i}-{n}") for i, e in enumerate(EXAMPLES) for n in range(3)
    ]
    outside = [Example(text, "out_of_scope", f"oos-{i}") for i, text in enumerate(["asdf", "play jazz", "hi there"])]
    train_fine_tuned(rows + outside, tmp_path, SETTINGS, out_of_scope_recall=0.6)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["labels"] == LABELS
    assert manifest["temperature"] > 0
    assert manifest["held_out"]["rows"] > 0
    model = TaskClassifier(tmp_path, threads=1)
    confidence = model.scores([e.prompt for e in outside]).max(axis=1)
    assert (confidence < manifest["abstain_threshold"]).sum() >= 2  # 0.6 of the out-of-scope rows abstain
    np.testing.assert_allclose(model.scores(["What is 9 times 9?"]).sum(axis=1), 1.0, rtol=1e-5)


def test_the_shipped_model_records_its_parity_and_calibration() -> None:
    manifest = json.loads((SHIPPED_MODEL / "manifest.json").read_text())
    assert manifest["onnx_parity"]["top_label_agreement"] >= 0.98
    assert manifest["ece_after"] < manifest["ece_before"]
    size = sum(f.stat().st_size for f in SHIPPED_MODEL.iterdir())
    assert size <= 30 * 2**20
