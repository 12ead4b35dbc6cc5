"""Corrections by example: prompts ops give a route, and the requests close to them that follow it.

A classifier router may carry examples (``router.examples`` in the rules, ``router.examples_file``
beside them). Each is embedded once, with the router's own encoder, when the rules version is
built. A request whose routing text is close enough to an example (cosine similarity at or over
the route's threshold) and closer to it than to any example of another route (by the margin)
takes that example's route; otherwise the classifier decides as before. The search is one matrix
product over every example, run beside the model in the router's thread.

The defaults were measured on leave-datasets-out folds (``bench/few_shot.py``,
``bench/results/router-examples.md``): the threshold high enough that examples of one dataset
seldom capture prompts of another, the margin wide enough that two routes' examples close to each
other leave the choice to the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from routers.decision import Neighbour
from routers.specs import DEFAULT_EXAMPLE_MARGIN, DEFAULT_EXAMPLE_THRESHOLD, MAX_EXAMPLES, RouteExample

NEAREST_SHOWN = 3
PREVIEW_CHARS = 120


class ExamplesInvalid(ValueError):
    """An examples file that cannot be used; ``problems`` are (line, message), line from 1."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("; ".join(f"{path} line {line}: {message}" for line, message in problems))


def read_examples_file(path: Path, limit: int = MAX_EXAMPLES) -> list[RouteExample]:
    """Rows ``{"route", "prompt"}`` of a JSON Lines file (blank lines skipped); every bad row is
    reported at its line, and a file over ``limit`` rows is refused at the first row past it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExamplesInvalid(path, [(0, f"cannot be read: {exc}")]) from None
    examples: list[RouteExample] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(examples) + len(problems) >= limit:
            problems.append((number, f"one example too many: router.max_examples allows {limit} here"))
            break
        try:
            examples.append(RouteExample.model_validate_json(line))
        except ValueError as exc:
            problems.append((number, _first_error(exc)))
    if problems:
        raise ExamplesInvalid(path, problems[:20])
    return examples


def example_lines(path: Path) -> list[int]:
    """The line number of each example in a file :func:`read_examples_file` accepted, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, 1) if line.strip()]


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    first = errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else f"not an example {{route, prompt}}: {message}"


@dataclass(frozen=True)
class ExampleMatch:
    """The examples' verdict on one request: the route they give (``None``: the classifier
    decides), why, and the nearest examples."""

    route: str | None
    reason: str
    nearest: tuple[Neighbour, ...]


def unit_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.clip(norms, 1e-12, None), dtype=np.float32)


class ExampleIndex:
    """A rules version's examples, embedded: asked once per request the classifier would decide."""

    def __init__(
        self,
        examples: Sequence[RouteExample],
        embeddings: NDArray[np.float32],
        threshold: float = DEFAULT_EXAMPLE_THRESHOLD,
        margin: float = DEFAULT_EXAMPLE_MARGIN,
        thresholds: Mapping[str, float] | None = None,
    ) -> None:
        if len(examples) != len(embeddings):
            raise ValueError(f"{len(examples)} examples but {len(embeddings)} embeddings")
        order = sorted(range(len(examples)), key=lambda i: examples[i].route)  # each route's rows together
        self.routes = sorted({e.route for e in examples})
        route_of_row = [examples[i].route for i in order]
        self._starts = np.array([route_of_row.index(r) for r in self.routes], dtype=np.int64)
        self._route_ids = np.array([self.routes.index(r) for r in route_of_row], dtype=np.int32)
        self._matrix = unit_rows(embeddings[order]) if len(examples) else np.zeros((0, 0), np.float32)
        self._previews = [examples[i].prompt[:PREVIEW_CHARS] for i in order]
        self._margin = margin
        chosen = thresholds or {}
        self._thresholds = np.array([chosen.get(r, threshold) for r in self.routes], dtype=np.float32)

    def __len__(self) -> int:
        return len(self._previews)

    def match(self, embedding: NDArray[np.float32]) -> ExampleMatch:
        """Whether one request's embedding (any norm) takes an example's route."""
        if not len(self):
            return ExampleMatch(None, "no examples", ())
        query = embedding / max(float(np.linalg.norm(embedding)), 1e-12)
        similarities = self._matrix @ query.astype(np.float32)
        nearest = self._nearest(similarities)
        per_route = np.maximum.reduceat(similarities, self._starts)  # one pass: each route's closest
        route_id = int(per_route.argmax())
        route, similarity = self.routes[route_id], float(per_route[route_id])
        runner_up = float(np.partition(per_route, -2)[-2]) if len(per_route) > 1 else -1.0
        threshold = float(self._thresholds[route_id])
        if similarity < threshold:
            reason = f"nearest example ({route!r}) at {similarity:.3f}, under its threshold {threshold}"
            return ExampleMatch(None, reason, nearest)
        if similarity - runner_up < self._margin:
            reason = f"nearest example ({route!r}) at {similarity:.3f}, within {self._margin} of another route's"
            return ExampleMatch(None, reason, nearest)
        reason = f"example of route {route!r} at similarity {similarity:.3f} (threshold {threshold})"
        return ExampleMatch(route, reason, nearest)

    def _nearest(self, similarities: NDArray[np.float32]) -> tuple[Neighbour, ...]:
        count = min(NEAREST_SHOWN, len(similarities))
        top = np.argpartition(-similarities, count - 1)[:count]
        top = top[np.argsort(-similarities[top])]
        return tuple(
            Neighbour(self.routes[self._route_ids[i]], round(float(similarities[i]), 4), self._previews[i]) for i in top
        )
