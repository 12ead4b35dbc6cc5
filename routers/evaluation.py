"""Measuring a router: quality per label, against baselines, and its latency per prompt."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from routers.batcher import MicroBatcher
from routers.classifier import TaskClassifier
from routers.classifier_router import ClassifierRouter
from routers.dataset import OUT_OF_SCOPE, Example
from routers.decision import RouteDecision
from routers.examples import ExampleIndex
from routers.factory import LoadedClassifier, route_examples
from routers.routing_text import bounded
from routers.specs import ClassifierRouterSpec

LATENCY_SAMPLE = 200


def quality(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    labels = sorted(set(truth) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro")), 4),
        "per_label": {
            label: {
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion": {"labels": labels, "matrix": confusion_matrix(truth, predicted, labels=labels).tolist()},
    }


def predict(classifier: TaskClassifier, examples: list[Example], threshold: float | None) -> list[str]:
    """Top label per prompt; below ``threshold`` the prediction is ``out_of_scope`` (abstain)."""
    scores = np.concatenate(
        [classifier.scores([e.prompt for e in examples[i : i + 64]]) for i in range(0, len(examples), 64)]
    )
    top = scores.argmax(axis=1)
    labels = [classifier.labels[i] for i in top]
    if threshold is None:
        return labels
    return [
        label if scores[row, i] >= threshold else OUT_OF_SCOPE
        for row, (i, label) in enumerate(zip(top, labels, strict=True))
    ]


def latency_ms(classifier: TaskClassifier, examples: list[Example]) -> dict[str, float]:
    """One prompt at a time, as a request would be scored."""
    timings = []
    for example in examples[:LATENCY_SAMPLE]:
        started = time.perf_counter()
        classifier.scores([example.prompt])
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(float(np.percentile(timings, 50)), 3),
        "p99_ms": round(float(np.percentile(timings, 99)), 3),
    }


def evaluate(classifier: TaskClassifier, examples: list[Example]) -> dict[str, Any]:
    threshold = classifier.manifest.abstain_threshold
    truth = [e.label for e in examples]
    predicted = predict(classifier, examples, threshold)
    report = {"rows": len(examples), **quality(truth, predicted), **latency_ms(classifier, examples)}
    report["majority_baseline_accuracy"] = round(Counter(truth).most_common(1)[0][1] / len(truth), 4)
    if OUT_OF_SCOPE in truth:
        in_scope = [(t, p) for t, p in zip(truth, predicted, strict=True) if t != OUT_OF_SCOPE]
        out_scope = [p for t, p in zip(truth, predicted, strict=True) if t == OUT_OF_SCOPE]
        report["in_scope_accuracy"] = round(sum(t == p for t, p in in_scope) / len(in_scope), 4)
        report["out_of_scope_recall"] = round(sum(p == OUT_OF_SCOPE for p in out_scope) / len(out_scope), 4)
        report["abstain_threshold"] = threshold
    return report


@dataclass(frozen=True)
class _Route:
    chain: tuple[str, ...] = ("evaluation",)
    description: str = ""
    variants: Mapping[str, Any] = field(default_factory=dict)
    sticky: str = "none"


@dataclass(frozen=True)
class _Table:
    """The routing a classifier router sees when each label is a route of its own and abstaining
    means ``out_of_scope``: what ``router eval`` decides among."""

    routes: Mapping[str, _Route]
    router: ClassifierRouterSpec
    default_route: str = OUT_OF_SCOPE
    aliases: Mapping[str, str] = field(default_factory=dict)
    rules: Sequence[Any] = ()


def decide_with_examples(
    classifier: TaskClassifier, prompts: list[str], spec: ClassifierRouterSpec
) -> list[RouteDecision]:
    """Each prompt decided by the live router's own code (:class:`ClassifierRouter`), with the
    examples, threshold and margin of ``spec``, scored one prompt at a time as the live router does."""
    examples = route_examples(spec)
    names = {*classifier.labels, *(e.route for e in examples), OUT_OF_SCOPE}
    table = _Table({name: _Route() for name in names}, spec)
    loaded = LoadedClassifier(classifier, MicroBatcher(classifier.read, 1))
    try:
        embeddings = loaded.embeddings_of([e.prompt for e in examples])
        index = ExampleIndex(examples, embeddings, spec.example_threshold, spec.example_margin, spec.example_thresholds)
        abstain = classifier.manifest.abstain_threshold
        router = ClassifierRouter(spec, table, classifier.labels, loaded.batcher, abstain, index)
        return [router.decision_of(classifier.read([bounded(prompt)])[0]) for prompt in prompts]
    finally:
        loaded.close()


def evaluate_with_examples(
    classifier: TaskClassifier, rows: list[Example], spec: ClassifierRouterSpec, per_row: bool = False
) -> dict[str, Any]:
    """The usual figures for decisions made with examples, and how many each way decided."""
    decisions = decide_with_examples(classifier, [e.prompt for e in rows], spec)
    truth = [e.label for e in rows]
    predicted = [d.route for d in decisions]
    report: dict[str, Any] = {"rows": len(rows), **quality(truth, predicted)}
    report["decided_by"] = dict(Counter(d.decided_by for d in decisions))
    report["examples"] = len(route_examples(spec))
    report["example_threshold"] = spec.example_threshold
    report["example_margin"] = spec.example_margin
    if per_row:
        report["decisions"] = [{"route": d.route, "decided_by": d.decided_by} for d in decisions]
    return report
