"""Any OpenAI-compatible server: vLLM, TGI, SGLang, Triton's OpenAI frontend, llama.cpp, Ollama."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from backends.base import Health
from backends.http_transport import (
    HttpClients,
    check_models,
    raise_for_status,
    read_body,
    translated_errors,
)
from backends.request_context import upstream_headers
from backends.specs import OpenAIEndpoint
from backends.sse import bounded_lines, read_chunks
from backends.upstream_http import UpstreamHttp
from contracts.errors import BackendBadResponse, BackendError, BackendRejected
from contracts.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)

Parsed = TypeVar("Parsed", bound=BaseModel)
DEFAULT_MAX_RESPONSE_BYTES: int = OpenAIEndpoint.model_fields["max_response_bytes"].default


class OpenAICompatBackend:
    def __init__(
        self,
        name: str,
        endpoint: str,
        model: str,
        upstream: UpstreamHttp,
        api_key: str | None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.name = name
        self.model = model
        self._max_bytes = max_response_bytes
        self._base = endpoint.rstrip("/")
        self._chat_url = self._base + "/chat/completions"
        self._upstream = upstream
        """Closed with the backend (it leaves a client handed in by the app's caller open)."""
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"

    @classmethod
    async def open(cls, name: str, spec: OpenAIEndpoint, clients: HttpClients) -> OpenAICompatBackend:
        api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        upstream = clients.upstream(spec.max_connections)
        return cls(name, spec.endpoint, spec.model, upstream, api_key, spec.max_response_bytes)

    async def complete(self, request: ChatCompletionRequest, timeout_s: float) -> ChatCompletion:
        body = await self._post_url(self._chat_url, request.upstream_body(self.model), timeout_s)
        return self._parse(ChatCompletion, body)

    async def stream(self, request: ChatCompletionRequest, timeout_s: float) -> AsyncIterator[ChatCompletionChunk]:
        body = request.upstream_body(self.model)
        exchange = self._upstream.send("POST", self._chat_url, body, upstream_headers(self._headers))
        with translated_errors(self.name):
            async with asyncio.timeout(timeout_s) as until_head, exchange as response:
                await raise_for_status(self.name, response)
                until_head.reschedule(None)  # the head is in: from here each line has timeout_s
                lines = bounded_lines(self.name, response.parts(), self._max_bytes)
                async for chunk in read_chunks(self.name, lines, timeout_s):
                    yield chunk

    async def embed(self, request: EmbeddingRequest, timeout_s: float) -> EmbeddingResponse:
        body = await self._post("/embeddings", request.upstream_body(self.model), timeout_s)
        return self._parse(EmbeddingResponse, body)

    async def health(self, timeout_s: float) -> Health:
        try:
            await check_models(self._upstream, self.name, self._base + "/models", self._headers, timeout_s)
        except Exception as exc:  # a health check reports, it never raises
            return Health(is_healthy=False, detail=str(exc))
        return Health(is_healthy=True)

    async def count_tokens(self, request: ChatCompletionRequest, timeout_s: float) -> int | None:
        """llama.cpp's server: ``/apply-template`` then ``/tokenize``; vLLM's: ``/tokenize`` with the
        messages. Both at the server's root, beside ``/v1``. ``None`` when neither answers."""
        messages = request.model_dump(mode="json", exclude_unset=True, include={"messages", "tools"})
        root = self._base.removesuffix("/v1")
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    templated = orjson.loads(await self._post_json(root + "/apply-template", messages, timeout_s))
                    prompt = {"content": templated["prompt"]}
                    return len(orjson.loads(await self._post_json(root + "/tokenize", prompt, timeout_s))["tokens"])
                except (BackendRejected, KeyError, TypeError):
                    asked = {"model": self.model, **messages}
                    return int(orjson.loads(await self._post_json(root + "/tokenize", asked, timeout_s))["count"])
        except (BackendError, TimeoutError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            return None

    async def aclose(self) -> None:
        """Closes the backend's own connection pool (a shared one is closed by its owner)."""
        await self._upstream.aclose()

    async def _post(self, path: str, body: bytes, timeout_s: float) -> bytes:
        return await self._post_url(self._base + path, body, timeout_s)

    async def _post_json(self, url: str, payload: dict[str, Any], timeout_s: float) -> bytes:
        return await self._post_url(url, orjson.dumps(payload), timeout_s)

    async def _post_url(self, url: str, body: bytes, timeout_s: float) -> bytes:
        """The answer's body, read within ``timeout_s`` and ``max_response_bytes``."""
        exchange = self._upstream.send("POST", url, body, upstream_headers(self._headers))
        with translated_errors(self.name):
            async with asyncio.timeout(timeout_s), exchange as response:
                await raise_for_status(self.name, response)
                return await read_body(self.name, response, self._max_bytes)

    def _parse(self, model: type[Parsed], content: bytes) -> Parsed:
        try:
            return model.model_validate_json(content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise BackendBadResponse(
                f"backend {self.name!r} sent a malformed response ({where}: {first['msg']})"
            ) from exc
