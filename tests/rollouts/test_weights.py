"""Proposing new weights: only the numbers in the document change, through the admin API too."""

from __future__ import annotations

import pytest

from contracts.errors import InvalidRequest
from gateway.live.weights import with_weights
from gateway.rules import parse_rules
from tests.gateway.harness import gateway
from tests.rollouts.test_variants_served import ADMIN_KEY, EDITOR, VARIANTS

BLOCK = """# rollout of the new summarizer
routes:
  summarization:
    variants:
      current:
        backends: [a, ext]
        weight: 90   # the old one
      candidate: {backends: [b, ext], weight: 10}
"""


def test_only_the_numbers_change() -> None:
    changed = with_weights(BLOCK, "summarization", {"current": 75, "candidate": 25})
    assert changed == BLOCK.replace("weight: 90", "weight: 75").replace("weight: 10", "weight: 25")


@pytest.mark.parametrize(
    ("route", "weights", "message"),
    [
        ("general", {"current": 1}, "route 'general' has no variants"),
        ("summarization", {"nobody": 1}, "no variant 'nobody'"),
        ("summarization", {"current": -1}, "whole number from 0"),
        ("summarization", {"current": True}, "whole number from 0"),
        ("summarization", {"current": 1.5}, "whole number from 0"),
    ],
)
def test_what_cannot_be_proposed_is_said(route: str, weights: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        with_weights(BLOCK, route, weights)


async def test_the_admin_api_answers_the_serving_text_with_new_weights_and_stores_nothing() -> None:
    async with gateway(rules=VARIANTS, admin_key=ADMIN_KEY) as client:
        body = {"route": "summarization", "weights": {"candidate": 0}}
        proposed = await client.post("/admin/rules/weights", json=body, headers=EDITOR)
        unknown = await client.post("/admin/rules/weights", json={"route": "code", "weights": {"x": 1}}, headers=EDITOR)
        viewer = await client.post("/admin/rules/weights", json=body)
        history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
    assert proposed.status_code == 200
    assert proposed.json()["base_version"] == 1
    rules = parse_rules(proposed.json()["yaml"])
    assert {name: v.weight for name, v in rules.routes["summarization"].variants.items()} == {
        "current": 50,
        "candidate": 0,
    }
    assert unknown.status_code == 422
    assert viewer.status_code == 401
    assert len(history) == 1
