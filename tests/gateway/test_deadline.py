"""Deadlines as values, and the client's budget header."""

from __future__ import annotations

import pytest

from contracts.errors import RequestError
from gateway.resilience.deadline import Deadline, requested_budget_ms
from gateway.resilience.latency_window import LatencyWindow


def test_deadline_counts_down_from_its_start() -> None:
    deadline = Deadline.start(1000, now=100.0)
    assert deadline.remaining(now=100.25) == pytest.approx(0.75)
    assert deadline.elapsed_ms(now=100.25) == 250
    assert deadline.remaining(now=102.0) == 0.0
    assert deadline.is_expired(now=101.0)


def test_first_chunk_budget_is_never_past_the_whole_budget() -> None:
    assert Deadline.start(1000, 300, now=0.0).remaining_first_chunk(now=0.0) == pytest.approx(0.3)
    assert Deadline.start(1000, 5000, now=0.0).remaining_first_chunk(now=0.0) == pytest.approx(1.0)
    assert Deadline.start(1000, None, now=0.0).remaining_first_chunk(now=0.0) == pytest.approx(1.0)


def test_budget_header_tightens_and_never_loosens() -> None:
    assert requested_budget_ms(None, 2000) == 2000
    assert requested_budget_ms("500", 2000) == 500
    assert requested_budget_ms(" 500 ", 2000) == 500
    assert requested_budget_ms("9000", 2000) == 2000


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "fast", ""])
def test_bad_budget_header_is_rejected(value: str) -> None:
    with pytest.raises(RequestError) as caught:
        requested_budget_ms(value, 2000)
    assert caught.value.status == 400
    assert caught.value.param == "x-turnout-budget-ms"


def test_latency_window_needs_enough_recent_samples() -> None:
    now = [0.0]
    window = LatencyWindow(size=100, horizon_s=10, clock=lambda: now[0])
    for i in range(19):
        window.add(i / 100)
    assert window.percentile(0.5) is None
    window.add(0.19)
    assert window.percentile(0.5) == pytest.approx(0.10)
    assert window.percentile(0.95) == pytest.approx(0.19)
    now[0] = 11.0  # every sample is past the horizon
    assert window.percentile(0.5) is None
