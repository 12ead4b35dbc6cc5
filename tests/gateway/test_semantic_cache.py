"""The opt-in semantic cache: paraphrases hit; different numbers, identifiers or fields never do."""

from __future__ import annotations

import pytest

from contracts.wire import ChatCompletionRequest
from gateway.cache.semantic import identifiers_of, semantic_space
from tests.gateway.harness import RULES, gateway
from tests.gateway.test_cache import Upstream, ask

SEMANTIC = RULES.replace("description: everything}", "description: everything, cache: {semantic_threshold: 0.9}}")


def user(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def test_identifiers_are_numbers_codes_and_quotes() -> None:
    assert identifiers_of('Refund order A-1042 for "Jane Doe", 3 items, SKU') == 'a-1042|"jane doe"|3|sku'
    assert identifiers_of("What is 15% of 80?") != identifiers_of("What is 15% of 90?")
    assert identifiers_of("How do I reset my password?") == ""
    assert identifiers_of("2 apples, 2 pears, 3 plums") != identifiers_of("3 apples, 2 pears, 3 plums")


def test_space_ignores_only_the_last_user_message() -> None:
    def space(text: str, **extra: object) -> str:
        request = ChatCompletionRequest.model_validate({"model": "auto", **user(text), "temperature": 0, **extra})
        return semantic_space("t:a", "general", "m", request)

    assert space("hello") == space("hi there")
    assert space("hello", max_tokens=5) != space("hello")


@pytest.fixture(params=["memory", "redis8"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    return {} if request.param == "memory" else {"redis_url": request.getfixturevalue("redis8_url")}


async def test_paraphrase_hits_with_its_similarity(store_settings: dict[str, object]) -> None:
    upstream = Upstream()
    async with gateway(upstream, rules=SEMANTIC, **store_settings) as client:
        first = await ask(client, **user("How do I reset my password?"))
        paraphrase = await ask(client, **user("How can I reset my password?"))
    assert first.headers["x-turnout-cache"] == "miss"
    assert paraphrase.headers["x-turnout-cache"] == "hit"
    assert 0.9 <= float(paraphrase.headers["x-turnout-cache-similarity"]) <= 1
    assert paraphrase.json() == first.json()
    assert upstream.calls.total() == 1


async def test_different_numbers_or_meaning_never_hit(store_settings: dict[str, object]) -> None:
    upstream = Upstream()
    async with gateway(upstream, rules=SEMANTIC, **store_settings) as client:
        await ask(client, **user("What is 15% of 80?"))
        other_number = await ask(client, **user("What is 15% of 90?"))
        other_question = await ask(client, **user("What is the capital of France?"))
        other_params = await ask(client, max_tokens=7, **user("What is 15 % of 80?"))
    assert [r.headers["x-turnout-cache"] for r in (other_number, other_question, other_params)] == ["miss"] * 3
    assert upstream.calls.total() == 4


async def test_routes_without_a_threshold_stay_exact() -> None:
    upstream = Upstream()
    async with gateway(upstream) as client:
        await ask(client, **user("How do I reset my password?"))
        paraphrase = await ask(client, **user("How can I reset my password?"))
    assert paraphrase.headers["x-turnout-cache"] == "miss"


async def test_redis_without_vector_sets_keeps_the_exact_cache(redis_url: str) -> None:
    upstream = Upstream()
    async with gateway(upstream, rules=SEMANTIC, redis_url=redis_url) as client:
        await ask(client, **user("How do I reset my password? 7"))
        exact = await ask(client, **user("How do I reset my password? 7"))
        paraphrase = await ask(client, **user("How can I reset my password? 7"))
    assert exact.headers["x-turnout-cache"] == "hit"
    assert paraphrase.status_code == 200
    assert paraphrase.headers["x-turnout-cache"] == "miss"
