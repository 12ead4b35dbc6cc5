"""Building the router a rules file asks for; ONNX models load only when it asks for them.

A loaded classifier model is the expensive part: a rebuild reuses the one loaded for the same
model directory and settings, and only the cheap decision layer around it is made anew.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from backends.base import Backend
from routers.decision import Router
from routers.default_route import DefaultRouteRouter
from routers.specs import (
    MAX_EXAMPLES,
    ClassifierRouterSpec,
    DefaultRouterSpec,
    LLMRouterSpec,
    RouteExample,
    RoutingTable,
)

if TYPE_CHECKING:
    from routers.batcher import MicroBatcher
    from routers.classifier import Reading, TaskClassifier

ModelKey = tuple[str, int | None, int | None]
"""A loaded model's identity: its directory, ONNX Runtime threads, largest batch."""


EMBEDDINGS_KEPT = 2 * MAX_EXAMPLES


@dataclass(eq=False)
class LoadedClassifier:
    """A task classifier in memory with the batcher that feeds it, and the embeddings of the
    examples it was given, kept so that a new rules version embeds only its new examples."""

    classifier: TaskClassifier
    batcher: MicroBatcher[Reading]
    embedded: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    _embedding: threading.Lock = field(default_factory=threading.Lock)
    """Held while ``embedded`` changes: a serving build and a dry run's may embed at once."""

    def embeddings_of(self, prompts: list[str]) -> NDArray[np.float32]:
        """One row per prompt, as a request with that routing text is embedded; call off the event loop."""
        with self._embedding:
            return self._embeddings_of(prompts)

    def _embeddings_of(self, prompts: list[str]) -> NDArray[np.float32]:
        missing = list(dict.fromkeys(p for p in prompts if p not in self.embedded))
        for start in range(0, len(missing), 32):
            chunk = missing[start : start + 32]
            self.embedded.update(zip(chunk, self.classifier.encoder.encode(chunk), strict=True))
        rows = np.stack([self.embedded[p] for p in prompts]) if prompts else np.zeros((0, 0), np.float32)
        if len(self.embedded) > EMBEDDINGS_KEPT:  # the oldest go; this version's are in rows already
            for prompt in list(self.embedded)[: len(self.embedded) - EMBEDDINGS_KEPT]:
                del self.embedded[prompt]
        return rows

    def close(self) -> None:
        self.batcher.close()


@dataclass
class RouterHandle:
    router: Router
    description: str
    models: dict[ModelKey, LoadedClassifier] = field(default_factory=dict)
    """The models the router uses, loaded for it or kept from an earlier handle; their owner closes them."""

    def close(self) -> None:
        for model in self.models.values():
            model.close()


def build_router(
    rules: RoutingTable,
    backends: Mapping[str, Backend],
    threads: int | None,
    max_batch: int | None,
    loaded: Mapping[ModelKey, LoadedClassifier] | None = None,
) -> RouterHandle:
    """The router for ``rules``; a model in ``loaded`` with the same key is used, not loaded again."""
    spec = rules.router
    if isinstance(spec, DefaultRouterSpec):
        return RouterHandle(DefaultRouteRouter(rules), "default route")
    models: dict[ModelKey, LoadedClassifier] = {}
    if isinstance(spec, ClassifierRouterSpec):
        router, description = _classifier(spec, rules, (threads, max_batch), loaded or {}, models)
        return RouterHandle(router, description, models)
    return _llm(spec, rules, backends, (threads, max_batch), loaded or {}, models)


def _classifier(
    spec: ClassifierRouterSpec,
    rules: RoutingTable,
    settings: tuple[int | None, int | None],
    loaded: Mapping[ModelKey, LoadedClassifier],
    models: dict[ModelKey, LoadedClassifier],
) -> tuple[Router, str]:
    from routers.classifier import SHIPPED_MODEL
    from routers.classifier_router import ClassifierRouter
    from routers.examples import ExampleIndex

    model_dir = Path(spec.model or SHIPPED_MODEL).resolve()
    key: ModelKey = (str(model_dir), *settings)
    model = models[key] = loaded.get(key) or _load(model_dir, *settings)
    classifier = model.classifier
    abstain = classifier.manifest.abstain_threshold
    examples = route_examples(spec)
    if unknown := sorted({e.route for e in examples} - set(rules.routes)):
        raise ValueError(f"examples name routes that do not exist: {', '.join(unknown)}")
    index = ExampleIndex(
        examples,
        model.embeddings_of([e.prompt for e in examples]),
        spec.example_threshold,
        spec.example_margin,
        spec.example_thresholds,
    )
    router = ClassifierRouter(spec, rules, classifier.labels, model.batcher, abstain, index)
    described = f"classifier {classifier.model_dir.name} on {classifier.encoder.provider}"
    return router, described + (f" with {len(index)} examples" if len(index) else "")


def route_examples(spec: ClassifierRouterSpec) -> list[RouteExample]:
    """The rules' examples, then the examples file's; more than ``max_examples`` in all is refused
    (:class:`routers.examples.ExamplesInvalid` at the file's first row past the bound)."""
    from routers.examples import read_examples_file

    examples = list(spec.examples)
    if spec.examples_file is not None:
        examples += read_examples_file(spec.examples_file, max(0, spec.max_examples - len(examples)))
    if len(examples) > spec.max_examples:
        raise ValueError(f"{len(examples)} examples: more than router.max_examples ({spec.max_examples})")
    return examples


def _load(model_dir: Path, threads: int | None, max_batch: int | None) -> LoadedClassifier:
    from routers.batcher import MicroBatcher
    from routers.classifier import TaskClassifier

    classifier = TaskClassifier(model_dir, threads)
    if max_batch is None:
        max_batch = 16 if classifier.encoder.provider == "CUDAExecutionProvider" else 1
    return LoadedClassifier(classifier, MicroBatcher(classifier.read, max_batch))


def _llm(
    spec: LLMRouterSpec,
    rules: RoutingTable,
    backends: Mapping[str, Backend],
    settings: tuple[int | None, int | None],
    loaded: Mapping[ModelKey, LoadedClassifier],
    models: dict[ModelKey, LoadedClassifier],
) -> RouterHandle:
    from routers.llm_router import LLMRouter

    fallback: Router = DefaultRouteRouter(rules)
    described = "default route"
    if spec.fallback:
        fallback, described = _classifier(spec.fallback, rules, settings, loaded, models)
    router = LLMRouter(spec, rules, backends[spec.backend], fallback)
    return RouterHandle(router, f"llm via {spec.backend}, falling back to {described}", models)
