"""What a router decides, and the one-method seam every router implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.schemas import ChatCompletionRequest


@dataclass(frozen=True)
class RouteDecision:
    route: str
    backends: tuple[str, ...]
    """Primary first, fallbacks after."""
    decided_by: str
    """``header``, ``model``, ``alias`` or the name of the router that chose."""
    reason: str
    score: float | None = None


class Router(Protocol):
    async def decide(self, request: ChatCompletionRequest) -> RouteDecision:
        """Choose a route for a request that asked for ``model: "auto"``."""
        ...
