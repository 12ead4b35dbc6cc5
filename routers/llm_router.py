"""A general LLM picks the route from the routes' descriptions, inside its own small budget.

Its answer is constrained to JSON naming one route; on timeout, a backend error, output
that does not parse or names no route, or low confidence, the fallback router decides.
"""

from __future__ import annotations

import asyncio
import dataclasses

from pydantic import BaseModel, Field, ValidationError

from backends.base import Backend
from contracts.errors import BackendError
from contracts.wire import ChatCompletionRequest
from routers.decision import RouteDecision, Router
from routers.routing_text import routing_text
from routers.specs import LLMRouterSpec, RoutingTable

PROMPT_CHARS = 2000
INSTRUCTIONS = (
    "You route requests to the service that should answer them. Routes:\n{routes}\n"
    'Answer only with JSON: {{"route": "<one route name>", "confidence": <0 to 1>}}.'
)


class LLMChoice(BaseModel):
    route: str
    confidence: float = Field(ge=0, le=1)


class LLMRouter:
    def __init__(self, spec: LLMRouterSpec, rules: RoutingTable, backend: Backend, fallback: Router) -> None:
        self._spec = spec
        self._backend = backend
        self._fallback = fallback
        self._routes = {name: tuple(route.chain) for name, route in rules.routes.items()}
        listing = "\n".join(f"- {name}: {route.description or name}" for name, route in rules.routes.items())
        self._instructions = INSTRUCTIONS.format(routes=listing)
        schema = {
            "type": "object",
            "properties": {"route": {"enum": list(rules.routes)}, "confidence": {"type": "number"}},
            "required": ["route", "confidence"],
        }
        self._response_format = {"type": "json_schema", "json_schema": {"name": "route_choice", "schema": schema}}

    async def decide(self, request: ChatCompletionRequest) -> RouteDecision:
        budget_s = self._spec.budget_ms / 1000
        try:
            async with asyncio.timeout(budget_s):
                answer = await self._backend.complete(self._question(request), budget_s)
            choice = self._parse(answer.choices[0].model_extra or {})
        except TimeoutError:
            return await self._fall_back(request, f"no answer within {self._spec.budget_ms} ms")
        except BackendError as exc:
            return await self._fall_back(request, f"backend failed ({exc.code})")
        except (ValidationError, ValueError, KeyError, TypeError):
            return await self._fall_back(request, "its answer was not a valid route choice")
        if choice.confidence < self._spec.min_confidence:
            return await self._fall_back(
                request, f"confidence {choice.confidence:.2f} under {self._spec.min_confidence}"
            )
        reason = f"{self._backend.name} chose {choice.route!r} at {choice.confidence:.2f}"
        return RouteDecision(choice.route, self._routes[choice.route], "llm", reason, choice.confidence)

    def _question(self, request: ChatCompletionRequest) -> ChatCompletionRequest:
        return ChatCompletionRequest.model_validate(
            {
                "model": "router",
                "messages": [
                    {"role": "system", "content": self._instructions},
                    {"role": "user", "content": routing_text(request)[:PROMPT_CHARS]},
                ],
                "temperature": 0,
                "max_tokens": 48,
                "response_format": self._response_format,
            }
        )

    def _parse(self, choice: dict[str, object]) -> LLMChoice:
        message = choice["message"]
        assert isinstance(message, dict)
        parsed = LLMChoice.model_validate_json(str(message.get("content") or ""))
        if parsed.route not in self._routes:
            raise ValueError(f"unknown route {parsed.route!r}")
        return parsed

    async def _fall_back(self, request: ChatCompletionRequest, why: str) -> RouteDecision:
        decision = await self._fallback.decide(request)
        return dataclasses.replace(decision, reason=f"llm router: {why}; {decision.decided_by}: {decision.reason}")
