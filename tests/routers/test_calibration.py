from __future__ import annotations

import numpy as np
import pytest

from routers.calibration import choose_abstain_threshold, expected_calibration_error, fit_temperature, softmax


def overconfident(temperature: float, rows: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels were drawn from softmax(logits / temperature): right only at that temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(rows, 5)).astype(np.float32)
    probabilities = softmax(logits, temperature)
    targets = np.array([rng.choice(5, p=row / row.sum()) for row in probabilities.astype(np.float64)])
    return logits, targets


def test_temperature_scaling_recovers_the_temperature_and_lowers_the_calibration_error() -> None:
    logits, targets = overconfident(2.5)
    temperature = fit_temperature(logits, targets)
    assert temperature == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(softmax(logits), targets)
    after = expected_calibration_error(softmax(logits, temperature), targets)
    assert before > 0.1
    assert after < 0.03


def test_calibrated_rows_sum_to_one() -> None:
    logits, _ = overconfident(1.0, rows=50)
    np.testing.assert_allclose(softmax(logits, 3.0).sum(axis=1), 1.0, rtol=1e-5)


def test_the_abstain_threshold_sits_where_predictions_turn_more_often_wrong_than_right() -> None:
    confidence = np.repeat(np.linspace(0.35, 0.95, 13), 100)
    rest = (1 - confidence) / 2
    probabilities = np.stack([confidence, rest, rest], axis=1).astype(np.float32)
    targets = np.array([0 if i % 100 < c * 100 else 1 for i, c in enumerate(confidence)])  # right as often as sure
    threshold = choose_abstain_threshold(probabilities, targets)
    assert 0.45 <= threshold <= 0.55
