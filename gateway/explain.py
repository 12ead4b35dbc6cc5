"""Where would this prompt go, and why: for ops, over HTTP and on the command line."""

from __future__ import annotations

from typing import Any

from gateway.rules import Rules
from gateway.schemas import ChatCompletionRequest
from gateway.settings import Settings
from gateway.state import GatewayState, close_state, open_state
from routers.decision import RoutingContext


async def explain(state: GatewayState, request: ChatCompletionRequest, context: RoutingContext) -> dict[str, Any]:
    decision = await state.selector.select(request.model, context.headers.get("x-switchyard-route"), request, context)
    return {
        "route": decision.route,
        "backends": list(decision.backends),
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "score": decision.score,
        "scores": decision.scores,
        "rules": [
            {"rule": name, "matched": failed is None, "failed": failed}
            for name, failed in state.selector.rules.explain(request, context)
        ],
        "router": state.router.description,
    }


async def explain_offline(rules: Rules, prompt: str, model: str, tenant: str) -> dict[str, Any]:
    """Explain without serving: opens the rules' backends and router, asks, closes them."""
    state = await open_state(Settings(auth_disabled=True), rules)
    try:
        request = ChatCompletionRequest.model_validate(
            {"model": model, "messages": [{"role": "user", "content": prompt}]}
        )
        return await explain(state, request, RoutingContext(tenant=tenant))
    finally:
        await close_state(state)
