"""What a router decides, and the one-method seam every router implements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from contracts.wire import ChatCompletionRequest


@dataclass(frozen=True)
class Neighbour:
    """An example near a request: its route, how similar it is, and the start of its prompt."""

    route: str
    similarity: float
    prompt: str

    def to_dict(self) -> dict[str, object]:
        return {"route": self.route, "similarity": self.similarity, "prompt": self.prompt}


@dataclass(frozen=True)
class RouteDecision:
    route: str
    backends: tuple[str, ...]
    """Primary first, fallbacks after."""
    decided_by: str
    """``header``, ``model``, ``alias``, ``rule:<name>``, ``example``, ``classifier``, ``llm`` or ``default``."""
    reason: str
    score: float | None = None
    """Confidence in the chosen label, when a model chose."""
    scores: dict[str, float] = field(default_factory=dict)
    """Every label's score, when a model scored."""
    variant: str | None = None
    """The route's variant this request was given (:mod:`routers.variants`), when it has variants."""
    nearest: tuple[Neighbour, ...] = ()
    """The examples nearest the request, when the router has examples (:mod:`routers.examples`)."""


@dataclass(frozen=True)
class RoutingContext:
    """What routing may look at besides the body."""

    tenant: str = "anonymous"
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers; lookups by lower-case name."""
    draw_key: str | None = None
    """What draws a variant for a request with no sticky key: unset, a random draw; a dry run sets
    the sampled request's id, so both sides of it draw alike."""


class Router(Protocol):
    async def decide(self, request: ChatCompletionRequest) -> RouteDecision:
        """Choose a route for a request that asked for ``model: "auto"``."""
        ...
