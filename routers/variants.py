"""Weighted variants: which backend chain of a route a request is given.

A route with ``variants`` gives every request one of them, in proportion to their weights. With a
sticky key (the API's ``user`` field, the tenant, or a header), the choice is weighted rendezvous
hashing over the route, the key and each variant's name: each variant scores ``weight / -ln(u)``,
``u`` a stable hash in (0, 1), and the highest score wins. So a key stays in its variant while the
weights stay; raising one variant's weight only moves keys into it, lowering it only moves keys
out of it, and no key moves between two variants whose weights did not change. Without a key each
request is drawn at random (or by the context's ``draw_key``).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contracts.wire import ChatCompletionRequest
from routers.decision import RouteDecision, RoutingContext
from routers.specs import RouteEntry, VariantEntry

SCALE = float(2**64)


def stable_unit(*parts: str) -> float:
    """A number in (0, 1) that ``parts`` always hash to, in every process."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / SCALE


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int
    backends: tuple[str, ...]


class RouteVariants:
    """One route's variants that take traffic (weight above 0), in the order the rules give them."""

    def __init__(self, route: str, variants: Mapping[str, VariantEntry], sticky: str) -> None:
        self.route = route
        self.sticky = sticky
        self.variants = tuple(Variant(n, v.weight, tuple(v.backends)) for n, v in variants.items() if v.weight > 0)
        self._cumulative = list(itertools.accumulate(v.weight for v in self.variants))

    def pick(self, key: str | None, draw: Callable[[], float] = random.random) -> Variant:
        if key is None:
            point = draw() * self._cumulative[-1]
            return self.variants[bisect.bisect_right(self._cumulative, point)]
        return max(self.variants, key=lambda v: v.weight / -math.log(stable_unit(self.route, key, v.name)))

    def key_of(self, chat: ChatCompletionRequest | None, context: RoutingContext) -> str | None:
        """The request's sticky key, or its draw key when the route sticks to nothing it carries."""
        key: object = None
        if self.sticky == "user" and chat is not None:
            key = (chat.model_extra or {}).get("user")
        elif self.sticky == "tenant":
            key = context.tenant
        elif self.sticky.startswith("header:"):
            key = context.headers.get(self.sticky.removeprefix("header:").lower())
        if isinstance(key, str) and key:
            return f"{self.sticky}:{key}"
        return context.draw_key


class VariantTable:
    """Every route's variants, built once per rules version."""

    def __init__(self, routes: Mapping[str, RouteEntry]) -> None:
        self._routes = {
            name: RouteVariants(name, spec.variants, spec.sticky) for name, spec in routes.items() if spec.variants
        }

    def sticky_of(self, route: str) -> str | None:
        table = self._routes.get(route)
        return table.sticky if table is not None else None

    def assign(
        self, decision: RouteDecision, chat: ChatCompletionRequest | None, context: RoutingContext
    ) -> RouteDecision:
        """``decision`` with its route's variant and that variant's backends; unchanged for a route
        without variants (and for an alias, which pins one backend)."""
        table = self._routes.get(decision.route)
        if table is None or decision.decided_by == "alias":
            return decision
        variant = table.pick(table.key_of(chat, context))
        return dataclasses.replace(decision, backends=variant.backends, variant=variant.name)
