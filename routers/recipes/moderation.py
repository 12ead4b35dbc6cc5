"""The recipe for the shipped moderation model (``routers/models/moderation``, ``builtin:moderation``).

    .venv/bin/python -m routers.recipes.moderation   # ~10 min on 2 cores (the embeddings are cached after)

Trained on ``../shared/datasets/moderation/train.jsonl`` (Davidson et al. 2017 tweets, MIT;
ToxiGen demonstration sentences, MIT) and, as the ``ok`` class, user prompts of the task router's
datasets and sentences taken from them (``../shared/datasets/taskmix``, licences in that README;
sources about toxicity or hate are left out), over the shipped all-MiniLM-L6-v2 encoder with the n-gram blend, as
``turnout router train`` does. Labels: ``hate``, ``offensive``, ``ok``.

Judged on whole sources it never saw, four folds: ToxiGen's target groups dealt three to a fold,
the task datasets dealt by name; a fold's model never saw its groups or datasets. Davidson's
tweets are always trained on (one source, it cannot be held out from itself). The flagged
probability of a text is the summed probability of ``hate`` and ``offensive`` over its worst
window (:mod:`routers.moderation`), as the guardrail computes it. The shipped threshold is the
one that maximises F1 of the flagged class on the out-of-fold scores. Then the model trained on
everything is scored once on ``routers/data/moderation_probe.jsonl``: hand-written model answers
and prompts (hate, harassment, violence, self-harm, sexual content, and harmless text that
mentions groups or sensitive topics) that no model was ever trained or tuned on.
Figures go to ``bench/results/moderation.json`` (quoted in the README).
"""

from __future__ import annotations

import argparse
import json
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from routers.classifier import MODELS_DIR, SHIPPED_PREFIX
from routers.dataset import Example
from routers.encoder import Encoder
from routers.folds import dataset_of
from routers.moderation import windows
from routers.training import DEFAULT_ENCODER, Experts, embed, export_head

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "datasets"
PROBE = ROOT / "routers" / "data" / "moderation_probe.jsonl"
FLAG_LABELS = ("hate", "offensive")
FOLDS = 4
HEAD_TOKENS = TAIL_TOKENS = 48
NEGATIVES_PER_DATASET = 150
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
TOXIC_SOURCES = ("hate", "toxic", "offens", "tweeteval", "davidson", "detox", "hatexplain")
C = 8.0
CURVE = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Thresholds the results also give precision and recall at: an operator's choice between them."""
NGRAM_WEIGHT = 0.3


def moderation_rows(path: Path) -> list[Example]:
    rows = []
    for line in path.open():
        row = json.loads(line)
        rows.append(Example(row["text"], row["label"], row["source"]))
    return rows


def task_prompts(folder: Path) -> list[Example]:
    """User prompts of the task datasets as ``ok``: up to ``NEGATIVES_PER_DATASET`` per dataset, and
    as many of their sentences alone (short harmless prose, as a model's answers are: without them
    any short statement reads like a tweet, and the tweets are mostly labelled offensive)."""
    by_dataset: dict[str, list[str]] = defaultdict(list)
    for name in ("train.jsonl", "extra_train.jsonl", "extra2_train.jsonl"):
        for line in (folder / name).open():
            row = json.loads(line)
            dataset = dataset_of(row["source"])
            if any(word in row["source"].lower() for word in TOXIC_SOURCES):
                continue
            if len(by_dataset[dataset]) < NEGATIVES_PER_DATASET:
                by_dataset[dataset].append(row["prompt"])
    rows = [Example(text, "ok", f"taskmix:{dataset}") for dataset, texts in by_dataset.items() for text in texts]
    for dataset, texts in by_dataset.items():
        sentences = [s for text in texts for s in SENTENCE_END.split(text) if 30 <= len(s.strip()) <= 250]
        rows += [Example(s.strip(), "ok", f"taskmix:{dataset}") for s in sentences[:NEGATIVES_PER_DATASET]]
    return rows


def fold_of(example: Example, toxigen_groups: list[str]) -> int | None:
    """The fold that holds the row's source out, or None for sources always trained on."""
    if example.group.startswith("toxigen/"):
        return toxigen_groups.index(example.group) % FOLDS
    if example.group.startswith("taskmix:"):
        return zlib.crc32(example.group.encode()) % FOLDS
    return None


def pieces_of(examples: list[Example]) -> tuple[list[str], NDArray[np.int64]]:
    texts: list[str] = []
    owners: list[int] = []
    for index, example in enumerate(examples):
        for piece in windows(example.prompt) or [""]:
            texts.append(piece)
            owners.append(index)
    return texts, np.array(owners)


