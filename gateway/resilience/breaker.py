"""A circuit breaker per backend: closed, open (skipped), half-open (one probe request)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from gateway.resilience.specs import BreakerSpec

log = logging.getLogger("turnout")
BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Opens after ``consecutive_failures`` in a row or a ``failure_ratio`` of the last ``window``
    calls; after ``open_s`` lets one request through as a probe; its success closes the breaker,
    its failure opens it again. ``clock`` is injectable so tests need not sleep."""

    def __init__(
        self,
        backend: str,
        spec: BreakerSpec,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self._spec = spec
        self._clock = clock
        self._state: BreakerState = "closed"
        self._recent: deque[bool] = deque(maxlen=spec.window)  # True: a failure
        self._failures_in_row = 0
        self._opened_at = 0.0
        self._is_probing = False

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._opened_at >= self._spec.open_s:
            self._move("half_open")
        return self._state

    def seconds_until_probe(self) -> float:
        """How long an open breaker still keeps its backend out (0 when it is not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._spec.open_s - (self._clock() - self._opened_at))

    def try_acquire(self) -> bool:
        """Whether a request may go to the backend now; in half-open, only the one probe may."""
        state = self.state
        if state == "closed":
            return True
        if state == "open" or self._is_probing:
            return False
        self._is_probing = True
        return True

    def release(self) -> None:
        """The acquired call ended without a verdict (cancelled, e.g. a hedge that lost)."""
        self._is_probing = False

    def record_success(self) -> None:
        self._is_probing = False
        self._failures_in_row = 0
        self._recent.append(False)
        if self._state != "closed":
            self._recent.clear()
            self._move("closed")

    def record_failure(self) -> None:
        self._is_probing = False
        self._failures_in_row += 1
        self._recent.append(True)
        if self._state == "half_open" or (self._state == "closed" and self._is_tripped()):
            self._opened_at = self._clock()
            self._move("open")

    def hint_recovered(self) -> None:
        """A health check passed: an open breaker need not wait out ``open_s`` to be probed."""
        if self._state == "open":
            self._move("half_open")

    def _is_tripped(self) -> bool:
        if self._failures_in_row >= self._spec.consecutive_failures:
            return True
        calls = len(self._recent)
        return calls >= self._spec.min_calls and sum(self._recent) / calls >= self._spec.failure_ratio

    def _move(self, state: BreakerState) -> None:
        if state == self._state:
            return
        log.warning("backend %s: circuit breaker %s -> %s", self.backend, self._state, state)
        self._state = state
