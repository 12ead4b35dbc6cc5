from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway.harness import AUTH, RULES, chat_body, gateway

ADMIN = {"authorization": "Bearer adm-secret-0123456789"}
WITH_RULE = RULES.replace(
    "router: {kind: default}", "router: {kind: default}\nrules: [{name: t2-code, when: {tenants: [t2]}, route: code}]"
)


async def test_explain_names_route_reason_and_each_rule() -> None:
    async with gateway(rules=WITH_RULE, admin_key="adm-secret-0123456789") as client:
        plain = await client.post("/admin/route/explain", json={"prompt": "hello"}, headers=ADMIN)
        as_t2 = await client.post("/admin/route/explain", json=chat_body(), headers={**ADMIN, "x-turnout-tenant": "t2"})
    assert plain.status_code == 200
    assert plain.json()["route"] == "general"
    assert plain.json()["decided_by"] == "default"
    assert plain.json()["rules"] == [{"rule": "t2-code", "matched": False, "failed": "tenant"}]
    assert as_t2.json()["route"] == "code"
    assert as_t2.json()["decided_by"] == "rule:t2-code"


async def test_explain_needs_the_admin_key_not_an_api_key() -> None:
    async with gateway(admin_key="adm-secret-0123456789") as client:
        with_api_key = await client.post("/admin/route/explain", json={"prompt": "x"}, headers=AUTH)
        without = await client.post("/admin/route/explain", json={"prompt": "x"})
    assert with_api_key.status_code == 401
    assert without.status_code == 401
    assert with_api_key.json()["error"]["type"] == "authentication_error"


async def test_admin_api_is_off_without_an_admin_key() -> None:
    async with gateway() as client:
        response = await client.post("/admin/route/explain", json={"prompt": "x"}, headers=ADMIN)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_disabled"


async def test_explain_rejects_bad_input_clearly() -> None:
    async with gateway(admin_key="adm-secret-0123456789") as client:
        response = await client.post("/admin/route/explain", content=b"{nope", headers=ADMIN)
    assert response.status_code == 400


async def test_decisions_are_counted_in_metrics() -> None:
    async with gateway() as client:
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
        text = (await client.get("/metrics")).text
    assert 'turnout_router_decisions_total{decided_by="default",route="general"} 1.0' in text
    assert 'turnout_router_decisions_total{decided_by="model",route="code"} 1.0' in text


async def test_an_empty_admin_key_leaves_the_admin_api_off_and_an_empty_token_never_passes() -> None:
    async with gateway(admin_key="") as client:  # Compose's "${TURNOUT_ADMIN_KEY:-}" when it is unset
        empty = await client.get("/admin/rules", headers={"authorization": "Bearer "})
        applied = await client.put(
            "/admin/rules", content=RULES, headers={"authorization": "Bearer ", "if-match": '"1"'}
        )
    assert empty.status_code == 403
    assert empty.json()["error"]["code"] == "admin_disabled"
    assert applied.status_code == 403


async def test_a_configured_key_never_matches_an_empty_or_short_token() -> None:
    async with gateway(admin_key="adm-secret-0123456789") as client:
        for token in ("", " ", "adm"):
            answer = await client.get("/admin/rules", headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 401


def test_a_short_admin_key_refuses_to_start_saying_why(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(RULES)
    env = {**os.environ, "TURNOUT_ADMIN_KEY": "short", "TURNOUT_STATE_DIR": str(tmp_path)}
    answer = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert answer.returncode == 2
    assert "TURNOUT_ADMIN_KEY is shorter than 16 characters" in answer.stderr


async def test_a_short_admin_key_in_the_rules_enables_nothing_and_validation_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SHORT_ADMIN_KEY", "tiny")
    monkeypatch.setenv("TEST_LONG_ADMIN_KEY", "a-long-enough-editor-key")
    short = "admin_keys:\n  - {name: short, key_env: TEST_SHORT_ADMIN_KEY, role: editor}\n"
    long = "  - {name: long, key_env: TEST_LONG_ADMIN_KEY, role: editor}\n"
    async with gateway(rules=RULES + short + long) as client:
        refused = await client.get("/admin/rules", headers={"authorization": "Bearer tiny"})
        allowed = await client.get("/admin/rules", headers={"authorization": "Bearer a-long-enough-editor-key"})
        validated = await client.post(
            "/admin/rules/validate", content=RULES + short, headers={"authorization": "Bearer a-long-enough-editor-key"}
        )
    assert refused.status_code == 401
    assert allowed.status_code == 200
    assert validated.status_code == 422
    assert "TEST_SHORT_ADMIN_KEY holds fewer than 16 characters" in validated.text
