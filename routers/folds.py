"""Leave-datasets-out splits: every prompt of a dataset falls on the same side.

A router is judged on kinds of prompts it never saw, so its honest score comes from folds of
whole datasets. A row's ``source`` names its template or task (``t0/xsum_DOC_tldr``,
``sni/task137_detoxifying-lms_classification_toxicity``, ``crossner/music``); ``dataset_of``
maps it to the dataset underneath, so that two templates over XSum, or NER over two CrossNER
domains, or QASC in two instruction collections, never sit on both sides of a split.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence

from routers.dataset import Example

T0_DATASETS = (
    "adversarial_qa", "ag_news", "amazon_polarity", "cnn_dailymail", "commonsense_qa", "cosmos_qa",
    "dbpedia_14", "dream", "duorc", "gigaword", "glue_mrpc", "glue_qqp", "imdb", "kilt_tasks_hotpotqa",
    "multi_news", "paws", "qasc", "quarel", "quartz", "ropes", "rotten_tomatoes", "social_i_qa", "trec",
    "wiki_bio", "wiki_hop", "wiki_qa", "wiqa", "xsum", "yelp_review_full",
)  # fmt: skip
TASK_COLLECTIONS = ("bbh", "agieval", "vicuna_bench", "selfinstruct")
"""Collections of unrelated tasks: there each task is its own dataset."""
INSTRUCTION_COLLECTIONS = ("ni1", "sni")
"""Natural Instructions: ``subtask022_cosmosqa_...`` and ``task137_detoxifying-lms_...`` name the dataset second."""


def dataset_of(source: str) -> str:
    """The dataset under a template or task name, spelled the same way across collections."""
    collection, _, rest = source.partition("/")
    if collection == "t0":
        name = next((d for d in T0_DATASETS if rest.startswith(d)), rest)
    elif collection in INSTRUCTION_COLLECTIONS:
        name = rest.split("_")[1] if rest.count("_") else rest
    elif collection in TASK_COLLECTIONS:
        name = source
    else:
        name = collection
    return re.sub(r"[^a-z0-9/]", "", name.lower())


def dataset_folds(examples: Sequence[Example], k: int, seed: int = 0) -> list[list[int]]:
    """``k`` lists of row indices; each dataset lies in exactly one, and every label in several.

    Datasets are dealt largest first to the fold that holds fewest rows of the dataset's main
    label (ties: fewest rows), so each fold holds a fair share of each label and of the data.
    """
    rows_of: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        rows_of[dataset_of(example.group)].append(index)
    label_rows: list[Counter[str]] = [Counter() for _ in range(k)]
    folds: list[list[int]] = [[] for _ in range(k)]
    order = sorted(rows_of, key=lambda name: (-len(rows_of[name]), _stable_hash(name, seed)))
    for name in order:
        rows = rows_of[name]
        main_label = Counter(examples[i].label for i in rows).most_common(1)[0][0]
        target = min(range(k), key=lambda f: (label_rows[f][main_label], len(folds[f]), f))
        folds[target].extend(rows)
        label_rows[target].update(examples[i].label for i in rows)
    return [sorted(fold) for fold in folds]


def _stable_hash(name: str, seed: int) -> int:
    return zlib.crc32(f"{seed}:{name}".encode())
