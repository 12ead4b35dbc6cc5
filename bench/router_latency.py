"""Classification latency on CPU: prompts of about 20, 200 and 500 tokens, 1 and 16 at a time.

Run pinned to one core for the issue's target (p99 < 10 ms for a 200-token prompt):
    taskset -c 0 .venv/bin/python bench/router_latency.py
Each request is scored as the gateway does it, off the event loop through the batcher; 16
concurrent requests are measured with and without micro-batching, and one at a time with 10,000
examples loaded (the nearest-example search runs after the model, in its thread; the examples are
random unit vectors, since the search costs the same whatever they say). Writes
bench/results/router-latency.txt.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np

from routers.batcher import MicroBatcher
from routers.classifier import Reading, TaskClassifier
from routers.examples import ExampleIndex
from routers.specs import MAX_EXAMPLES, RouteExample

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 40
SEARCH_ROUNDS = 300
FILLER = ["the", "quarterly", "report", "shows", "revenue", "growth", "in", "every", "region", "while", "costs", "flat"]
ASKS = ["Summarize the following text:", "Classify the sentiment of this text:", "Who is mentioned in this text?"]


def prompt_of(tokens: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return f"{ASKS[seed % len(ASKS)]} {' '.join(rng.choice(FILLER, size=max(tokens - 8, 1)))}"


def example_index(classifier: TaskClassifier, count: int) -> ExampleIndex:
    width = classifier.encoder.encode(["width"]).shape[1]
    vectors = np.random.default_rng(0).standard_normal((count, width)).astype(np.float32)
    examples = [RouteExample(route=classifier.labels[i % len(classifier.labels)], prompt=f"e{i}") for i in range(count)]
    return ExampleIndex(examples, vectors)


async def measure(
    classifier: TaskClassifier,
    tokens: int,
    concurrency: int,
    max_batch: int,
    index: ExampleIndex | None = None,
    rounds: int = ROUNDS,
) -> list[float]:
    batcher = MicroBatcher(classifier.read, max_batch)
    timings: list[float] = []

    def searched(reading: Reading) -> object:
        return index.match(reading.embedding) if index is not None else reading

    async def one(seed: int) -> None:
        text = prompt_of(tokens, seed)
        started = time.perf_counter()
        await batcher.score_then(text, searched)
        timings.append((time.perf_counter() - started) * 1000)

    for round_ in range(rounds):
        await asyncio.gather(*(one(round_ * 100 + i) for i in range(concurrency)))
    batcher.close()
    return timings


def main() -> None:
    classifier = TaskClassifier(threads=1)
    classifier.scores(["warm up"])
    cores = len(os.sched_getaffinity(0))
    manifest = classifier.manifest
    lines = [
        f"# router latency: {cores} core(s), ONNX Runtime 1 thread on {classifier.encoder.provider}",
        f"# the model reads {manifest.head_tokens} head + {manifest.tail_tokens} tail tokens of a prompt",
    ]
    for tokens in (20, 200, 500):
        for concurrency, max_batch in ((1, 1), (16, 1), (16, 16)):
            t = asyncio.run(measure(classifier, tokens, concurrency, max_batch))
            lines.append(
                f"~{tokens:>3} tokens  concurrency {concurrency:>2} batch<={max_batch:>2}"
                f"  p50 {np.percentile(t, 50):7.3f} ms  p99 {np.percentile(t, 99):7.3f} ms"
            )
    index = example_index(classifier, MAX_EXAMPLES)
    for tokens in (20, 200):
        for loaded in (None, index):
            t = asyncio.run(measure(classifier, tokens, 1, 1, loaded, SEARCH_ROUNDS))
            lines.append(
                f"~{tokens:>3} tokens  one at a time, {len(loaded) if loaded else 0:>6,} examples"
                f"  p50 {np.percentile(t, 50):7.3f} ms  p99 {np.percentile(t, 99):7.3f} ms"
            )
    (ROOT / "bench" / "results" / "router-latency.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
