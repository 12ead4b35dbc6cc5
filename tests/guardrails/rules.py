"""Rules and upstreams the guardrail tests share: a self-hosted and an external backend that
record every request they are sent."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import httpx

from tests.gateway.harness import KEY, completion

AUTH = {"authorization": f"Bearer {KEY}"}


def rules(guardrails: str, routes: str, default: str = "") -> str:
    return f"""
backends:
  local: {{kind: openai, endpoint: "http://local/v1", model: local-model}}
  second: {{kind: openai, endpoint: "http://second/v1", model: second-model}}
  vendor: {{kind: openai, endpoint: "http://vendor/v1", model: vendor-model, external: true}}
guardrails:
{guardrails}
routes:
{routes}
default_route: general
router: {{kind: default}}
{default}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""


@dataclass
class Recorder:
    """Upstreams by host: what each was sent, and what each answers (text per host)."""

    answers: dict[str, str] = field(default_factory=dict)
    received: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = json.loads(request.content)
        self.received.setdefault(host, []).append(body)
        if host in self.fail:
            return httpx.Response(500, json={"error": {"message": "down"}})
        text = self.answers.get(host, f"plain answer from {host}")
        if body.get("stream"):
            return httpx.Response(200, content=stream_of(text), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=completion(text, body["model"]))

    def texts(self, host: str) -> list[str]:
        return [str(m["content"]) for body in self.received.get(host, []) for m in body["messages"]]  # type: ignore[attr-defined]


def stream_of(text: str, piece: int = 7) -> bytes:
    def event(delta: dict[str, object] | None, finish: str | None = None, **extra: object) -> dict[str, object]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": choices, **extra}

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": text[start : start + piece]}) for start in range(0, len(text), piece)]
    events.append(event({}, "stop"))
    events.append(event(None, usage={"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}))
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"
