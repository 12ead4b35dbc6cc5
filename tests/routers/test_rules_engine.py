from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from routers.decision import RoutingContext
from routers.rules_engine import RuleEngine, estimated_tokens
from tests.routers.helpers import chat, rules

IMAGE = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:x"}}]
TOOLS = [{"type": "function", "function": {"name": "f"}}]


@pytest.fixture
def engine() -> RuleEngine:
    return RuleEngine(rules())


@pytest.mark.parametrize(
    ("request_args", "context", "rule", "route"),
    [
        ({}, RoutingContext(headers=Headers({"x-team": "search"})), "team-x", "math"),
        ({"content": IMAGE}, RoutingContext(), "images", "vision"),
        ({"content": "write SQL for me"}, RoutingContext(tenant="b"), "tenant-b", "code"),
        ({"content": "x" * 400}, RoutingContext(), "long", "general"),
        ({"model": "gpt-4"}, RoutingContext(), "legacy-model", "code"),
        ({"tools": TOOLS}, RoutingContext(), "tools", "code"),
    ],
)
def test_each_condition_matches_its_rule(
    engine: RuleEngine, request_args: dict[str, object], context: RoutingContext, rule: str, route: str
) -> None:
    decision = engine.match(chat(**request_args), context)  # type: ignore[arg-type]
    assert decision is not None
    assert decision.decided_by == f"rule:{rule}"
    assert decision.route == route
    assert rule in decision.reason


def test_all_conditions_of_a_rule_must_hold(engine: RuleEngine) -> None:
    assert engine.match(chat("write SQL"), RoutingContext(tenant="a")) is None
    assert engine.match(chat("write python"), RoutingContext(tenant="b")) is None
    assert engine.match(chat("x" * 400, tools=TOOLS), RoutingContext()).route == "general"  # type: ignore[union-attr]


def test_first_matching_rule_wins(engine: RuleEngine) -> None:
    both = chat(IMAGE, model="gpt-4")
    decision = engine.match(both, RoutingContext(headers=Headers({"x-team": "search"})))
    assert decision is not None
    assert decision.decided_by == "rule:team-x"


def test_no_rule_matches_plain_request(engine: RuleEngine) -> None:
    assert engine.match(chat("hi"), RoutingContext()) is None


def test_explain_names_the_condition_each_rule_failed(engine: RuleEngine) -> None:
    explained = dict(engine.explain(chat("write SQL"), RoutingContext(tenant="b")))
    assert explained == {
        "team-x": "header x-team",
        "images": "has_images",
        "tenant-b": None,
        "long": "min_tokens",
        "legacy-model": "model",
        "tools": "has_tools",
    }


def test_token_estimate_counts_every_message() -> None:
    request = chat("a" * 40)
    request.messages.append(request.messages[0])
    assert estimated_tokens(request) == 20


def test_invalid_regex_and_unknown_route_are_rules_file_errors() -> None:
    from gateway.rules import RulesInvalid, parse_rules
    from tests.routers.helpers import RULES

    broken = RULES.replace("route: math}", "route: nowhere}").replace('"(?i)\\\\bsql\\\\b"', '"(unclosed"')
    with pytest.raises(RulesInvalid) as caught:
        parse_rules(broken)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"rules[0].route", "rules[2].when.regex"}