def flagged_scores(experts: Experts, texts: list[str], embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
    labels = [str(label) for label in experts.head.classes_]
    columns = [labels.index(label) for label in FLAG_LABELS]
    return np.asarray(experts.scores(texts, embeddings, NGRAM_WEIGHT)[:, columns].sum(axis=1), dtype=np.float32)


def worst_per_owner(values: NDArray[np.float32], owners: NDArray[np.int64], count: int) -> NDArray[np.float32]:
    worst = np.zeros(count, dtype=np.float32)
    np.maximum.at(worst, owners, values)
    return worst


@dataclass(frozen=True)
class Corpus:
    """Every row, and every window of every row with its embedding and the row it came from."""

    rows: list[Example]
    texts: list[str]
    owners: NDArray[np.int64]
    embeddings: NDArray[np.float32]

    def fit(self, chosen: NDArray[np.bool_]) -> Experts:
        """Trained on every window of the chosen rows (a long prompt teaches each of its windows)."""
        windows_of = np.flatnonzero(chosen[self.owners])
        examples = [Example(self.texts[i], self.rows[self.owners[i]].label, "") for i in windows_of]
        return Experts.fit(examples, self.embeddings[windows_of], C, ngram=True)


def precision_recall(scores: NDArray[np.float32], truth: NDArray[np.bool_], threshold: float) -> dict[str, float | int]:
    predicted = scores >= threshold
    hits = int((predicted & truth).sum())
    return {
        "flagged_rows": int(truth.sum()),
        "ok_rows": int((~truth).sum()),
        "precision": round(hits / max(1, int(predicted.sum())), 3),
        "recall": round(hits / max(1, int(truth.sum())), 3),
        "false_positive_rate": round(int((predicted & ~truth).sum()) / max(1, int((~truth).sum())), 4),
    }


def best_threshold(scores: NDArray[np.float32], truth: NDArray[np.bool_]) -> float:
    best, chosen = -1.0, 0.5
    for threshold in np.arange(0.05, 0.96, 0.01):
        figures = precision_recall(scores, truth, float(threshold))
        p, r = float(figures["precision"]), float(figures["recall"])
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        if f1 > best:
            best, chosen = f1, round(float(threshold), 2)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR / "moderation")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "moderation.json")
    args = parser.parse_args()
    rows = moderation_rows(DATA / "moderation" / "train.jsonl") + task_prompts(DATA / "taskmix")
    groups = sorted({e.group for e in rows if e.group.startswith("toxigen/")})
    encoder = Encoder(MODELS_DIR / DEFAULT_ENCODER, head_tokens=HEAD_TOKENS, tail_tokens=TAIL_TOKENS)
    texts, owners = pieces_of(rows)
    print(f"{len(rows)} rows, {len(texts)} windows; embedding", flush=True)
    corpus = Corpus(rows, texts, owners, embed(encoder, texts))
    embeddings = corpus.embeddings
    folds = np.array([-1 if (f := fold_of(e, groups)) is None else f for e in rows])
    out_of_fold = np.full(len(rows), np.nan, dtype=np.float32)
    for fold in range(FOLDS):
        experts = corpus.fit(folds != fold)
        held = folds[owners] == fold
        scores = flagged_scores(experts, [t for t, h in zip(texts, held, strict=True) if h], embeddings[held])
        worst = worst_per_owner(scores, owners[held], len(rows))
        for index in {int(o) for o in owners[held]}:
            out_of_fold[index] = worst[index]
        print(f"fold {fold}: held out {int(held.sum())} windows", flush=True)
    scored = ~np.isnan(out_of_fold)
    truth = np.array([e.label in FLAG_LABELS for e in rows])
    threshold = best_threshold(out_of_fold[scored], truth[scored])
    by_kind: dict[str, dict[str, float | int]] = {}
    for kind, prefix in (("toxigen (implicit hate, 12 groups)", "toxigen/"), ("task prompts (ok)", "taskmix:")):
        of_kind = np.array([e.group.startswith(prefix) for e in rows]) & scored
        by_kind[kind] = precision_recall(out_of_fold[of_kind], truth[of_kind], threshold)
    final = corpus.fit(np.ones(len(rows), dtype=bool))
    probe = [json.loads(line) for line in PROBE.open()]
    probe_texts, probe_owners = pieces_of([Example(r["text"], r["label"], "probe") for r in probe])
    probe_scores = worst_per_owner(
        flagged_scores(final, probe_texts, encoder.encode(probe_texts)), probe_owners, len(probe)
    )
    probe_truth = np.array([r["label"] == "flag" for r in probe])
    recall_by_category = {}
    for category in sorted({r["category"] for r in probe if r["label"] == "flag"}):
        in_category = np.array([r["category"] == category for r in probe])
        caught = int((probe_scores[in_category] >= threshold).sum())
        recall_by_category[category] = f"{caught}/{int(in_category.sum())}"
    curve = [
        {
            "threshold": at,
            "held_out_sources": precision_recall(out_of_fold[scored], truth[scored], at),
            "handwritten_probe": precision_recall(probe_scores, probe_truth, at),
        }
        for at in CURVE
    ]
    results = {
        "threshold": threshold,
        "curve": curve,
        "held_out_sources": precision_recall(out_of_fold[scored], truth[scored], threshold),
        "held_out_by_kind": by_kind,
        "handwritten_probe": precision_recall(probe_scores, probe_truth, threshold),
        "handwritten_recall_by_category": recall_by_category,
        "trained_on": dict(Counter(e.label for e in rows)),
    }
    write_model(final, args.out, threshold, results)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def write_model(final: Experts, out: Path, threshold: float, results: dict[str, object]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    export_head(final.head, out / "head.onnx")
    assert final.ngram is not None
    final.ngram.save(out / "ngram.npz")
    manifest = {
        "labels": [str(label) for label in final.head.classes_],
        "encoder": SHIPPED_PREFIX + DEFAULT_ENCODER,
        "head_tokens": HEAD_TOKENS,
        "tail_tokens": TAIL_TOKENS,
        "ngram_weight": NGRAM_WEIGHT,
        "flag_labels": list(FLAG_LABELS),
        "threshold": threshold,
        "recipe": "routers/recipes/moderation.py",
        "held_out": results["held_out_sources"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
