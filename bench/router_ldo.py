"""The task router judged on datasets it never saw: 5-fold leave-datasets-out, side by side.

Every row of ``train.jsonl``, ``extra_train.jsonl`` and ``extra2_train.jsonl`` is scored once, by models trained on
the other four folds (whole datasets held out, see ``routers.folds``), non-commercial sources
never trained on. Models, each trained per fold on the same rows:
- the majority label;
- TF-IDF word n-grams with a logistic regression;
- the previous recipe: the frozen int8 MiniLM encoder with a logistic-regression head;
- the fine-tuned encoder (``routers.recipes.taskmix cross-validate`` wrote its out-of-fold logits);
- with ``--compare``, other cross-validated runs of it (a student with fewer layers, other settings).
And the previous shipped model as it was (encoder head behind its n-gram gate), on
``extra_train.jsonl``, none of which it was trained on. Calibration of the fine-tuned model:
expected calibration error before and after temperature scaling, the temperature fitted on the
other folds' held-out datasets. Writes ``bench/results/router-ldo.{json,md}``.

    .venv/bin/python bench/router_ldo.py --work /tmp/taskmix [--compare /tmp/taskmix-3 ...] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from routers.calibration import choose_abstain_threshold, expected_calibration_error, fit_temperature, softmax
from routers.classifier import MODELS_DIR
from routers.dataset import Example
from routers.encoder import Encoder
from routers.evaluation import quality
from routers.finetune import FineTuneSettings
from routers.folds import dataset_of
from routers.ngram import NgramScorer
from routers.recipes.taskmix import (
    LABELS,
    fold_logits,
    hand_written,
    is_commercial,
    out_of_fold,
    settings_of,
    templates_split,
)
from routers.training import embed, fit_head

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "fine-tuned MiniLM-L6 (this model)"
PREVIOUS_MODEL_COMMIT = "d70cab7"
"""The last commit that shipped the frozen-encoder task router."""
FIRST_FINE_TUNED_COMMIT = "1ff7c99"
"""The last commit that shipped the fine-tuned router trained without ``extra2_train.jsonl``."""
EXTRA2_SOURCES = ("spider/", "sede", "ehrsql/", "tatqa/", "mathqa", "stackexchange/", "liveqa-med", "tabfact",
                  "fairytaleqa/", "hellaswag", "piqa", "copa", "triviaqa", "webquestions", "persona-chat/", "clariq",
                  "canard")  # fmt: skip


def described(settings: FineTuneSettings) -> str:
    return (
        f"{settings.layers} of 6 layers, a dataset drawn with weight size^{settings.dataset_power:g}, "
        f"{settings.steps} steps"
    )


def training_rows(rows: list[Example], fold: list[int]) -> list[Example]:
    held = set(fold)
    return [e for i, e in enumerate(rows) if i not in held and is_commercial(e)] + hand_written()


def majority(train: list[Example], test: list[Example]) -> list[str]:
    return [Counter(e.label for e in train).most_common(1)[0][0]] * len(test)


def tfidf(train: list[Example], test: list[Example]) -> list[str]:
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(C=10, max_iter=3000, class_weight="balanced"),
    )
    model.fit([e.prompt for e in train], [e.label for e in train])
    return [str(label) for label in model.predict([e.prompt for e in test])]


class FrozenEncoder:
    """The previous recipe: a logistic head over the frozen encoder's embeddings (each prompt encoded once)."""

    def __init__(self, rows: list[Example]) -> None:
        encoder = Encoder(MODELS_DIR / "minilm-l6", None, head_tokens=20, tail_tokens=19)
        prompts = sorted({e.prompt for e in rows} | {e.prompt for e in hand_written()})
        vectors = embed(encoder, prompts)
        self._row = {prompt: i for i, prompt in enumerate(prompts)}
        self._vectors = vectors

    def vectors(self, examples: list[Example]) -> np.ndarray:
        return self._vectors[[self._row[e.prompt] for e in examples]]

    def __call__(self, train: list[Example], test: list[Example]) -> list[str]:
        head = fit_head(train, self.vectors(train), c=4.0)
        return [str(label) for label in head.predict(self.vectors(test))]


def model_at(commit: str, names: tuple[str, ...], folder: Path) -> Path:
    """The shipped task router's files as they were at ``commit``, written into ``folder``."""
    for name in names:
        show = ["git", "show", f"{commit}:routers/models/taskmix/{name}"]
        (folder / name).write_bytes(subprocess.run(show, cwd=ROOT, capture_output=True, check=True).stdout)
    return folder


