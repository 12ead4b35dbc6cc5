from __future__ import annotations

from pathlib import Path

import numpy as np

from routers.ngram import NgramScorer, features
from tests.routers.test_classifier import PROMPTS


def test_features_are_normalised_and_order_sensitive_through_bigrams() -> None:
    found = features("Write a function")
    assert abs(sum(v * v for v in found.values()) - 1) < 1e-6
    assert features("dog bites man") != features("man bites dog")


def test_scores_follow_the_given_label_order_and_survive_a_round_trip(tmp_path: Path) -> None:
    texts = [p for prompts in PROMPTS.values() for p in prompts]
    labels = [label for label, prompts in PROMPTS.items() for _ in prompts]
    forward = NgramScorer.fit(texts, labels, [1.0] * len(texts), ["code", "math", "qa"])
    reverse = NgramScorer.fit(texts, labels, [1.0] * len(texts), ["qa", "math", "code"])
    probe = "Compute 15% of 200"
    np.testing.assert_allclose(forward.scores(probe), reverse.scores(probe)[::-1], atol=1e-5)
    forward.save(tmp_path / "ngram.npz")
    np.testing.assert_allclose(NgramScorer.load(tmp_path / "ngram.npz").scores(probe), forward.scores(probe), atol=1e-2)
    assert int(forward.scores(probe).argmax()) == 1
