from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from contracts.errors import UnknownModel
from routers.decision import RoutingContext
from routers.default_route import DefaultRouteRouter
from routers.selector import RouteSelector
from tests.routers.helpers import chat, rules

SEARCH_TEAM = RoutingContext(headers=Headers({"x-team": "search"}))


@pytest.fixture
def selector() -> RouteSelector:
    loaded = rules()
    return RouteSelector(loaded, DefaultRouteRouter(loaded))


async def test_header_beats_model_and_rules(selector: RouteSelector) -> None:
    decision = await selector.select("math", "code", chat(model="math"), SEARCH_TEAM)
    assert (decision.route, decision.decided_by) == ("code", "header")


async def test_route_name_and_alias_beat_rules(selector: RouteSelector) -> None:
    assert (await selector.select("code", None, chat(model="code"), SEARCH_TEAM)).route == "code"
    pinned = await selector.select("pinned-big", None, chat(model="pinned-big"), SEARCH_TEAM)
    assert (pinned.route, pinned.backends, pinned.decided_by) == ("pinned-big", ("big",), "alias")


async def test_rules_beat_the_router_for_auto(selector: RouteSelector) -> None:
    decision = await selector.select("auto", None, chat(), SEARCH_TEAM)
    assert decision.decided_by == "rule:team-x"


async def test_rules_can_map_an_unknown_model_name(selector: RouteSelector) -> None:
    decision = await selector.select("gpt-4", None, chat(model="gpt-4"), RoutingContext())
    assert (decision.route, decision.decided_by) == ("code", "rule:legacy-model")


async def test_auto_without_rule_goes_to_router(selector: RouteSelector) -> None:
    decision = await selector.select("auto", None, chat(), RoutingContext())
    assert (decision.route, decision.decided_by) == ("general", "default")


async def test_unknown_model_and_forced_route_are_404(selector: RouteSelector) -> None:
    with pytest.raises(UnknownModel):
        await selector.select("gpt-5", None, chat(model="gpt-5"), RoutingContext())
    with pytest.raises(UnknownModel):
        await selector.select("auto", "nope", chat(), RoutingContext())
