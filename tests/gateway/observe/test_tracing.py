"""Traces end to end: a real OTLP/HTTP receiver (decoding with opentelemetry-proto), the real
fault-injecting upstream, the gateway in between with tracing on."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys

import httpx
import pytest

from support.faults import FaultServer
from tests.gateway.harness import networked
from tests.gateway.observe.otlp_receiver import ReceivedSpan, otlp_receiver

KEY = "sk-trace-client"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
SERVER, CLIENT = 2, 3  # SpanKind in OTLP


def rules(faults: FaultServer, primary: str, fallback: str, key_env: str = "") -> str:
    backend = "{kind: openai, endpoint: '%s', model: %s, health_check: {enabled: false}%s}"
    extra = f", api_key_env: {key_env}" if key_env else ""
    return f"""
backends:
  primary: {backend % (faults.endpoint(primary), "primary-model", extra)}
  fallback: {backend % (faults.endpoint(fallback), "fallback-model", "")}
routes:
  general: {{backends: [primary, fallback]}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""


def ask(client: httpx.AsyncClient, content: str = "hi", **body: object) -> object:
    return client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": content}], "temperature": 0, **body},
        headers={"authorization": f"Bearer {KEY}", "traceparent": TRACEPARENT, "tracestate": "vendor=1"},
    )


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    (found,) = [s for s in spans if s.name == name]
    return found


async def test_a_request_with_a_fallback_is_one_trace_continued_from_the_caller_and_sent_upstream(
    faults: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with otlp_receiver() as receiver:
        async with networked(rules(faults, "status-500", "ok"), otel_endpoint=receiver.url) as client:
            answer = await ask(client)  # type: ignore[misc]
        spans = receiver.wait_for(5)
    assert answer.status_code == 200
    server = one(spans, "POST /v1/chat/completions")
    assert (server.kind, server.trace_id, server.parent_span_id) == (SERVER, CALLER_TRACE, CALLER_SPAN)
    assert server.attributes["turnout.route"] == "general"
    assert server.attributes["turnout.backend"] == "fallback"
    assert server.attributes["turnout.cache"] == "miss"
    assert server.attributes["http.response.status_code"] == 200
    route, cache = one(spans, "route"), one(spans, "cache lookup")
    assert route.parent_span_id == cache.parent_span_id == server.span_id
    assert route.attributes["turnout.decided_by"] == "default"
    failed, served = one(spans, "chat primary-model"), one(spans, "chat fallback-model")
    assert failed.parent_span_id == served.parent_span_id == server.span_id  # siblings
    assert (failed.kind, failed.attributes["error.type"]) == (CLIENT, "bad_upstream_response")
    assert served.attributes["gen_ai.operation.name"] == "chat"
    assert served.attributes["gen_ai.provider.name"] == "openai"
    assert served.attributes["gen_ai.request.model"] == "fallback-model"
    assert served.attributes["gen_ai.response.model"] == "fault"
    assert served.attributes["gen_ai.request.temperature"] == 0
    assert served.attributes["gen_ai.usage.input_tokens"] == 3
    assert served.attributes["gen_ai.usage.output_tokens"] == 2
    assert [v.string_value for v in served.attributes["gen_ai.response.finish_reasons"].values] == ["stop"]
    assert served.attributes["server.address"] == "127.0.0.1"
    upstream_parent = faults.last_headers["traceparent"]
    assert upstream_parent == f"00-{CALLER_TRACE}-{served.span_id}-01"  # the model server joins the trace
    logged = [r for r in caplog.records if r.name == "turnout.access"]
    assert logged[-1].fields["trace_id"] == CALLER_TRACE  # type: ignore[attr-defined]
    assert all(str(v) != "hi" for s in spans for v in s.attributes.values())  # no prompt text by default
    assert not [name for s in spans for name, _ in s.events if name == "gen_ai.content"]


async def test_a_streams_span_ends_when_the_stream_does_with_its_first_chunk_event(faults: FaultServer) -> None:
    with otlp_receiver() as receiver:
        async with networked(rules(faults, "slowstream-60", "ok"), otel_endpoint=receiver.url) as client:
            answer = await ask(client, stream=True)  # type: ignore[misc]
        spans = receiver.wait_for(4)
    assert answer.status_code == 200
    server = one(spans, "POST /v1/chat/completions")
    assert [name for name, _ in server.events] == ["gen_ai.first_chunk"]
    assert server.end_ns - server.start_ns >= 4 * 60 * 1_000_000  # five chunks 60 ms apart, all inside it
    attempt = one(spans, "chat primary-model")
    assert attempt.attributes["gen_ai.request.stream"] is True
    assert [name for name, _ in attempt.events] == ["gen_ai.first_chunk"]


async def test_content_is_captured_only_when_asked_and_then_with_provider_keys_redacted(
    faults: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACE_TEST_KEY", "sk-provider-secret-0123456789")
    text = rules(faults, "ok", "ok", key_env="TRACE_TEST_KEY")
    with otlp_receiver() as receiver:
        async with networked(text, otel_endpoint=receiver.url, otel_capture_content=True) as client:
            await ask(client, "my key is sk-provider-secret-0123456789, summarise")  # type: ignore[misc]
        spans = receiver.wait_for(4)
    (content,) = [attrs for s in spans for name, attrs in s.events if name == "gen_ai.content"]
    assert content["gen_ai.input.messages"] == "my key is [redacted], summarise"
    assert content["gen_ai.output.messages"] == "from ok"


async def test_a_collector_that_is_down_costs_requests_nothing_and_is_logged_once(
    faults: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with otlp_receiver() as receiver:
        down = receiver.url  # closed when the block ends
    async with networked(rules(faults, "ok", "ok"), otel_endpoint=down) as client:
        statuses = [(await ask(client, f"q{n}")).status_code for n in range(20)]  # type: ignore[misc]
    assert statuses == [200] * 20
    failures = [r.getMessage() for r in caplog.records if "trace export failed" in r.getMessage()]
    assert len(failures) == 1


def test_without_the_extra_the_gateway_serves_and_says_tracing_is_off(tmp_path: object) -> None:
    script = """
import asyncio, sys, logging
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("opentelemetry.sdk") or name.startswith("opentelemetry.exporter"):
            raise ImportError("no otel extra")
sys.meta_path.insert(0, Missing())
import httpx
from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
logging.basicConfig(level=logging.INFO)
RULES = '''
backends:
  b: {kind: openai, endpoint: "http://b/v1", model: m, health_check: {enabled: false}}
routes:
  general: {backends: [b]}
default_route: general
router: {kind: default}
'''
async def main():
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})))
    settings = Settings(otel_endpoint="http://127.0.0.1:9", auth_disabled=True)
    app = create_app(settings, parse_rules(RULES), http_client=upstream)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as client:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            answer = await client.post("/v1/chat/completions", json=body)
            print("STATUS", answer.status_code)
asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert "STATUS 200" in result.stdout, result.stderr
    assert "tracing is off: http://127.0.0.1:9 is set but the otel extra is not installed" in result.stderr