def previous_shipped_model(test: list[Example], embeddings: np.ndarray) -> list[str]:
    """The model of ``PREVIOUS_MODEL_COMMIT`` as it served: n-gram stage alone when sure, else the encoder head."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as work:
        folder = model_at(PREVIOUS_MODEL_COMMIT, ("head.onnx", "manifest.json", "ngram.npz"), Path(work))
        manifest = json.loads((folder / "manifest.json").read_text())
        head = ort.InferenceSession(str(folder / "head.onnx"), providers=["CPUExecutionProvider"])
        ngram = NgramScorer.load(folder / "ngram.npz")
    encoder = Encoder(MODELS_DIR / "minilm-l6", None, manifest["head_tokens"], manifest["tail_tokens"])
    (probabilities,) = head.run(
        ["probabilities"], {head.get_inputs()[0].name: embed(encoder, [e.prompt for e in test])}
    )
    predicted = []
    for example, row in zip(test, probabilities, strict=True):
        fast = ngram.scores(example.prompt)
        chosen = fast if float(fast.max()) >= manifest["ngram_accept"] else row
        predicted.append(manifest["labels"][int(np.argmax(chosen))])
    return predicted


def first_fine_tuned_model(test: list[Example]) -> list[str]:
    """The fine-tuned model of ``FIRST_FINE_TUNED_COMMIT`` as it served, on rows it never saw."""
    from routers.classifier import TaskClassifier

    with tempfile.TemporaryDirectory() as work:
        names = ("encoder.onnx", "head.onnx", "manifest.json", "tokenizer.json")
        classifier = TaskClassifier(model_at(FIRST_FINE_TUNED_COMMIT, names, Path(work)))
        scores = np.concatenate(
            [classifier.scores([e.prompt for e in test[i : i + 64]]) for i in range(0, len(test), 64)]
        )
    return [classifier.labels[i] for i in scores.argmax(axis=1)]


def held_out_templates(rows: list[Example], work: Path) -> dict[str, Any]:
    """The secondary figure: other templates of the datasets the model was fine-tuned on."""
    trained_on, held = templates_split(rows)
    seen = {dataset_of(e.group) for e in trained_on}
    predicted = [LABELS[i] for i in np.load(work / "templates.npy").argmax(axis=1)]
    kept = [i for i, e in enumerate(held) if dataset_of(e.group) in seen]
    return {"rows": len(kept), **quality([held[i].label for i in kept], [predicted[i] for i in kept])}


def calibration(logits: np.ndarray, targets: np.ndarray, folds: list[list[int]]) -> dict[str, Any]:
    """ECE before and after temperature scaling; each fold's temperature fitted on the other folds."""
    after = np.zeros_like(logits)
    temperatures = []
    for fold in folds:
        others = np.setdiff1d(np.arange(len(targets)), fold)
        temperature = fit_temperature(logits[others], targets[others])
        temperatures.append(round(temperature, 3))
        after[fold] = softmax(logits[fold], temperature)
    before = softmax(logits)
    threshold = choose_abstain_threshold(after, targets)
    kept = after.max(axis=1) >= threshold
    right = after.argmax(axis=1) == targets
    return {
        "ece_before": round(expected_calibration_error(before, targets), 4),
        "ece_after": round(expected_calibration_error(after, targets), 4),
        "temperature_per_fold": temperatures,
        "abstain_threshold": threshold,
        "share_abstained": round(float(1 - kept.mean()), 4),
        "accuracy_of_the_kept": round(float(right[kept].mean()), 4),
        "accuracy_of_the_abstained": round(float(right[~kept].mean()), 4) if (~kept).any() else None,
    }


def worst_datasets(rows: list[Example], predicted: list[str], count: int = 15) -> list[dict[str, Any]]:
    """The held-out datasets the fine-tuned model gets most wrong, and where their rows went."""
    by_dataset: dict[str, list[int]] = {}
    for i, example in enumerate(rows):
        by_dataset.setdefault(dataset_of(example.group), []).append(i)
    scored: list[dict[str, Any]] = []
    for name, indices in by_dataset.items():
        if len(indices) < 20:
            continue
        right = sum(predicted[i] == rows[i].label for i in indices)
        went = Counter(predicted[i] for i in indices if predicted[i] != rows[i].label).most_common(2)
        label = Counter(rows[i].label for i in indices).most_common(1)[0][0]
        scored.append(
            {
                "dataset": name,
                "label": label,
                "rows": len(indices),
                "accuracy": round(right / len(indices), 3),
                "wrong_went_to": dict(went),
            }
        )
    return sorted(scored, key=lambda d: d["accuracy"])[:count]


