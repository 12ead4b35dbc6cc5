"""The classifier alone, as the `auto` rows' yardstick: the shipped model scoring one prompt at a
time on one thread, no server, no event loop. Prompts are those of shared/bench/chat.lua (distinct
each time, so nothing is reused). Prints one row in bench/overhead.sh's format.
    .venv/bin/python -m bench.classifier_alone [SECONDS]
"""

from __future__ import annotations

import sys
import time

from routers.classifier import TaskClassifier


def prompt(n: int) -> str:
    return f"Summarize: the quick brown fox number {n} jumps over the lazy dog."


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    classifier = TaskClassifier(threads=1)
    for n in range(50):  # warm up
        classifier.scores([prompt(n)])
    timings: list[float] = []
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        n += 1
        began = time.perf_counter()
        classifier.scores([prompt(n)])
        timings.append(time.perf_counter() - began)
    timings.sort()
    rate = len(timings) / sum(timings)
    p50, p99 = timings[len(timings) // 2] * 1000, timings[int(len(timings) * 0.99)] * 1000
    print(f"{'classifier':<14} c=1   rps={rate:<10.2f} p50={p50:.2f}ms   p99={p99:.2f}ms   (decisions/s, one thread)")


if __name__ == "__main__":
    main()
