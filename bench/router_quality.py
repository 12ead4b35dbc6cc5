"""Router quality, side by side with a majority-class and a TF-IDF baseline.

taskmix: trained on four fifths of the prompt templates (+ the hand-written augmentation),
measured on the held-out fifth of templates and on routers/data/ood_eval.jsonl (hand-written
requests in other phrasings, never trained on). CLINC150: trained on train (out_of_scope rows
only set the abstain threshold), measured on val. Writes bench/results/router-quality.{json,md}.

    .venv/bin/python bench/router_quality.py [--shared ../shared]
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
from routers.training import split_by_group, train

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


def compare(train_rows: list[Example], test_sets: dict[str, list[Example]], work: Path) -> dict[str, object]:
    train(train_rows, work, head_tokens=20, tail_tokens=19)
    model = TaskClassifier(work, threads=1)
    results: dict[str, object] = {}
    for name, rows in test_sets.items():
        results[name] = {
            "turnout": evaluate(model, rows),
            "tfidf_baseline": tfidf(train_rows, rows),
            "majority_baseline": majority(train_rows, rows),
        }
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
    args = parser.parse_args()
    datasets = args.shared / "datasets"
    taskmix = load_examples(datasets / "taskmix" / "train.jsonl")
    augment = load_examples(ROOT / "routers" / "data" / "augment.jsonl")
    ood = load_examples(ROOT / "routers" / "data" / "ood_eval.jsonl")
    fit_rows, held_out = split_by_group(taskmix, 0.2, seed=7)
    with tempfile.TemporaryDirectory() as work:
        results = compare(
            fit_rows + augment, {"taskmix held-out templates": held_out, "hand-written OOD": ood}, Path(work) / "t"
        )
        clinc_train = load_examples(datasets / "clinc150" / "train.jsonl")
        clinc_val = load_examples(datasets / "clinc150" / "val.jsonl")
        results |= compare(clinc_train, {"clinc150 val": clinc_val}, Path(work) / "c")
    out = ROOT / "bench" / "results"
    (out / "router-quality.json").write_text(json.dumps(results, indent=1) + "\n")
    per_label = {
        name: {label: row["recall"] for label, row in r["turnout"]["per_label"].items()}
        for name, r in results.items()
        if "clinc" not in name
    }  # type: ignore[index]
    lines = [
        *summary_rows(results),
        "",
        "Per-label recall (Turnout):",
        "",
        "```",
        json.dumps(per_label, indent=1),
        "```",
    ]
    (out / "router-quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
