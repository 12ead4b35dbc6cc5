"""Which variant a request gets: in proportion to the weights, sticky per key, and stable when a
weight changes (weighted rendezvous hashing over route, key and variant)."""

from __future__ import annotations

import math
import random
from collections import Counter

from starlette.datastructures import Headers

from contracts.wire import ChatCompletionRequest
from gateway.rules import VariantSpec, parse_rules
from routers.decision import RoutingContext
from routers.default_route import DefaultRouteRouter
from routers.selector import RouteSelector
from routers.variants import RouteVariants
from tests.rollouts.test_variant_rules import VALID

USERS = [f"user-{n}" for n in range(2000)]


def split(current: int, candidate: int, sticky: str = "user") -> RouteVariants:
    variants = {
        "current": VariantSpec(backends=["a", "ext"], weight=current),
        "candidate": VariantSpec(backends=["b", "ext"], weight=candidate),
    }
    return RouteVariants("summarization", variants, sticky)


def binomial_bounds(n: int, p: float, z: float = 3.29) -> tuple[float, float]:
    """The two-sided 99.9 % interval of a Binomial(n, p) count (normal approximation)."""
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_drawn_at_random_the_split_follows_the_weights() -> None:
    table, draw = split(90, 10), random.Random(7).random
    picked = Counter(table.pick(None, draw).name for _ in range(2000))
    low, high = binomial_bounds(2000, 0.1)
    assert low <= picked["candidate"] <= high, picked


def test_by_user_the_split_follows_the_weights_and_a_user_always_lands_in_one_variant() -> None:
    table = split(90, 10)
    first = {user: table.pick(f"user:{user}").name for user in USERS}
    low, high = binomial_bounds(2000, 0.1)
    assert low <= Counter(first.values())["candidate"] <= high
    assert all(table.pick(f"user:{user}").name == first[user] for user in USERS)  # and again


def test_raising_the_candidate_from_10_to_20_moves_nobody_out_of_it() -> None:
    before = {user: split(90, 10).pick(f"user:{user}").name for user in USERS}
    after = {user: split(90, 20).pick(f"user:{user}").name for user in USERS}
    assert not [u for u in USERS if before[u] == "candidate" and after[u] != "candidate"]
    moved_in = sum(before[u] == "current" and after[u] == "candidate" for u in USERS)
    low, high = binomial_bounds(2000, 20 / 110 - 10 / 100)  # the share it gained, roughly
    assert low <= moved_in <= high


def test_with_three_variants_raising_one_moves_nobody_between_the_other_two() -> None:
    def three(middle: int) -> RouteVariants:
        variants = {
            "a": VariantSpec(backends=["a"], weight=60),
            "b": VariantSpec(backends=["b"], weight=middle),
            "c": VariantSpec(backends=["c"], weight=30),
        }
        return RouteVariants("r", variants, "user")

    before = {user: three(10).pick(f"user:{user}").name for user in USERS}
    after = {user: three(40).pick(f"user:{user}").name for user in USERS}
    moves = Counter((before[u], after[u]) for u in USERS if before[u] != after[u])
    assert set(moves) <= {("a", "b"), ("c", "b")}
    assert moves


def test_a_variant_at_weight_0_gets_nothing() -> None:
    table = split(100, 0)
    assert {table.pick(f"user:{user}").name for user in USERS} == {"current"}
    assert {table.pick(None).name for _ in range(200)} == {"current"}


def test_different_routes_split_the_same_users_independently() -> None:
    one = split(50, 50)
    other = RouteVariants(
        "translation",
        {
            name: v
            for name, v in zip(
                ("current", "candidate"),
                (VariantSpec(backends=["a"], weight=50), VariantSpec(backends=["b"], weight=50)),
                strict=True,
            )
        },
        "user",
    )
    agree = sum(one.pick(f"user:{u}").name == other.pick(f"user:{u}").name for u in USERS)
    low, high = binomial_bounds(2000, 0.5)
    assert low <= agree <= high  # no correlation: the route is part of the hash


def chat(user: str | None = None) -> ChatCompletionRequest:
    body: dict[str, object] = {"model": "summarization", "messages": [{"role": "user", "content": "hi"}]}
    return ChatCompletionRequest.model_validate(body | ({"user": user} if user else {}))


def selector(sticky: str) -> RouteSelector:
    rules = parse_rules(VALID.replace("sticky: user", f"sticky: {sticky}"))
    return RouteSelector(rules, DefaultRouteRouter(rules))


async def test_the_selector_gives_the_variant_and_its_chain() -> None:
    by_user = selector("user")
    seen = {}
    for user in USERS[:200]:
        decision = await by_user.select("summarization", None, chat(user), RoutingContext("t"))
        assert decision.backends == {"current": ("a", "ext"), "candidate": ("b", "ext")}[decision.variant or ""]
        seen[user] = decision.variant
    assert set(seen.values()) == {"current", "candidate"}


async def test_sticky_by_tenant_and_by_header() -> None:
    by_tenant, by_header = selector("tenant"), selector("header:X-Cohort")
    for n in range(50):
        tenant = RoutingContext(f"tenant-{n}")
        assert len({(await by_tenant.select("summarization", None, chat(), tenant)).variant for _ in range(5)}) == 1
        cohort = RoutingContext("t", Headers({"x-cohort": f"c{n}"}))
        assert len({(await by_header.select("summarization", None, chat(), cohort)).variant for _ in range(5)}) == 1


async def test_a_sticky_route_without_its_key_draws_at_random() -> None:
    by_user = selector("user")
    drawn = Counter(
        [(await by_user.select("summarization", None, chat(), RoutingContext())).variant for _ in range(600)]
    )
    assert set(drawn) == {"current", "candidate"}  # P(no candidate in 600 at 10 %) ~ 1e-27


async def test_a_route_without_variants_and_an_alias_have_none() -> None:
    plain = await selector("user").select("general", None, chat(), RoutingContext())
    assert (plain.variant, plain.backends) == (None, ("ext",))
