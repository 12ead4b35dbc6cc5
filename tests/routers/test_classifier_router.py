from __future__ import annotations

import numpy as np
import pytest

from routers.batcher import MicroBatcher
from routers.classifier_router import ClassifierRouter
from routers.specs import ClassifierRouterSpec
from tests.routers.helpers import chat, rules


def fixed_scores(labels: list[str], scores: dict[str, float]) -> MicroBatcher:
    row = np.array([scores[label] for label in labels], dtype=np.float32)
    return MicroBatcher(lambda texts: np.stack([row] * len(texts)))


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
