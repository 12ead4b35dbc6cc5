"""Building the router a rules file asks for; ONNX models load only when it asks for them.

A loaded classifier model is the expensive part: a rebuild reuses the one loaded for the same
model directory and settings, and only the cheap decision layer around it is made anew.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backends.base import Backend
from routers.decision import Router
from routers.default_route import DefaultRouteRouter
from routers.specs import ClassifierRouterSpec, DefaultRouterSpec, LLMRouterSpec, RoutingTable

if TYPE_CHECKING:
    from routers.batcher import MicroBatcher
    from routers.classifier import TaskClassifier

ModelKey = tuple[str, int | None, int | None]
"""A loaded model's identity: its directory, ONNX Runtime threads, largest batch."""


@dataclass(eq=False)
class LoadedClassifier:
    """A task classifier in memory with the batcher that feeds it."""

    classifier: TaskClassifier
    batcher: MicroBatcher

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

    model_dir = Path(spec.model or SHIPPED_MODEL).resolve()
    key: ModelKey = (str(model_dir), *settings)
    model = models[key] = loaded.get(key) or _load(model_dir, *settings)
    classifier = model.classifier
    abstain = classifier.manifest.abstain_threshold
    router = ClassifierRouter(spec, rules, classifier.labels, model.batcher, abstain)
    return router, f"classifier {classifier.model_dir.name} on {classifier.encoder.provider}"


def _load(model_dir: Path, threads: int | None, max_batch: int | None) -> LoadedClassifier:
    from routers.batcher import MicroBatcher
    from routers.classifier import TaskClassifier

    classifier = TaskClassifier(model_dir, threads)
    if max_batch is None:
        max_batch = 16 if classifier.encoder.provider == "CUDAExecutionProvider" else 1
    return LoadedClassifier(classifier, MicroBatcher(classifier.scores, max_batch))


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
