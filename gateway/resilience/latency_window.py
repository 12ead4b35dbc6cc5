"""A backend's recent latencies: the last answers within a time horizon, and their percentiles."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MIN_SAMPLES = 20
REFRESH_S = 0.5
"""How long sorted samples are reused: sorting on every request would cost more than it tells."""


class LatencyWindow:
    def __init__(self, size: int = 200, horizon_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)  # (when, seconds)
        self._horizon_s = horizon_s
        self._clock = clock
        self._sorted: list[float] = []
        self._sorted_at: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append((self._clock(), seconds))
        if len(self._sorted) < MIN_SAMPLES:
            self._sorted_at = None  # until there are enough, every sample counts at once

    def count(self) -> int:
        """How many samples the window holds (old ones age out only when a percentile is asked)."""
        return len(self._samples)

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the recent samples, or ``None`` below ``MIN_SAMPLES`` of them:
        too few to act on. Samples older than the horizon are dropped, so an old slow spell ages out."""
        now = self._clock()
        if self._sorted_at is None or now - self._sorted_at >= REFRESH_S:
            while self._samples and self._samples[0][0] < now - self._horizon_s:
                self._samples.popleft()
            self._sorted = sorted(seconds for _, seconds in self._samples)
            self._sorted_at = now
        if len(self._sorted) < MIN_SAMPLES:
            return None
        return self._sorted[min(len(self._sorted) - 1, int(q * len(self._sorted)))]
