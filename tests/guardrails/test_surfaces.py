"""Guardrails seen everywhere: route explain (HTTP and CLI), the admin view, traces, async checks,
the shipped moderation model and an operator's own model on the request path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import httpx

from support.faults import FaultServer
from tests.gateway.harness import gateway, networked
from tests.gateway.observe.otlp_receiver import otlp_receiver
from tests.guardrails.rules import AUTH, Recorder, rules

ADMIN_KEY = "adm-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
DEFINED = """
  pii: {kind: pii, action: redact}
  pii_external: {kind: pii, entities: [phone], action: redact, applies_to: external}
  banned: {kind: pattern, words: [plutonium], action: block}
  moderation: {kind: classifier, model: "builtin:moderation", action: fallback}
  later: {kind: pattern, words: [refund], action: flag, mode: async}
"""
ROUTES = """
  general:
    backends: [local, second, vendor]
    guardrails: {input: [banned, pii, pii_external, later], output: [moderation, later]}
  plain: {backends: [local]}
"""
RULES = rules(DEFINED, ROUTES)
HATEFUL = "Those people are vermin, filthy animals who should all be thrown out of this country."


def chat(text: str, model: str = "general", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def test_the_shipped_moderation_model_sends_a_hateful_answer_to_the_next_backend() -> None:
    recorder = Recorder(answers={"local": HATEFUL, "second": "Here is a balanced summary of both sides of the debate."})
    async with gateway(recorder, RULES) as client:
        response = await client.post("/v1/chat/completions", json=chat("what do you think of them?"), headers=AUTH)
    assert (
        response.json()["choices"][0]["message"]["content"] == "Here is a balanced summary of both sides of the debate."
    )
    assert response.headers["x-turnout-backend"] == "second"
    assert response.headers["x-turnout-guardrails"] == "moderation=fallback"


async def test_async_checks_flag_after_the_answer_and_change_nothing() -> None:
    recorder = Recorder(answers={"local": "We will send the refund on Monday."})
    async with gateway(recorder, RULES) as client:
        response = await client.post("/v1/chat/completions", json=chat("where is my refund?"), headers=AUTH)
        assert response.status_code == 200
        assert "later" not in response.headers.get("x-turnout-guardrails", "")
        exposed = ""
        for _ in range(100):  # the async checks run after the answer: poll, bounded
            exposed = (await client.get("/metrics")).text
            if 'guardrail="later",result="flag",stage="output"' in exposed:
                break
            await asyncio.sleep(0.02)
    assert 'turnout_guardrail_results_total{guardrail="later",result="flag",stage="input"} 1.0' in exposed
    assert 'turnout_guardrail_results_total{guardrail="later",result="flag",stage="output"} 1.0' in exposed
    assert response.json()["choices"][0]["message"]["content"] == "We will send the refund on Monday."


async def test_explain_runs_the_input_checks_and_shows_what_each_backend_would_be_sent() -> None:
    async with gateway(Recorder(), RULES, admin_key=ADMIN_KEY) as client:
        asked = {"prompt": "Mail bob@example.com or call +1 415 555 2671", "model": "general"}
        explained = (await client.post("/admin/route/explain", json=asked, headers=EDITOR)).json()
        blocked = (await client.post("/admin/route/explain", json={"prompt": "plutonium?"}, headers=EDITOR)).json()
        plain = (
            await client.post("/admin/route/explain", json={"prompt": "hi", "model": "plain"}, headers=EDITOR)
        ).json()
    guardrails = explained["guardrails"]
    assert {(r["guardrail"], r["result"]) for r in guardrails["input"]} == {
        ("banned", "pass"),
        ("pii", "redact"),
        ("pii_external", "pass"),  # pii redacted the phone number already
    }
    assert guardrails["sent"] == "Mail [EMAIL] or call [PHONE]"
    assert guardrails["output"] == ["moderation"]
    assert blocked["guardrails"]["blocked_by"] == "banned"
    assert plain["guardrails"] is None


def test_the_cli_explains_a_prompt_through_the_input_checks(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(RULES)
    command = [sys.executable, "-m", "gateway.cli", "route", "explain", "--config", str(config), "--model", "general"]
    done = subprocess.run([*command, "call +1 415 555 2671 now"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    guardrails = json.loads(done.stdout)["guardrails"]
    assert {"guardrail": "pii", "result": "redact", "detail": "phone"} in guardrails["input"]
    assert guardrails["sent"] == "call [PHONE] now"


async def test_the_admin_view_lists_each_routes_guardrails_and_counts_their_results() -> None:
    recorder = Recorder(answers={"local": HATEFUL})
    async with gateway(recorder, RULES, admin_key=ADMIN_KEY) as client:
        await client.post("/v1/chat/completions", json=chat("plutonium please"), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat("mail me at a@b.co"), headers=AUTH)
        view = (await client.get("/admin/guardrails", params={"since": "1h"}, headers=EDITOR)).json()
    assert view["defined"]["pii_external"] == {
        "kind": "pii", "action": "redact", "applies_to": "external", "mode": "sync", "on_error": "allow"
    }  # fmt: skip
    assert view["routes"]["general"] == {
        "input": ["banned", "pii", "pii_external", "later"],
        "output": ["moderation", "later"],
        "holdback_chars": 256,
    }
    assert "plain" not in view["routes"]
    counts = view["counts"]["general"]
    assert counts["banned"]["input"] == {"block": 1, "pass": 1}
    assert counts["pii"]["input"] == {"redact": 1}
    assert counts["moderation"]["output"] == {"fallback": 1, "pass": 1}


async def test_each_check_is_an_apply_guardrail_span(faults: FaultServer) -> None:
    text = rules(DEFINED, ROUTES).replace('"http://local/v1"', f'"{faults.endpoint("ok")}"')
    with otlp_receiver() as receiver:
        async with networked(text, otel_endpoint=receiver.url) as client:
            response = await client.post("/v1/chat/completions", json=chat("mail a@b.co"), headers=AUTH)
        spans = receiver.wait_for(7)
    assert response.status_code == 200
    server = next(s for s in spans if s.name == "POST /v1/chat/completions")
    checks = {s.name: s for s in spans if s.name.startswith("apply_guardrail ") and "later" not in s.name}
    # pii_external never ran: no attempt went to the external backend
    assert set(checks) == {"apply_guardrail banned", "apply_guardrail pii", "apply_guardrail moderation"}
    pii = checks["apply_guardrail pii"]
    assert pii.attributes["gen_ai.operation.name"] == "apply_guardrail"
    assert pii.attributes["gen_ai.guardrail.name"] == "pii"
    assert pii.attributes["turnout.guardrail.result"] == "redact"
    assert all(s.trace_id == server.trace_id for s in checks.values())
    assert all("a@b.co" not in json.dumps(s.attributes, default=str) for s in spans)


def test_an_operator_trains_a_moderation_model_from_their_own_rows_and_uses_it(tmp_path: Path) -> None:
    rows = [{"text": f"please reset my password for account {i}", "label": "ok"} for i in range(12)]
    rows += [
        {"text": f"our competitor Zorbix is better, switch to Zorbix plan {i}", "label": "competitor"}
        for i in range(12)
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "competitor-model"
    train = [sys.executable, "-m", "gateway.cli", "router", "train", "--data", str(data), "--out", str(model)]
    done = subprocess.run(train, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    async def ask() -> httpx.Response:
        guard = f'  rival: {{kind: classifier, model: "{model}", flag_labels: [competitor], threshold: 0.5}}'
        text = rules(guard, "  general: {backends: [local], guardrails: {input: [rival]}}")
        async with gateway(Recorder(), text) as client:
            return await client.post("/v1/chat/completions", json=chat("should I switch to Zorbix?"), headers=AUTH)

    response = asyncio.run(ask())
    assert response.status_code == 400
    assert "'rival'" in response.json()["error"]["message"]
