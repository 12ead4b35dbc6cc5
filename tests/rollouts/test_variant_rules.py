"""A route's variants and shadow in the rules file: each mistake named at its path and line."""

from __future__ import annotations

import pytest

from gateway.rules import RulesInvalid, parse_rules

VALID = """
backends:
  a: {kind: openai, endpoint: "http://a/v1", model: m}
  b: {kind: openai, endpoint: "http://b/v1", model: m}
  c: {kind: openai, endpoint: "http://c/v1", model: m}
  ext: {kind: openai, endpoint: "http://ext/v1", model: m}
routes:
  general: {backends: [ext]}
  summarization:
    variants:
      current: {backends: [a, ext], weight: 90}
      candidate: {backends: [b, ext], weight: 10}
    sticky: user
    shadow: {backend: c, sample: 0.05}
default_route: general
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        parse_rules(text, "rules.yaml")
    return [f"{p.line}:{p.path}: {p.message}" for p in caught.value.problems]


def test_variants_parse_and_the_heaviest_chain_is_the_routes_own() -> None:
    route = parse_rules(VALID).routes["summarization"]
    assert [(name, v.weight) for name, v in route.variants.items()] == [("current", 90), ("candidate", 10)]
    assert route.chain == ["a", "ext"]
    assert route.shadow is not None
    assert (route.shadow.backend, route.shadow.max_in_flight) == ("c", 4)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("    sticky: user", "    sticky: user\n    backends: [a]"),
            "10:routes.summarization: give either backends or variants (both given)",
        ),
        (
            ("  general: {backends: [ext]}", "  general: {description: x}"),
            "8:routes.general: give either backends or variants (neither given)",
        ),
        (("weight: 10}", "weight: 0}"), None),
        (
            ("[b, ext], weight: 10", "[b, nowhere], weight: 10"),
            "12:routes.summarization.variants.candidate.backends[1]: unknown backend 'nowhere'",
        ),
        (
            ("[b, ext], weight: 10", "[b, b], weight: 10"),
            "12:routes.summarization.variants.candidate.backends: a backend is listed twice",
        ),
        (("      candidate: {", "      current: {"), "12:routes.summarization.variants.current: duplicate key"),
        (
            ("weight: 90", "weight: -1"),
            "11:routes.summarization.variants.current.weight: Input should be greater than or equal to 0",
        ),
        (
            ("sticky: user", "sticky: cookie"),
            "13:routes.summarization.sticky: String should match pattern '^(request|user|tenant|header:",
        ),
        (
            ("  general: {backends: [ext]}", "  general: {backends: [ext], sticky: user}"),
            "8:routes.general.sticky: only a route with variants has something to stick to",
        ),
        (
            ("shadow: {backend: c,", "shadow: {backend: nowhere,"),
            "14:routes.summarization.shadow.backend: unknown backend 'nowhere'",
        ),
        (
            ("shadow: {backend: c,", "shadow: {backend: a,"),
            "14:routes.summarization.shadow.backend: the shadow is a primary of the route",
        ),
        (
            ("sample: 0.05", "sample: 1.5"),
            "14:routes.summarization.shadow.sample: Input should be less than or equal to 1",
        ),
    ],
)
def test_each_mistake_is_named(change: tuple[str, str], problem: str | None) -> None:
    text = VALID.replace(*change)
    assert text != VALID
    if problem is None:  # one variant at 0 is allowed: it is out, not deleted
        parse_rules(text)
        return
    assert any(found.startswith(problem) for found in problems_of(text)), problems_of(text)


def test_every_weight_at_0_is_refused() -> None:
    text = VALID.replace("weight: 90", "weight: 0").replace("weight: 10", "weight: 0")
    assert "11:routes.summarization.variants: every weight is 0: no variant would get traffic" in problems_of(text)


def test_hedging_needs_a_second_backend_in_every_variant() -> None:
    text = VALID.replace("[b, ext], weight: 10", "[b], weight: 10").replace(
        "    sticky: user", "    sticky: user\n    hedge: {after_ms: 100}"
    )
    assert any("hedging needs a second backend in every chain" in p for p in problems_of(text))
