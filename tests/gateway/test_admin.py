from __future__ import annotations

from tests.gateway.harness import AUTH, RULES, chat_body, gateway

ADMIN = {"authorization": "Bearer adm-secret"}
WITH_RULE = RULES.replace(
    "router: {kind: default}", "router: {kind: default}\nrules: [{name: t2-code, when: {tenants: [t2]}, route: code}]"
)


async def test_explain_names_route_reason_and_each_rule() -> None:
    async with gateway(rules=WITH_RULE, admin_key="adm-secret") as client:
        plain = await client.post("/admin/route/explain", json={"prompt": "hello"}, headers=ADMIN)
        as_t2 = await client.post("/admin/route/explain", json=chat_body(), headers={**ADMIN, "x-turnout-tenant": "t2"})
    assert plain.status_code == 200
    assert plain.json()["route"] == "general"
    assert plain.json()["decided_by"] == "default"
    assert plain.json()["rules"] == [{"rule": "t2-code", "matched": False, "failed": "tenant"}]
    assert as_t2.json()["route"] == "code"
    assert as_t2.json()["decided_by"] == "rule:t2-code"


async def test_explain_needs_the_admin_key_not_an_api_key() -> None:
    async with gateway(admin_key="adm-secret") as client:
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
    async with gateway(admin_key="adm-secret") as client:
        response = await client.post("/admin/route/explain", content=b"{nope", headers=ADMIN)
    assert response.status_code == 400


async def test_decisions_are_counted_in_metrics() -> None:
    async with gateway() as client:
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
        text = (await client.get("/metrics")).text
    assert 'turnout_router_decisions_total{decided_by="default",route="general"} 1.0' in text
    assert 'turnout_router_decisions_total{decided_by="model",route="code"} 1.0' in text
