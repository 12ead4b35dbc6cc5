"""Policy over the classifier's scores: labels map to routes by name; low confidence abstains.
Examples the rules give (:mod:`routers.examples`) are asked first: one close enough decides.

A router is built for one rules version (snapshot): the decisions it keeps for repeated routing
texts (keyed by a hash of the text the model reads) die with it, so a rules change, or another
tenant's rules, never see a decision made under other rules. Tenant rules match before the
router is asked, and the router's decision depends on nothing but the text and its own rules.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from contracts.wire import ChatCompletionRequest
from routers.batcher import MicroBatcher
from routers.classifier import Reading
from routers.decision import Neighbour, RouteDecision
from routers.examples import ExampleIndex
from routers.routing_text import routing_text
from routers.specs import ClassifierRouterSpec, RoutingTable


class ClassifierRouter:
    def __init__(
        self,
        spec: ClassifierRouterSpec,
        rules: RoutingTable,
        labels: list[str],
        batcher: MicroBatcher[Reading],
        abstain: float | None,
        examples: ExampleIndex | None = None,
    ) -> None:
        self._labels = labels
        self._batcher = batcher
        self._routes = {name: tuple(route.chain) for name, route in rules.routes.items()}
        self._default = rules.default_route
        self._route_of_label = {
            label: spec.labels.get(label, label if label in rules.routes else None) for label in labels
        }
        # A threshold learnt from out-of-scope data beats the generic default, unless ops set one.
        base = abstain if abstain is not None and "threshold" not in spec.model_fields_set else spec.threshold
        self._thresholds = {route: spec.thresholds.get(route, base) for route in rules.routes}
        self._reuse = spec.reuse
        self._examples = examples if examples is not None and len(examples) else None
        self._recent: OrderedDict[bytes, RouteDecision] = OrderedDict()

    async def decide(self, request: ChatCompletionRequest) -> RouteDecision:
        text = routing_text(request)
        if not self._reuse:
            return await self._decide(text)
        key = hashlib.blake2b(text.encode(errors="surrogatepass"), digest_size=16).digest()
        if (kept := self._recent.get(key)) is not None:
            self._recent.move_to_end(key)
            return kept
        decision = self._recent[key] = await self._decide(text)
        if len(self._recent) > self._reuse:
            self._recent.popitem(last=False)
        return decision

    async def _decide(self, text: str) -> RouteDecision:
        return await self._batcher.score_then(text, self.decision_of)

    def decision_of(self, reading: Reading) -> RouteDecision:
        """The decision for one scored text: an example's route when one is close enough, else the
        classifier's. Pure, and run in the model's thread (the example search is a matrix product)."""
        scores = {label: round(float(p), 4) for label, p in zip(self._labels, reading.probabilities, strict=True)}
        nearest: tuple[Neighbour, ...] = ()
        if self._examples is not None:
            match = self._examples.match(reading.embedding)
            nearest = match.nearest
            if match.route is not None:
                return RouteDecision(
                    match.route, self._routes[match.route], "example", match.reason, None, scores, nearest=nearest
                )
        label = max(scores, key=scores.__getitem__)
        confidence = scores[label]
        route = self._route_of_label[label]
        if route is None:
            reason = f"label {label!r} ({confidence:.2f}) has no route; default route"
            return self._decision(self._default, reason, confidence, scores, nearest)
        if confidence < self._thresholds[route]:
            reason = (
                f"label {label!r} at {confidence:.2f} is under route {route!r}'s threshold {self._thresholds[route]}"
            )
            reason += "; abstained to the default route"
            return self._decision(self._default, reason, confidence, scores, nearest)
        return self._decision(route, f"label {label!r} at {confidence:.2f}", confidence, scores, nearest)

    def _decision(
        self, route: str, reason: str, confidence: float, scores: dict[str, float], nearest: tuple[Neighbour, ...]
    ) -> RouteDecision:
        return RouteDecision(route, self._routes[route], "classifier", reason, confidence, scores, nearest=nearest)
