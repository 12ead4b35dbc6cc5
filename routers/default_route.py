"""The router of last resort: every ``auto`` request goes to the default route."""

from __future__ import annotations

from contracts.wire import ChatCompletionRequest
from routers.decision import RouteDecision
from routers.specs import RoutingTable


class DefaultRouteRouter:
    def __init__(self, rules: RoutingTable) -> None:
        route = rules.default_route
        self._decision = RouteDecision(
            route=route,
            backends=tuple(rules.routes[route].chain),
            decided_by="default",
            reason="no classifier configured; the default route serves every auto request",
        )

    async def decide(self, request: ChatCompletionRequest) -> RouteDecision:
        return self._decision
