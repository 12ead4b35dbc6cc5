"""Making a router's score mean what it says: temperature scaling, reliability, when to abstain.

Two abstain rules: where predictions turn more often wrong than right (the shipped task router,
which has no out-of-scope rows), and a stated recall of out-of-scope rows (operators' data).
They are fitted on held-out *datasets* (out-of-fold logits of a leave-datasets-out run),
never on held-out rows of datasets the model trained on: a model is always sure of templates it
has seen, and a temperature fitted there would make it more sure still.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray


def softmax(logits: NDArray[np.float32], temperature: float = 1.0) -> NDArray[np.float32]:
    scaled = logits / temperature
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


def negative_log_likelihood(logits: NDArray[np.float32], targets: NDArray[np.int64], temperature: float) -> float:
    probabilities = softmax(logits, temperature)[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(probabilities, 1e-12, None)).mean())


def fit_temperature(logits: NDArray[np.float32], targets: NDArray[np.int64]) -> float:
    """The temperature minimising the negative log-likelihood (a one-parameter convex fit)."""
    low, high = np.log(0.05), np.log(20.0)
    for _ in range(60):  # golden-section search over log T
        a = high - (high - low) / 1.618
        b = low + (high - low) / 1.618
        if negative_log_likelihood(logits, targets, float(np.exp(a))) < negative_log_likelihood(
            logits, targets, float(np.exp(b))
        ):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


def expected_calibration_error(probabilities: NDArray[np.float32], targets: NDArray[np.int64], bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width confidence bins, weighted by size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += float(inside.mean()) * abs(float(confidence[inside].mean()) - float(correct[inside].mean()))
    return error


def choose_abstain_threshold(probabilities: NDArray[np.float32], targets: NDArray[np.int64]) -> float:
    """The confidence under which a prediction is more often wrong than right on held-out data.

    Accepting a prediction pays when it is right and costs when it is wrong (the default route
    would have served the request in general terms): the threshold maximises right minus wrong
    among the accepted ones.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    best, best_value = 0.0, -np.inf
    for threshold in np.linspace(0.0, 0.95, 96):
        accepted = confidence >= threshold
        value = float(correct[accepted].sum() - (~correct[accepted]).sum())
        if value > best_value:
            best, best_value = float(threshold), value
    return round(best, 3)


def out_of_scope_threshold(
    scores: NDArray[np.float32], is_out_of_scope: NDArray[np.bool_], out_of_scope_recall: float
) -> float:
    """For data with ``out_of_scope`` rows: the lowest confidence bar that still sends
    ``out_of_scope_recall`` of them to the default route, so in-scope rows lose as little as that allows."""
    confidence = scores.max(axis=1)
    for threshold in np.linspace(0.0, 0.99, 100):
        if float(np.mean(confidence[is_out_of_scope] < threshold)) >= out_of_scope_recall:
            return round(float(threshold), 3)
    return 0.99