def summary(results: dict[str, Any]) -> list[str]:
    lines = [
        f"This model: fine-tuned MiniLM-L6, {results['this_model']}.",
        "",
        "| model | rows | accuracy | macro-F1 | " + " | ".join(LABELS) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in LABELS) + " |",
    ]
    for name, report in results["models"].items():
        f1 = [str(report["per_label"].get(label, {}).get("f1", "")) for label in LABELS]
        lines.append(
            f"| {name} | {report['rows']} | {report['accuracy']} | {report['macro_f1']} | " + " | ".join(f1) + " |"
        )
    confusion = results["models"][SHIPPED]["confusion"]
    lines += ["", "Confusion, fine-tuned model (rows: truth, columns: predicted):", "", "```"]
    lines.append(" " * 15 + " ".join(f"{label[:8]:>8}" for label in confusion["labels"]))
    for label, row in zip(confusion["labels"], confusion["matrix"], strict=True):
        lines.append(f"{label:<15}" + " ".join(f"{n:>8}" for n in row))
    lines += ["```", "", "Calibration of the fine-tuned model (held-out datasets):", "", "```"]
    lines += [json.dumps(results["calibration"], indent=1), "```", "", "Hardest held-out datasets:", ""]
    lines += ["| dataset | label | rows | accuracy | wrong ones went to |", "| --- | --- | --- | --- | --- |"]
    for row in results["worst_datasets"]:
        lines.append(
            f"| {row['dataset']} | {row['label']} | {row['rows']} | {row['accuracy']} | {row['wrong_went_to']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, required=True, help="routers.recipes.taskmix cross-validate's folder")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="cross-validate folders reported beside it")
    args = parser.parse_args()
    rows, folds, logits = out_of_fold(args.shared, args.work, seed=0)
    truth = [e.label for e in rows]
    frozen_encoder = FrozenEncoder(rows)
    predicted: dict[str, list[str]] = {
        "majority label": [""] * len(rows),
        "TF-IDF + logistic regression": [""] * len(rows),
    }
    predicted["previous recipe (frozen MiniLM-L6 + linear head)"] = [""] * len(rows)
    for fold in folds:
        train = training_rows(rows, fold)
        test = [rows[i] for i in fold]
        for name, labels in zip(
            predicted, (majority(train, test), tfidf(train, test), frozen_encoder(train, test)), strict=True
        ):
            for i, label in zip(fold, labels, strict=True):
                predicted[name][i] = label
    predicted[SHIPPED] = [LABELS[i] for i in logits.argmax(axis=1)]
    for work in args.compare:
        other = fold_logits(work, folds, len(rows))
        predicted[f"fine-tuned MiniLM-L6, {described(settings_of(work))}"] = [LABELS[i] for i in other.argmax(axis=1)]
    models = {name: {"rows": len(rows), **quality(truth, labels)} for name, labels in predicted.items()}
    is_extra = [not e.group.startswith(("t0/", "gsm8k", "mbppplus", *EXTRA2_SOURCES)) for e in rows]
    extra = [e for e, kept in zip(rows, is_extra, strict=True) if kept]
    extra_index = [i for i, kept in enumerate(is_extra) if kept]
    extra2_index = [i for i, e in enumerate(rows) if e.group.startswith(EXTRA2_SOURCES)]
    extra2 = [rows[i] for i in extra2_index]
    first_index = [i for i, e in enumerate(rows) if not e.group.startswith(EXTRA2_SOURCES)]
    if extra2:
        models["first fine-tuned model (shipped before), extra2_train only (never trained on)"] = {
            "rows": len(extra2),
            **quality([e.label for e in extra2], first_fine_tuned_model(extra2)),
        }
        models["fine-tuned, extra2_train only (held-out folds)"] = {
            "rows": len(extra2),
            **quality([e.label for e in extra2], [predicted[SHIPPED][i] for i in extra2_index]),
        }
        models["fine-tuned, train and extra_train only (held-out folds)"] = {
            "rows": len(first_index),
            **quality([rows[i].label for i in first_index], [predicted[SHIPPED][i] for i in first_index]),
        }
    models["previous shipped model, extra_train only (never trained on)"] = {
        "rows": len(extra),
        **quality([e.label for e in extra], previous_shipped_model(extra, frozen_encoder.vectors(extra))),
    }
    models["fine-tuned, extra_train only (held-out folds)"] = {
        "rows": len(extra),
        **quality([e.label for e in extra], [predicted[SHIPPED][i] for i in extra_index]),
    }
    if (args.work / "templates.npy").exists():
        secondary = "fine-tuned, held-out templates of datasets trained on (secondary)"
        models[secondary] = held_out_templates(rows, args.work)
    targets = np.array([LABELS.index(label) for label in truth])
    results = {
        "folds": [len(f) for f in folds],
        "this_model": described(settings_of(args.work)),
        "models": models,
        "calibration": calibration(logits, targets, folds),
        "worst_datasets": worst_datasets(rows, predicted[SHIPPED]),
    }
    out = ROOT / "bench" / "results"
    (out / "router-ldo.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = summary(results)
    (out / "router-ldo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
