from __future__ import annotations

import numpy as np
import pytest

from routers.batcher import MicroBatcher
from routers.classifier import Reading
from routers.classifier_router import ClassifierRouter
from routers.decision import RoutingContext
from routers.selector import RouteSelector
from routers.specs import ClassifierRouterSpec
from tests.routers.helpers import chat, rules


def fixed_scores(labels: list[str], scores: dict[str, float]) -> MicroBatcher[Reading]:
    row = np.array([scores[label] for label in labels], dtype=np.float32)
    return MicroBatcher(lambda texts: [Reading(row, np.ones(4, dtype=np.float32)) for _ in texts])


def router_for(
    order: list[str], scores: dict[str, float], abstain: float | None = None, **spec: object
) -> ClassifierRouter:
    config = ClassifierRouterSpec.model_validate({"kind": "classifier", **spec})
    return ClassifierRouter(config, rules(), order, fixed_scores(order, scores), abstain)


SCORES = {"code": 0.8, "math": 0.15, "qa": 0.05}


async def test_labels_map_to_routes_by_name_whatever_their_order() -> None:
    forward = await router_for(["code", "math", "qa"], SCORES).decide(chat())
    reverse = await router_for(["qa", "math", "code"], SCORES).decide(chat())
    assert forward.route == reverse.route == "code"
    assert forward.scores == reverse.scores == pytest.approx(SCORES)
    assert forward.score == pytest.approx(0.8)
    assert forward.decided_by == "classifier"


async def test_explicit_label_mapping_is_used() -> None:
    decision = await router_for(["code", "math", "qa"], SCORES, labels={"code": "math"}).decide(chat())
    assert decision.route == "math"


async def test_label_without_route_goes_to_default_route() -> None:
    decision = await router_for(["code", "math", "qa"], {"code": 0.1, "math": 0.1, "qa": 0.8}).decide(chat())
    assert decision.route == "general"
    assert "has no route" in decision.reason


async def test_below_threshold_abstains_to_default_route() -> None:
    decision = await router_for(["code", "math", "qa"], SCORES, threshold=0.9).decide(chat())
    assert decision.route == "general"
    assert "abstained" in decision.reason
    assert decision.score == pytest.approx(0.8)


async def test_per_route_threshold_overrides_default() -> None:
    strict_code = await router_for(["code", "math", "qa"], SCORES, thresholds={"code": 0.85}).decide(chat())
    lenient = await router_for(["code", "math", "qa"], SCORES, threshold=0.95, thresholds={"code": 0.5}).decide(chat())
    assert strict_code.route == "general"
    assert lenient.route == "code"


async def test_learnt_abstain_threshold_applies_unless_ops_set_one() -> None:
    learnt = await router_for(["code", "math", "qa"], SCORES, abstain=0.9).decide(chat())
    overridden = await router_for(["code", "math", "qa"], SCORES, abstain=0.9, threshold=0.5).decide(chat())
    assert learnt.route == "general"
    assert overridden.route == "code"


class CountingScores:
    """Scores every text alike and counts the texts it was asked to score."""

    def __init__(self, labels: list[str], scores: dict[str, float]) -> None:
        self.row = np.array([scores[label] for label in labels], dtype=np.float32)
        self.scored: list[str] = []

    def __call__(self, texts: list[str]) -> list[Reading]:
        self.scored.extend(texts)
        return [Reading(self.row, np.ones(4, dtype=np.float32)) for _ in texts]


def counted_router(counter: CountingScores, **spec: object) -> ClassifierRouter:
    config = ClassifierRouterSpec.model_validate({"kind": "classifier", **spec})
    return ClassifierRouter(config, rules(), ["code", "math", "qa"], MicroBatcher(counter), None)


async def test_a_repeated_routing_text_reuses_the_decision() -> None:
    counter = CountingScores(["code", "math", "qa"], SCORES)
    router = counted_router(counter)
    first = await router.decide(chat("sort this list"))
    again = await router.decide(chat("sort this list"))
    other = await router.decide(chat("sort that list"))
    assert first == again == other
    assert counter.scored == ["sort this list", "sort that list"]


async def test_reuse_keeps_only_the_most_recent_texts() -> None:
    counter = CountingScores(["code", "math", "qa"], SCORES)
    router = counted_router(counter, reuse=2)
    for text in ("a", "b", "a", "c", "a", "b"):
        await router.decide(chat(text))
    assert counter.scored == ["a", "b", "c", "b"]  # "b" was the least recent when "c" came


async def test_reuse_zero_scores_every_request() -> None:
    counter = CountingScores(["code", "math", "qa"], SCORES)
    router = counted_router(counter, reuse=0)
    await router.decide(chat("same"))
    await router.decide(chat("same"))
    assert counter.scored == ["same", "same"]


async def test_a_decision_never_outlives_its_rules_version() -> None:
    """A new rules version gets a new router: the same text is decided under the new rules."""
    counter = CountingScores(["code", "math", "qa"], SCORES)
    before = await counted_router(counter).decide(chat("sort this list"))
    after = await counted_router(counter, labels={"code": "math"}).decide(chat("sort this list"))
    assert (before.route, after.route) == ("code", "math")
    assert counter.scored == ["sort this list", "sort this list"]


async def test_reuse_never_crosses_tenants_with_different_rules() -> None:
    """Tenant rules match before the router: a decision kept for one tenant never skips another's rule."""
    counter = CountingScores(["code", "math", "qa"], {"code": 0.1, "math": 0.8, "qa": 0.1})
    selector = RouteSelector(rules(), counted_router(counter))  # tenant b's rule sends SQL to code
    text = "sum the sales column in SQL"
    for_a = await selector.select("auto", None, chat(text), RoutingContext(tenant="a"))
    for_b = await selector.select("auto", None, chat(text), RoutingContext(tenant="b"))
    again_a = await selector.select("auto", None, chat(text), RoutingContext(tenant="a"))
    assert (for_a.route, for_b.route, again_a.route) == ("math", "code", "math")
    assert for_b.decided_by == "rule:tenant-b"
    assert counter.scored == [text]
