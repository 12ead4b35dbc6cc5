"""The app in-process over ``httpx.ASGITransport``, its backends behind a ``MockTransport``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings

KEY = "sk-test-key"
LIMITED_KEY = "sk-limited"
AUTH = {"authorization": f"Bearer {KEY}"}
RULES = f"""
backends:
  primary: {{kind: openai, endpoint: "http://primary/v1", model: primary-model}}
  fallback: {{kind: openai, endpoint: "http://fallback/v1", model: fallback-model}}
routes:
  general: {{backends: [primary, fallback], description: everything}}
  code: {{backends: [primary]}}
default_route: general
router: {{kind: default}}
aliases: {{pinned-fallback: fallback}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
  - {{tenant: t2, sha256: "{hashlib.sha256(LIMITED_KEY.encode()).hexdigest()}", routes: [code]}}
"""
Upstream = Callable[[httpx.Request], httpx.Response]


def completion(content: str, model: str = "m") -> dict[str, object]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def sse(*events: dict[str, object], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def delta(content: str, finish: str | None = None) -> dict[str, object]:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def echo_upstream(request: httpx.Request) -> httpx.Response:
    """Answers with the host that was asked, so tests see which backend served."""
    return httpx.Response(200, json=completion(f"from {request.url.host}", json.loads(request.content)["model"]))


@asynccontextmanager
async def gateway(
    upstream: Upstream = echo_upstream, rules: str = RULES, checks_reach: bool = False, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway over ``upstream``. Its periodic health checks (``GET …/models``, the first at
    start-up) reach ``upstream`` only with ``checks_reach``: other tests count what it was sent."""
    answer = upstream if checks_reach else _checks_answered(upstream)
    upstream_client = httpx.AsyncClient(transport=httpx.MockTransport(answer))  # type: ignore[arg-type]
    app = create_app(Settings(**settings), parse_rules(rules), http_client=upstream_client)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client
    await upstream_client.aclose()


@asynccontextmanager
async def networked(rules: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway reaching its backends over the network (no injected client): real upstreams,
    the fault server, a collector. Leaving it ends the lifespan (spans flushed, tallies written)."""
    app = create_app(Settings(**settings), parse_rules(rules))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


def _checks_answered(upstream: Upstream) -> Upstream:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        return upstream(request)

    return answer


def chat_body(model: str = "auto", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
