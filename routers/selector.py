"""From what the caller asked for to a route.

Precedence: the ``x-turnout-route`` header, then a ``model`` naming a route or alias, then
the rules file's ``rules`` (first match), then the router for ``model: "auto"``.
"""

from __future__ import annotations

from contracts.errors import UnknownModel
from contracts.wire import ChatCompletionRequest
from routers.decision import RouteDecision, Router, RoutingContext
from routers.rules_engine import RuleEngine
from routers.specs import RoutingTable
from routers.variants import VariantTable

AUTO = "auto"


class RouteSelector:
    def __init__(self, rules: RoutingTable, router: Router) -> None:
        self.router = router
        self.rules = RuleEngine(rules)
        self.variants = VariantTable(rules.routes)
        self._by_name: dict[str, RouteDecision] = {}
        for route, spec in rules.routes.items():
            self._by_name[route] = RouteDecision(route, tuple(spec.chain), "model", f"model names route {route!r}")
        for alias, backend in rules.aliases.items():
            self._by_name[alias] = RouteDecision(alias, (backend,), "alias", f"alias pins backend {backend!r}")
        self._routes = set(rules.routes)
        default = self._by_name[rules.default_route]
        self._default = RouteDecision(default.route, default.backends, "default", "auto without a prompt")

    async def select(
        self, model: str, forced_route: str | None, chat: ChatCompletionRequest | None, context: RoutingContext
    ) -> RouteDecision:
        """Decide the route, and the route's variant when it has some; raise ``UnknownModel`` for a
        name that means nothing here.

        ``chat`` is what rules and the router look at; without one (embeddings) ``auto``
        means the default route.
        """
        decision = await self._route(model, forced_route, chat, context)
        return self.variants.assign(decision, chat, context)

    async def _route(
        self, model: str, forced_route: str | None, chat: ChatCompletionRequest | None, context: RoutingContext
    ) -> RouteDecision:
        if forced_route is not None:
            if forced_route not in self._routes:
                message = f"route {forced_route!r} in x-turnout-route does not exist"
                raise UnknownModel(message, param="x-turnout-route")
            forced = self._by_name[forced_route]
            return RouteDecision(forced.route, forced.backends, "header", "x-turnout-route forced it")
        named = self._by_name.get(model)
        if named is not None:
            return named
        if chat is not None and (matched := self.rules.match(chat, context)) is not None:
            return matched
        if model == AUTO:
            return await self.router.decide(chat) if chat else self._default
        raise UnknownModel(
            f"model {model!r} is neither 'auto', a route nor an alias (GET /v1/models lists them)", param="model"
        )
