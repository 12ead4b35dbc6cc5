"""Deterministic routing rules, evaluated in order before any model; the first match wins."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.wire import ChatCompletionRequest, text_of
from routers.decision import RouteDecision, RoutingContext
from routers.patterns import Pattern, compile_pattern
from routers.routing_text import bounded
from routers.specs import RoutingTable, RuleMatch, RuleSpec


def estimated_tokens(request: ChatCompletionRequest) -> int:
    """About four characters a token, over every message's text."""
    return sum(len(text_of(m.content)) for m in request.messages) // 4


def has_images(request: ChatCompletionRequest) -> bool:
    return any(
        part.type == "image_url"
        for message in request.messages
        if isinstance(message.content, list)
        for part in message.content
    )


@dataclass(frozen=True)
class CompiledRule:
    spec: RuleSpec
    backends: tuple[str, ...]
    pattern: Pattern | None
    headers: dict[str, str]

    def failed_condition(self, request: ChatCompletionRequest, context: RoutingContext) -> str | None:
        """The first condition that does not hold, or ``None`` when the rule matches."""
        when: RuleMatch = self.spec.when
        for name, value in self.headers.items():
            if context.headers.get(name) != value:
                return f"header {name}"
        if when.tenants is not None and context.tenant not in when.tenants:
            return "tenant"
        if when.models is not None and request.model not in when.models:
            return "model"
        if self.pattern is not None and not self.pattern.search(bounded(request.last_user_text())):
            return "regex"
        if when.min_tokens is not None or when.max_tokens is not None:
            tokens = estimated_tokens(request)
            if when.min_tokens is not None and tokens < when.min_tokens:
                return "min_tokens"
            if when.max_tokens is not None and tokens > when.max_tokens:
                return "max_tokens"
        if when.has_tools is not None and bool(getattr(request, "tools", None)) != when.has_tools:
            return "has_tools"
        if when.has_images is not None and has_images(request) != when.has_images:
            return "has_images"
        return None


class RuleEngine:
    def __init__(self, rules: RoutingTable) -> None:
        self._rules = [
            CompiledRule(
                spec=spec,
                backends=tuple(rules.routes[spec.route].chain),
                pattern=compile_pattern(spec.when.regex) if spec.when.regex else None,
                headers={k.lower(): v for k, v in spec.when.headers.items()},
            )
            for spec in rules.rules
        ]

    def match(self, request: ChatCompletionRequest, context: RoutingContext) -> RouteDecision | None:
        for rule in self._rules:
            if rule.failed_condition(request, context) is None:
                reason = f"rule {rule.spec.name!r} matched: {describe(rule.spec.when)}"
                return RouteDecision(rule.spec.route, rule.backends, f"rule:{rule.spec.name}", reason)
        return None

    def explain(self, request: ChatCompletionRequest, context: RoutingContext) -> list[tuple[str, str | None]]:
        """Each rule with the first condition that failed (``None``: it matched)."""
        return [(rule.spec.name, rule.failed_condition(request, context)) for rule in self._rules]


def describe(when: RuleMatch) -> str:
    conditions = when.model_dump(exclude_none=True, exclude_defaults=True)
    return ", ".join(f"{key}={value}" for key, value in conditions.items())
