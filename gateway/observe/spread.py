"""Latencies kept as counts in geometric buckets, so that replicas' tallies add up in a shared
store (a hash field per bucket) and a percentile can still be read from the sum.

Bucket ``i`` holds ``[GROWTH**i, GROWTH**(i+1))`` milliseconds (bucket 0 also everything under
1 ms); a percentile read back is its bucket's geometric middle, within 6 % of the truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

GROWTH = 1.125
LAST = 120
"""GROWTH ** 120 ms is about 21 minutes: everything longer lands in the last bucket."""
_LOG_GROWTH = math.log(GROWTH)


def bucket_of(ms: float) -> int:
    if ms <= 1.0:
        return 0
    return min(int(math.log(ms) / _LOG_GROWTH), LAST)


def middle_of(bucket: int) -> float:
    return GROWTH ** (bucket + 0.5) if bucket else 1.0


def percentile(counts: Mapping[int, float], q: float) -> float | None:
    """The ``q`` (0..1) percentile, in milliseconds, of the latencies counted in ``counts``."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            return round(middle_of(bucket), 2)
    return round(middle_of(max(counts)), 2)
