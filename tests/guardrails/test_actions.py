"""Every action on input and output, through chat completions, Responses and Messages, as JSON and
as streams; the self-hosted and the external backend record what they were sent."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from tests.gateway.harness import KEY, gateway
from tests.guardrails.rules import AUTH, Recorder, rules

ADMIN_KEY = "adm-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
DEFINED = """
  pii: {kind: pii, action: redact}
  pii_external: {kind: pii, action: redact, applies_to: external}
  banned: {kind: pattern, words: [plutonium, "launch codes"], action: block}
  noted: {kind: pattern, words: [lunch], action: flag}
  boilerplate: {kind: pattern, patterns: ["(?i)as an ai language model"], action: fallback}
  secret_out: {kind: pattern, patterns: ["TOP-SECRET-[0-9]+"], action: block}
  masked_out: {kind: pii, entities: [email], action: redact}
  hedged_out: {kind: pattern, words: [probably], action: flag}
"""
ROUTES = """
  general:
    backends: [local, second, vendor]
    guardrails: {input: [banned, noted, pii_external], output: [boilerplate, secret_out, masked_out, hedged_out]}
  plain: {backends: [local]}
"""
RULES = rules(DEFINED, ROUTES)
APIS = ["chat", "responses", "messages"]


def ask(
    api: str, text: str, stream: bool = False, model: str = "general"
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The path, body and headers of one request in ``api``'s wire format."""
    if api == "chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
        return "/v1/chat/completions", body | ({"stream": True} if stream else {}), AUTH
    if api == "responses":
        return "/v1/responses", {"model": model, "input": text, "stream": stream}, AUTH
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}], "stream": stream}
    return "/v1/messages", body, {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


async def send(client: httpx.AsyncClient, api: str, text: str, stream: bool = False) -> httpx.Response:
    path, body, headers = ask(api, text, stream)
    return await client.post(path, json=body, headers=headers)


def answer_text(api: str, response: httpx.Response, stream: bool) -> str:
    if stream:
        return streamed_text(api, response.text)
    body = response.json()
    if api == "chat":
        return str(body["choices"][0]["message"]["content"])
    if api == "responses":
        return "".join(p.get("text", "") for item in body["output"] for p in item.get("content", []))
    return "".join(block.get("text", "") for block in body["content"])


def streamed_text(api: str, raw: str) -> str:
    text = ""
    for line in raw.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if api == "chat":
            for choice in event.get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
        elif api == "responses" and event.get("type") == "response.output_text.delta":
            text += event["delta"]
        elif api == "messages" and event.get("type") == "content_block_delta":
            text += event["delta"].get("text", "")
    return text


def filtered(api: str, response: httpx.Response, stream: bool) -> bool:
    """Whether the answer says, in the API's own way, that it was withheld by a content filter."""
    raw = response.text
    if api == "chat":
        return '"finish_reason":"content_filter"' in raw.replace(" ", "")
    if api == "responses":
        return '"reason":"content_filter"' in raw.replace(" ", "")
    return '"stop_reason":"refusal"' in raw.replace(" ", "")


@pytest.mark.parametrize("api", APIS)
async def test_an_input_block_is_a_400_content_blocked_in_each_apis_error_shape(api: str) -> None:
    recorder = Recorder()
    async with gateway(recorder, RULES) as client:
        for stream in (False, True):
            response = await send(client, api, "where are the Launch Codes kept?", stream)
            assert response.status_code == 400
            body = response.json()
            if api == "messages":
                assert body["type"] == "error"
                assert body["error"]["type"] == "invalid_request_error"
                assert "'banned'" in body["error"]["message"]
            else:
                assert body["error"]["code"] == "content_blocked"
                assert "'banned'" in body["error"]["message"]
    assert recorder.received == {}  # no backend saw it


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True])
async def test_external_backends_get_the_redacted_text_and_self_hosted_ones_the_original(
    api: str, stream: bool
) -> None:
    recorder = Recorder(fail={"local", "second"})  # the request falls back to the external vendor
    prompt = "Write to jane.doe@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111"
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, prompt, stream)
    assert response.status_code == 200
    assert recorder.texts("local") == [prompt]
    assert recorder.texts("second") == [prompt]
    assert recorder.texts("vendor") == ["Write to [EMAIL] or call [PHONE] about card [CREDIT_CARD]"]
    assert "pii_external=redact" in response.headers["x-turnout-guardrails"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_flag_changes_nothing_and_says_so(api: str, stream: bool) -> None:
    recorder = Recorder()
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "what is for lunch?", stream)
    assert response.status_code == 200
    assert response.headers["x-turnout-guardrails"] == "noted=flag"
    assert answer_text(api, response, stream) == "plain answer from local"
    assert recorder.texts("local") == ["what is for lunch?"]


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_output_flag_changes_nothing_and_is_counted(api: str, stream: bool) -> None:
    text = "It will probably rain tomorrow, so take an umbrella with you when you go out. " * 5
    recorder = Recorder(answers={"local": text})
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "weather?", stream)
        exposed = (await client.get("/metrics")).text
    assert response.status_code == 200
    assert answer_text(api, response, stream) == text
    if not stream:  # a stream's headers are sent before its answer is checked
        assert response.headers["x-turnout-guardrails"] == "hedged_out=flag"
    assert 'turnout_guardrail_results_total{guardrail="hedged_out",result="flag",stage="output"} 1.0' in exposed


