"""Building the router a rules file asks for; ONNX models load only when it asks for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backends.base import Backend
from routers.decision import Router
from routers.default_route import DefaultRouteRouter
from routers.specs import ClassifierRouterSpec, DefaultRouterSpec, LLMRouterSpec, RoutingTable


@dataclass
class RouterHandle:
    router: Router
    description: str
    batchers: list[object] = field(default_factory=list)

    def close(self) -> None:
        for batcher in self.batchers:
            batcher.close()  # type: ignore[attr-defined]


def build_router(
    rules: RoutingTable, backends: Mapping[str, Backend], threads: int | None, max_batch: int | None
) -> RouterHandle:
    spec = rules.router
    if isinstance(spec, DefaultRouterSpec):
        return RouterHandle(DefaultRouteRouter(rules), "default route")
    if isinstance(spec, ClassifierRouterSpec):
        return _classifier(spec, rules, threads, max_batch)
    return _llm(spec, rules, backends, threads, max_batch)


def _classifier(
    spec: ClassifierRouterSpec, rules: RoutingTable, threads: int | None, max_batch: int | None
) -> RouterHandle:
    from routers.batcher import MicroBatcher
    from routers.classifier import SHIPPED_MODEL, TaskClassifier
    from routers.classifier_router import ClassifierRouter

    classifier = TaskClassifier(spec.model or SHIPPED_MODEL, threads)
    if max_batch is None:
        max_batch = 16 if classifier.encoder.provider == "CUDAExecutionProvider" else 1
    batcher = MicroBatcher(classifier.encoder_scores, max_batch)
    abstain = classifier.manifest.abstain_threshold
    router = ClassifierRouter(spec, rules, classifier.labels, batcher, abstain, classifier.fast_scores)
    description = f"classifier {classifier.model_dir.name} on {classifier.encoder.provider}"
    return RouterHandle(router, description, [batcher])


def _llm(
    spec: LLMRouterSpec,
    rules: RoutingTable,
    backends: Mapping[str, Backend],
    threads: int | None,
    max_batch: int | None,
) -> RouterHandle:
    from routers.llm_router import LLMRouter

    fallback = (
        _classifier(spec.fallback, rules, threads, max_batch)
        if spec.fallback
        else RouterHandle(DefaultRouteRouter(rules), "default route")
    )
    router = LLMRouter(spec, rules, backends[spec.backend], fallback.router)
    return RouterHandle(router, f"llm via {spec.backend}, falling back to {fallback.description}", fallback.batchers)
