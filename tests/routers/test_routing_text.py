from __future__ import annotations

from contracts.wire import ChatCompletionRequest
from gateway.rules import parse_rules
from routers.decision import RoutingContext
from routers.routing_text import HEAD_CHARS, TAIL_CHARS, bounded, routing_text
from routers.rules_engine import RuleEngine


def request_saying(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="auto", messages=[{"role": "user", "content": text}])  # type: ignore[list-item]


def test_short_text_is_read_whole() -> None:
    assert bounded("Summarize: the cat sat.") == "Summarize: the cat sat."


def test_long_text_is_read_at_its_head_and_tail_only() -> None:
    text = "Summarize this: " + "filler " * 600_000 + " TL;DR:"
    read = routing_text(request_saying(text))
    assert len(read) <= HEAD_CHARS + TAIL_CHARS + 1
    assert read.startswith("Summarize this:")
    assert read.endswith("TL;DR:")


def test_regex_rule_sees_the_tail_of_a_huge_prompt() -> None:
    rules = parse_rules(
        """
backends: {b: {kind: openai, endpoint: "http://b/v1", model: m}}
routes: {general: {backends: [b]}, sql: {backends: [b]}}
default_route: general
rules: [{name: sql-tail, route: sql, when: {regex: "(?i)as sql$"}}]
"""
    )
    engine = RuleEngine(rules)
    decision = engine.match(request_saying("x " * 2_000_000 + "write that as SQL"), RoutingContext("t", {}))
    assert decision is not None
    assert decision.route == "sql"