@pytest.mark.parametrize("api", APIS)
async def test_an_output_fallback_answers_from_the_next_backend(api: str) -> None:
    recorder = Recorder(answers={"local": "As an AI language model, I cannot help.", "second": "Here is the help."})
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "help me")
    assert response.status_code == 200
    assert answer_text(api, response, False) == "Here is the help."
    assert response.headers["x-turnout-backend"] == "second"
    assert response.headers["x-turnout-guardrails"] == "boilerplate=fallback"


@pytest.mark.parametrize("api", APIS)
async def test_a_stream_falls_back_when_its_failing_answer_was_still_held_back(api: str) -> None:
    clean = "Here is the help you asked for, step by step. " * 8
    recorder = Recorder(answers={"local": "As an AI language model, I cannot help.", "second": clean})
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "help me", stream=True)
    assert response.status_code == 200
    assert answer_text(api, response, True) == clean
    assert "AI language model" not in response.text
    assert not filtered(api, response, True)
    assert [host for host in ("local", "second", "vendor") if host in recorder.received] == ["local", "second"]


async def test_a_stream_whose_failing_span_comes_after_text_was_sent_ends_withheld() -> None:
    late = "Sure, here is a long and careful answer to your question. " * 8 + "As an AI language model, no."
    recorder = Recorder(answers={"local": late, "second": "unused"})
    async with gateway(recorder, RULES) as client:
        response = await send(client, "chat", "help me", stream=True)
    assert filtered("chat", response, True)
    assert "AI language model" not in response.text
    assert "second" not in recorder.received  # text had reached the client: no other backend may continue it


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True])
async def test_when_every_backend_fails_a_fallback_guardrail_the_answer_is_withheld(api: str, stream: bool) -> None:
    boiler = "As an AI language model I will not."
    recorder = Recorder(answers={"local": boiler, "second": boiler, "vendor": boiler})
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "help me", stream)
    assert response.status_code == 200
    assert answer_text(api, response, stream) == ""
    assert filtered(api, response, stream)
    assert len(recorder.received) == 3


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_output_block_withholds_the_answer(api: str, stream: bool) -> None:
    text = "The password is TOP-SECRET-4242, do not share it. " + "More words follow here. " * 20
    recorder = Recorder(answers={"local": text})
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "tell me", stream)
    assert response.status_code == 200
    assert "TOP-SECRET" not in response.text
    assert filtered(api, response, stream)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("stream", [False, True])
async def test_an_output_redaction_rewrites_the_answer(api: str, stream: bool) -> None:
    text = "Sure. Contact the team at help.desk@example.org and they will answer within a day. " * 4
    recorder = Recorder(answers={"local": text})
    async with gateway(recorder, RULES) as client:
        response = await send(client, api, "who do I ask?", stream)
    assert response.status_code == 200
    assert answer_text(api, response, stream) == text.replace("help.desk@example.org", "[EMAIL]")
    assert "example.org" not in response.text
    if not stream:
        assert response.headers["x-turnout-guardrails"] == "masked_out=redact"


