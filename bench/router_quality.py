"""Operators' routes and hand-written requests, side by side with a majority-class and a TF-IDF baseline.

CLINC150: ``turnout router train`` defaults on train (out_of_scope rows only set the abstain
threshold), measured on val (the shared data has no test split), with the frozen encoder and
fine-tuned. The shipped task router on routers/data/ood_eval.jsonl (hand-written requests in
other phrasings, never trained on). The task router's main figure, leave-datasets-out, is
bench/router_ldo.py's. Writes bench/results/router-quality.{json,md}.

    .venv/bin/python bench/router_quality.py [--shared ../shared] [--clinc-model DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from routers.classifier import TaskClassifier
from routers.dataset import OUT_OF_SCOPE, Example, load_examples
from routers.evaluation import evaluate, quality
from routers.training import train

ROOT = Path(__file__).resolve().parents[1]


def tfidf(train_rows: list[Example], test_rows: list[Example]) -> dict[str, object]:
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        LogisticRegression(C=10, max_iter=3000, class_weight="balanced"),
    )
    in_scope = [e for e in train_rows if e.label != OUT_OF_SCOPE]
    model.fit(
        [e.prompt for e in in_scope],
        [e.label for e in in_scope],
        logisticregression__sample_weight=[e.weight for e in in_scope],
    )
    return quality([e.label for e in test_rows], list(model.predict([e.prompt for e in test_rows])))


def majority(train_rows: list[Example], test_rows: list[Example]) -> dict[str, object]:
    top = Counter(e.label for e in train_rows if e.label != OUT_OF_SCOPE).most_common(1)[0][0]
    return quality([e.label for e in test_rows], [top] * len(test_rows))


def clinc(datasets: Path, work: Path, fine_tuned: Path | None) -> dict[str, object]:
    """``turnout router train`` defaults on CLINC150 train, measured on val, with and without fine-tuning."""
    clinc_train = load_examples(datasets / "clinc150" / "train.jsonl")
    clinc_val = load_examples(datasets / "clinc150" / "val.jsonl")
    results: dict[str, object] = {}
    frozen = work / "frozen"
    train(clinc_train, frozen, head_tokens=20, tail_tokens=19)
    results["frozen encoder + n-gram blend (router train --fine-tune off)"] = evaluate(
        TaskClassifier(frozen, threads=1), clinc_val
    )
    if fine_tuned is None:
        from routers.finetune import operator_settings, train_fine_tuned

        fine_tuned = work / "fine-tuned"
        train_fine_tuned(clinc_train, fine_tuned, operator_settings(len(clinc_train), 20, 19), 0.8)
    results["fine-tuned (router train default with turnout[finetune])"] = evaluate(
        TaskClassifier(fine_tuned, threads=1), clinc_val
    )
    results["tfidf_baseline"] = tfidf(clinc_train, clinc_val)
    results["majority_baseline"] = majority(clinc_train, clinc_val)
    return results


def summary_rows(results: dict[str, dict[str, dict[str, object]]]) -> list[str]:
    lines = ["| test set | model | accuracy | macro-F1 | other |", "| --- | --- | --- | --- | --- |"]
    for name, models in results.items():
        for model, report in models.items():
            other = ""
            if "out_of_scope_recall" in report:
                other = (
                    f"in-scope acc {report['in_scope_accuracy']}, out-of-scope recall {report['out_of_scope_recall']}"
                )
            elif "p50_ms" in report:
                other = f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms (1 core)"
            lines.append(f"| {name} | {model} | {report['accuracy']} | {report['macro_f1']} | {other} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--clinc-model", type=Path, default=None, help="a fine-tuned CLINC model already trained")
    args = parser.parse_args()
    datasets = args.shared / "datasets"
    ood = load_examples(ROOT / "routers" / "data" / "ood_eval.jsonl")
    taskmix = load_examples(datasets / "taskmix" / "train.jsonl")
    results: dict[str, dict[str, dict[str, object]]] = {
        "hand-written OOD": {
            "shipped task router": evaluate(TaskClassifier(threads=1), ood),
            "tfidf_baseline": tfidf(taskmix, ood),
            "majority_baseline": majority(taskmix, ood),
        }
    }
    with tempfile.TemporaryDirectory() as work:
        results["clinc150 val"] = clinc(datasets, Path(work), args.clinc_model)  # type: ignore[assignment]
    out = ROOT / "bench" / "results"
    (out / "router-quality.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = summary_rows(results)
    (out / "router-quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
