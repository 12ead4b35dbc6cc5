"""One way to reach Redis from a URL: standalone, Sentinel or Cluster.

redis://host:6379/0, rediss://..., unix:///run/redis.sock   standalone
redis+sentinel://h1:26379,h2:26379/mymaster[/db]            the master Sentinel names
redis+cluster://h1:7000,h2:7001                             Redis Cluster (any nodes to start from)

Credentials go where URLs put them, ``redis+cluster://user:password@h1:7000,h2:7001``: they
authenticate to every data node (each cluster node; a Sentinel's master and replicas). Sentinels
themselves are asked without credentials.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException, RedisError

REDIS_FAILURES = (RedisError, RedisClusterException, OSError)
"""What a Redis call can raise when the server is down or unreachable (a Cluster client's own
exception is not a ``RedisError``)."""


SOCKET_TIMEOUT_S = 5.0
"""The process's shared client waits no longer than this on a socket; each user bounds its own
calls tighter (``asyncio.timeout``: milliseconds for the cache, a second for reports)."""


def redis_client(url: str, timeout_s: float = SOCKET_TIMEOUT_S) -> Any:
    """A client with the same async API (``get``, ``set``, ``pipeline`` ...) whatever the topology."""
    parts = urlsplit(url)
    username, password = _credential(parts.username), _credential(parts.password)
    if parts.scheme == "redis+cluster":
        nodes = [ClusterNode(host, int(port)) for host, port in _hosts(parts.netloc, 6379)]
        return RedisCluster(
            startup_nodes=nodes,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            username=username,
            password=password,
        )
    if parts.scheme == "redis+sentinel":
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError(f"{url}: name the master, e.g. redis+sentinel://host:26379/mymaster")
        timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        sentinel = Sentinel(
            _hosts(parts.netloc, 26379), sentinel_kwargs=timeouts, **timeouts, username=username, password=password
        )  # type: ignore[no-untyped-call]
        return sentinel.master_for(path[0], db=int(path[1]) if len(path) > 1 else 0)
    return redis.Redis.from_url(url, retry_on_timeout=False, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def _credential(value: str | None) -> str | None:
    return unquote(value) if value else None


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.partition(":")
        hosts.append((host, int(port or default_port)))
    return hosts


async def close_redis(client: Any) -> None:
    """Close the client and, for Sentinel, the connections to the Sentinels themselves."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    await client.aclose()
    for sentinel in getattr(manager, "sentinels", []):
        await sentinel.aclose()