async def test_a_route_without_guardrails_is_untouched_and_default_guardrails_reach_every_route() -> None:
    with_default = rules(DEFINED, ROUTES, default="default_guardrails: {input: [pii]}")
    recorder = Recorder()
    async with gateway(recorder, with_default) as client:
        _, body, headers = ask("chat", "mail jane@example.com", model="plain")
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.headers["x-turnout-guardrails"] == "pii=redact"
        pinned = await client.post("/v1/chat/completions", json=body | {"model": "general"}, headers=headers)
        assert pinned.status_code == 200
    assert recorder.texts("local") == ["mail [EMAIL]", "mail [EMAIL]"]
    recorder = Recorder()
    async with gateway(recorder, RULES) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert "x-turnout-guardrails" not in response.headers
    assert recorder.texts("local") == ["mail jane@example.com"]


async def test_a_withheld_answer_is_not_cached_and_a_hit_is_checked_again_when_output_guardrails_change() -> None:
    text = "Reach me at ops@example.com any time."
    recorder = Recorder(answers={"local": text})
    cached_rules = RULES.replace(
        "backends: [local, second, vendor]", "backends: [local, second, vendor]\n    cache: {mode: always}"
    )
    blocking = cached_rules.replace(
        "masked_out: {kind: pii, entities: [email], action: redact}",
        "masked_out: {kind: pii, entities: [email], action: block}",
    )
    body = {"model": "general", "messages": [{"role": "user", "content": "how do I reach you?"}]}
    async with gateway(recorder, blocking, admin_key=ADMIN_KEY) as client:
        for _ in range(2):
            response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            assert response.json()["choices"][0]["finish_reason"] == "content_filter"
            assert response.headers["x-turnout-cache"] == "miss"  # the withheld answer was not stored
        assert len(recorder.received["local"]) == 2
        current = (await client.get("/admin/rules", headers=EDITOR)).json()["version"]
        lenient = blocking.replace("masked_out, hedged_out]", "hedged_out]")
        assert lenient != blocking
        applied = await client.put("/admin/rules", content=lenient, headers={**EDITOR, "if-match": f'"{current}"'})
        assert applied.status_code == 200, applied.text
        stored = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert stored.json()["choices"][0]["message"]["content"] == text
        hit = await client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert hit.headers["x-turnout-cache"] == "hit"
        current = (await client.get("/admin/rules", headers=EDITOR)).json()["version"]
        applied = await client.put("/admin/rules", content=blocking, headers={**EDITOR, "if-match": f'"{current}"'})
        assert applied.status_code == 200, applied.text
        rechecked = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert rechecked.headers["x-turnout-cache"] == "hit"
    assert rechecked.json()["choices"][0]["finish_reason"] == "content_filter"
    assert "ops@example.com" not in rechecked.text
    assert len(recorder.received["local"]) == 3


async def test_results_reach_the_metrics_the_access_log_and_the_cost_report(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    recorder = Recorder(answers={"local": "As an AI language model, no.", "second": "Yes."})
    async with gateway(recorder, RULES, admin_key=ADMIN_KEY) as client:
        await send(client, "chat", "lunch plans?")
        await send(client, "chat", "launch codes please")
        exposed = (await client.get("/metrics")).text
        report = (
            await client.get("/admin/reports/cache", params={"since": "1h", "by": "route"}, headers=EDITOR)
        ).json()
    assert 'turnout_guardrail_results_total{guardrail="noted",result="flag",stage="input"} 1.0' in exposed
    assert 'turnout_guardrail_results_total{guardrail="banned",result="block",stage="input"} 1.0' in exposed
    assert 'turnout_guardrail_results_total{guardrail="boilerplate",result="fallback",stage="output"} 1.0' in exposed
    access = [r for r in caplog.records if r.name == "turnout.access"]
    logged = [r.fields["guardrails"] for r in access]  # type: ignore[attr-defined]
    assert logged == [
        [
            "banned:input:pass",
            "noted:input:flag",
            "boilerplate:output:fallback",
            "boilerplate:output:pass",
            "secret_out:output:pass",
            "masked_out:output:pass",
            "hedged_out:output:pass",
        ],
        ["banned:input:block", "noted:input:pass"],
    ]
    assert "lunch" not in json.dumps(logged)
    assert "codes" not in json.dumps(logged)
    (row,) = [r for r in report["rows"] if r["route"] == "general"]
    assert row["guardrail_fell_back"] == 1
    assert row["guardrail_blocked"] == 1
