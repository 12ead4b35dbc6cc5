"""Policy over the classifier's scores: labels map to routes by name; low confidence abstains."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from contracts.wire import ChatCompletionRequest
from routers.batcher import MicroBatcher
from routers.decision import RouteDecision
from routers.routing_text import routing_text
from routers.specs import ClassifierRouterSpec, RoutingTable

FastScore = Callable[[str], NDArray[np.float32] | None]


def no_fast_stage(text: str) -> None:
    return None


class ClassifierRouter:
    def __init__(
        self,
        spec: ClassifierRouterSpec,
        rules: RoutingTable,
        labels: list[str],
        batcher: MicroBatcher,
        abstain: float | None,
        fast: FastScore = no_fast_stage,
    ) -> None:
        self._labels = labels
        self._batcher = batcher
        self._fast = fast
        self._routes = {name: tuple(route.backends) for name, route in rules.routes.items()}
        self._default = rules.default_route
        self._route_of_label = {
            label: spec.labels.get(label, label if label in rules.routes else None) for label in labels
        }
        # A threshold learnt from out-of-scope data beats the generic default, unless ops set one.
        base = abstain if abstain is not None and "threshold" not in spec.model_fields_set else spec.threshold
        self._thresholds = {route: spec.thresholds.get(route, base) for route in rules.routes}

    async def decide(self, request: ChatCompletionRequest) -> RouteDecision:
        text = routing_text(request)
        row = self._fast(text)  # microseconds: on the event loop
        if row is None:
            row = await self._batcher.score(text)
        scores = {label: round(float(p), 4) for label, p in zip(self._labels, row, strict=True)}
        label = max(scores, key=scores.__getitem__)
        confidence = scores[label]
        route = self._route_of_label[label]
        if route is None:
            reason = f"label {label!r} ({confidence:.2f}) has no route; default route"
            return self._decision(self._default, reason, confidence, scores)
        if confidence < self._thresholds[route]:
            reason = (
                f"label {label!r} at {confidence:.2f} is under route {route!r}'s threshold {self._thresholds[route]}"
            )
            return self._decision(self._default, reason + "; abstained to the default route", confidence, scores)
        return self._decision(route, f"label {label!r} at {confidence:.2f}", confidence, scores)

    def _decision(self, route: str, reason: str, confidence: float, scores: dict[str, float]) -> RouteDecision:
        return RouteDecision(route, self._routes[route], "classifier", reason, confidence, scores)
