"""The garbage collector of a serving process, tuned once start-up is done.

Under load the collector was the pinned path's largest single cost: each young collection walks
the objects of every request in flight, and the full ones walked everything start-up loaded (the
router's model, litellm, the rules' schemas), pausing the loop for the p99 of all requests in
flight (bench/results/profile-pinned.txt). So, once the app has started: one last full collection,
everything left alive moved out of the collector's sight (``gc.freeze``: it lives as long as the
process anyway), and young collections made rarer. Reference counting still frees almost
everything a request allocates at once; the collector is left only cycles, found as surely as before.
"""

from __future__ import annotations

import gc

OLDER_THRESHOLDS = (20, 20)
"""Young collections per middle-aged one, and those per full one (Python's: 10 and 10)."""


def settle_after_start(young_threshold: int) -> None:
    """Freeze what start-up left alive and set the young threshold; 0 changes nothing."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, *OLDER_THRESHOLDS)
