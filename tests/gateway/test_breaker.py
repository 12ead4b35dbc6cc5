"""The circuit breaker on its own, with a clock the tests move."""

from __future__ import annotations

from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.specs import BreakerSpec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(**spec: float) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker("b", BreakerSpec(**spec), clock=clock), clock  # type: ignore[arg-type]


def test_breaker_opens_after_consecutive_failures() -> None:
    cb, _ = breaker(consecutive_failures=3)
    for _ in range(2):
        cb.record_failure()
    assert cb.state == "closed"
    cb.record_failure()
    assert cb.state == "open"
    assert not cb.try_acquire()


def test_breaker_success_resets_the_consecutive_count() -> None:
    cb, _ = breaker(consecutive_failures=2, min_calls=20, window=20)
    for _ in range(5):
        cb.record_failure()
        cb.record_success()
    assert cb.state == "closed"


def test_breaker_opens_on_failure_ratio_once_enough_calls() -> None:
    cb, _ = breaker(consecutive_failures=100, failure_ratio=0.5, window=10, min_calls=6)
    for _ in range(2):
        cb.record_success()
        cb.record_failure()
    assert cb.state == "closed"  # 2 of 4: too few calls to judge
    cb.record_success()
    cb.record_failure()
    assert cb.state == "open"  # 3 of 6


def test_breaker_half_opens_after_open_s_and_lets_one_probe_through() -> None:
    cb, clock = breaker(consecutive_failures=1, open_s=10)
    cb.record_failure()
    clock.now = 9.9
    assert cb.state == "open"
    clock.now = 10.0
    assert cb.state == "half_open"
    assert cb.try_acquire()
    assert not cb.try_acquire()  # only one probe at a time


def test_probe_success_closes_and_failure_reopens() -> None:
    cb, clock = breaker(consecutive_failures=1, open_s=1)
    cb.record_failure()
    clock.now = 1
    assert cb.try_acquire()
    cb.record_failure()
    assert cb.state == "open"
    clock.now = 2
    assert cb.try_acquire()
    cb.record_success()
    assert cb.state == "closed"
    assert cb.try_acquire()


def test_cancelled_probe_frees_the_probe_slot() -> None:
    cb, clock = breaker(consecutive_failures=1, open_s=1)
    cb.record_failure()
    clock.now = 1
    assert cb.try_acquire()
    cb.release()
    assert cb.state == "half_open"
    assert cb.try_acquire()


def test_passing_health_check_half_opens_an_open_breaker_early() -> None:
    cb, _ = breaker(consecutive_failures=1, open_s=60)
    cb.record_failure()
    cb.hint_recovered()
    assert cb.state == "half_open"


def test_old_failures_leave_the_ratio_window() -> None:
    cb, _ = breaker(consecutive_failures=100, failure_ratio=0.5, window=4, min_calls=4)
    cb.record_failure()
    for _ in range(4):
        cb.record_success()
    cb.record_failure()
    assert cb.state == "closed"  # 1 of the last 4


def test_open_breaker_says_when_it_lets_a_probe_through() -> None:
    cb, clock = breaker(consecutive_failures=1, open_s=10)
    assert cb.seconds_until_probe() == 0.0
    cb.record_failure()
    clock.now = 4
    assert cb.seconds_until_probe() == 6.0
