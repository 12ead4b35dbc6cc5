"""Password-protected Redis, standalone, Cluster and Sentinel: the credentials in the URL are used."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.cache.store import RedisStore
from gateway.redis_client import close_redis, redis_client
from tests.gateway.harness import AUTH, chat_body, gateway
from tests.servers import redis_cluster, redis_sentinel, redis_server

PASSWORD = "s3cret-redis-pass"


@pytest.fixture(scope="module", params=["standalone", "cluster", "sentinel"])
def protected_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = str(tmp_path_factory.mktemp(request.param))
    servers = {
        "standalone": lambda: redis_server(password=PASSWORD),
        "cluster": lambda: redis_cluster(workdir, password=PASSWORD),
        "sentinel": lambda: redis_sentinel(workdir, password=PASSWORD),
    }
    with servers[request.param]() as url:
        yield url


async def test_store_authenticates_with_the_urls_credentials(protected_url: str) -> None:
    store = RedisStore.from_url(protected_url, 2.0)
    await store.set("auth-check", b"yes", 60)
    assert await store.get("auth-check") == b"yes"
    await store.aclose()


async def test_a_wrong_password_is_refused_so_the_test_above_means_something(protected_url: str) -> None:
    client = redis_client(protected_url.replace(PASSWORD, "wrong-password"), 2.0)
    with pytest.raises(Exception, match=r"(?i)auth|pass|invalid"):
        await client.set("auth-check", b"no")
    await close_redis(client)


async def test_gateway_caches_on_a_protected_redis(protected_url: str) -> None:
    async with gateway(redis_url=protected_url) as client:
        first = await client.post("/v1/chat/completions", json=chat_body(temperature=0, seed=7), headers=AUTH)
        second = await client.post("/v1/chat/completions", json=chat_body(temperature=0, seed=7), headers=AUTH)
    assert first.headers["x-turnout-cache"] == "miss"
    assert second.headers["x-turnout-cache"] == "hit"
