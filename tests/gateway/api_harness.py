"""The gateway under uvicorn for the official SDKs (openai, anthropic), in front of a scripted
upstream that speaks chat completions: it echoes the last message, and calls the first tool it is
offered until the tool's result comes back. Every body it was sent is kept."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.servers import serving

KEY, OTHER_KEY = "sk-api-tenant-one", "sk-api-tenant-two"
RULES = f"""
backends:
  primary: {{kind: openai, endpoint: "http://primary/v1", model: primary-model}}
  fallback: {{kind: openai, endpoint: "http://fallback/v1", model: fallback-model}}
routes:
  general: {{backends: [primary, fallback], description: everything}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: one, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
  - {{tenant: two, sha256: "{hashlib.sha256(OTHER_KEY.encode()).hexdigest()}"}}
"""
USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


@dataclass
class ScriptedUpstream:
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": []})
        body = json.loads(request.content)
        self.bodies.append(body)
        message = self.answer(body)
        if not body.get("stream"):
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            choice = {"index": 0, "message": message, "finish_reason": finish}
            return httpx.Response(200, json=_completion({"choices": [choice], "usage": USAGE}))
        return httpx.Response(200, content=_streamed(message), headers={"content-type": "text/event-stream"})

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        last = body["messages"][-1]
        tools = body.get("tools") or []
        if tools and last["role"] != "tool":
            name = tools[0]["function"]["name"]
            call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        content = last["content"]
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        return {"role": "assistant", "content": f"echo: {text}"}


def _completion(fields: dict[str, Any]) -> dict[str, Any]:
    return {"id": "up-1", "object": "chat.completion", "created": 1, "model": "primary-model", **fields}


def _streamed(message: dict[str, Any]) -> bytes:
    chunks: list[dict[str, Any]] = [{"index": 0, "delta": {"role": "assistant", "content": ""}}]
    if message.get("content"):
        words = message["content"].split(" ")
        chunks += [{"index": 0, "delta": {"content": w if i == 0 else " " + w}} for i, w in enumerate(words)]
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call["function"]
        opened = {"index": i, "id": call["id"], "type": "function", "function": {"name": function["name"]}}
        chunks.append({"index": 0, "delta": {"tool_calls": [opened]}})
        half = len(function["arguments"]) // 2
        for part in (function["arguments"][:half], function["arguments"][half:]):
            chunks.append({"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": part}}]}})
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    chunks.append({"index": 0, "delta": {}, "finish_reason": finish})
    events = [_completion({"object": "chat.completion.chunk", "choices": [c]}) for c in chunks]
    events.append(_completion({"object": "chat.completion.chunk", "choices": [], "usage": USAGE}))
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


@dataclass
class Clients:
    url: str
    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic
    upstream: ScriptedUpstream


@asynccontextmanager
async def sdk_clients(rules: str = RULES, key: str = KEY, **settings: Any) -> AsyncIterator[Clients]:
    upstream = ScriptedUpstream()
    upstream_client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    app = create_app(Settings(**settings), parse_rules(rules), http_client=upstream_client)
    try:
        with serving(app) as url:
            async with (
                openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30) as oai,
                anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, timeout=30) as claude,
            ):
                yield Clients(url, oai, claude, upstream)
    finally:
        await upstream_client.aclose()
