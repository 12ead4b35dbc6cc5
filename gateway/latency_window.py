"""A backend's recent latencies: the last answers within a time horizon, and their percentiles."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MIN_SAMPLES = 20


class LatencyWindow:
    def __init__(self, size: int = 200, horizon_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=size)  # (when, seconds)
        self._horizon_s = horizon_s
        self._clock = clock
        self._sorted: list[float] | None = None  # kept until the next sample: most requests only read

    def add(self, seconds: float) -> None:
        self._samples.append((self._clock(), seconds))
        self._sorted = None

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of the recent samples, or ``None`` below ``MIN_SAMPLES`` of them:
        too few to act on. Samples older than the horizon are dropped, so an old slow spell ages out."""
        cutoff = self._clock() - self._horizon_s
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
            self._sorted = None
        if len(self._samples) < MIN_SAMPLES:
            return None
        if self._sorted is None:
            self._sorted = sorted(seconds for _, seconds in self._samples)
        return self._sorted[min(len(self._sorted) - 1, int(q * len(self._sorted)))]
