"""Labelled prompts for training and evaluating a router, from JSONL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class Example:
    prompt: str
    label: str
    group: str
    """Rows of one group (a prompt template) stay on the same side of a split."""
    weight: float = 1.0
    """How much the row counts in training, from an optional ``weight`` field."""


class DatasetError(ValueError):
    pass


def load_examples(path: Path) -> list[Example]:
    """Rows ``{"prompt", "label"}`` or ``{"text", "intent"}``; ``source`` (if any) is the group,
    ``weight`` (if any) the row's weight in training."""
    examples = []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompt, label = _fields(row)
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{number}: want {{'prompt', 'label'}} or {{'text', 'intent'}}") from exc
            weight = float(row.get("weight", 1.0))
            examples.append(Example(prompt, label, str(row.get("source") or f"row-{number}"), weight))
    if not examples:
        raise DatasetError(f"{path}: no rows")
    return examples


def _fields(row: dict[str, object]) -> tuple[str, str]:
    prompt = row["prompt"] if "prompt" in row else row["text"]
    label = row["label"] if "label" in row else row["intent"]
    if not isinstance(prompt, str) or not isinstance(label, str):
        raise TypeError("prompt and label must be strings")
    return prompt, label
