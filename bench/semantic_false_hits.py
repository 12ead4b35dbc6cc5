"""How often would the semantic cache serve a wrong answer? Measured, at several thresholds.

- wrong-intent pairs: two CLINC150 val requests of *different* intents (a hit is wrong);
- number-changed pairs: a GSM8K question and the same question with one number changed
  (a hit is wrong), with and without the identifier guard;
- same-intent pairs: two CLINC150 requests of the same intent (a hit is plausible, not certain);
- paraphrase pairs: hand-written rewordings of one question (a hit is right).
Uses the gateway's semantic encoder and guard. Writes bench/results/semantic-cache.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from gateway.cache.semantic import SEMANTIC_HEAD_TOKENS, SEMANTIC_TAIL_TOKENS, identifiers_of
from routers.classifier import MODELS_DIR
from routers.encoder import Encoder

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.85, 0.90, 0.95)
PAIRS = 3000
PARAPHRASES = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("Write a haiku about autumn.", "Compose a haiku about the autumn season."),
    ("Summarize the plot of Hamlet.", "Give me a summary of Hamlet's plot."),
    ("How do I cancel my subscription?", "How can I cancel my subscription?"),
    ("What time does the store close?", "When does the store close?"),
    ("Translate 'good morning' into Spanish.", "How do you say 'good morning' in Spanish?"),
    ("What are the symptoms of the flu?", "What symptoms does the flu cause?"),
    ("Explain how photosynthesis works.", "Can you explain how photosynthesis works?"),
    ("Recommend a good science fiction book.", "Can you recommend a good sci-fi book?"),
    ("How do I make pancakes?", "What's the way to make pancakes?"),
    ("Why is the sky blue?", "What makes the sky blue?"),
    ("List the planets in the solar system.", "Name the planets of the solar system."),
    ("How do I change a flat tire?", "How can I change a flat tyre?"),
    ("What is machine learning?", "Explain what machine learning is."),
    ("Tell me a joke about cats.", "Tell me a cat joke."),
]


def cosines(encoder: Encoder, pairs: list[tuple[str, str]]) -> np.ndarray:
    left = np.concatenate([encoder.encode([a for a, _ in pairs[i : i + 64]]) for i in range(0, len(pairs), 64)])
    right = np.concatenate([encoder.encode([b for _, b in pairs[i : i + 64]]) for i in range(0, len(pairs), 64)])
    return (left * right).sum(axis=1)


def hit_rates(encoder: Encoder, pairs: list[tuple[str, str]], guard: bool = True) -> list[float]:
    similarity = cosines(encoder, pairs)
    same_ids = (
        np.array([identifiers_of(a) == identifiers_of(b) for a, b in pairs]) if guard else np.ones(len(pairs), bool)
    )
    return [float(np.mean((similarity >= t) & same_ids)) for t in THRESHOLDS]


def change_a_number(text: str, rng: random.Random) -> str | None:
    numbers = list(re.finditer(r"\d+", text))
    if not numbers:
        return None
    match = rng.choice(numbers)
    return text[: match.start()] + str(int(match.group(0)) + rng.randint(1, 9)) + text[match.end() :]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args()
    rng = random.Random(0)
    clinc = [json.loads(line) for line in (args.shared / "datasets" / "clinc150" / "val.jsonl").open()]
    clinc = [row for row in clinc if row["intent"] != "out_of_scope"]
    by_intent: dict[str, list[str]] = {}
    for row in clinc:
        by_intent.setdefault(row["intent"], []).append(row["text"])
    wrong = []
    while len(wrong) < PAIRS:
        a, b = rng.sample(clinc, 2)
        if a["intent"] != b["intent"]:
            wrong.append((a["text"], b["text"]))
    same = [tuple(rng.sample(by_intent[rng.choice(list(by_intent))], 2)) for _ in range(PAIRS)]
    math = [json.loads(line)["prompt"] for line in (args.shared / "datasets" / "taskmix" / "train.jsonl").open()]
    math = [p for p in math if p.startswith(("A ", "John", "Mary", "Tom", "There")) and re.search(r"\d", p)][:1000]
    numbers = [(p, changed) for p in math if (changed := change_a_number(p, rng))]
    encoder = Encoder(MODELS_DIR / "minilm-l6", None, SEMANTIC_HEAD_TOKENS, SEMANTIC_TAIL_TOKENS)
    rows = [
        ("different intents (CLINC150): wrong if hit", hit_rates(encoder, wrong)),
        (
            f"one number changed ({len(numbers)} GSM8K): wrong if hit, no guard",
            hit_rates(encoder, numbers, guard=False),
        ),
        ("one number changed: wrong if hit, with the identifier guard", hit_rates(encoder, numbers)),
        ("same intent (CLINC150): plausible if hit", hit_rates(encoder, same)),  # type: ignore[arg-type]
        (f"hand-written paraphrases ({len(PARAPHRASES)}): right if hit", hit_rates(encoder, PARAPHRASES)),
    ]
    header = "| pair kind | " + " | ".join(f"hit rate at {t}" for t in THRESHOLDS) + " |"
    lines = [header, "| --- |" + " --- |" * len(THRESHOLDS)]
    lines += [f"| {name} | " + " | ".join(f"{rate:.1%}" for rate in rates) + " |" for name, rates in rows]
    (ROOT / "bench" / "results" / "semantic-cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
