"""The live rules API: every operation, every auth failure, optimistic concurrency, the audit."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.gateway.harness import AUTH, KEY, RULES, chat_body, gateway

EDITOR = {"authorization": "Bearer adm-key-0123456789"}
VIEWER = {"authorization": "Bearer view-secret-0123456789"}
WITH_VIEWER = RULES + "admin_keys:\n  - {name: olga, key_env: TEST_VIEWER_KEY, role: viewer}\n"
TIGHTER = WITH_VIEWER.replace("code: {backends: [primary]}", "code: {backends: [primary], latency_budget_ms: 5000}")


@pytest.fixture(autouse=True)
def viewer_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VIEWER_KEY", "view-secret-0123456789")


async def put(client: httpx.AsyncClient, text: str, version: int | None, message: str = "") -> httpx.Response:
    headers = {**EDITOR, "x-turnout-change-message": message}
    if version is not None:
        headers["if-match"] = f'"{version}"'
    return await client.put("/admin/rules", content=text, headers=headers)


async def test_get_returns_the_served_version_with_its_etag() -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        found = await client.get("/admin/rules", headers=VIEWER)
    assert found.status_code == 200
    assert found.headers["etag"] == '"1"'
    body = found.json()
    assert set(body) == {"version", "author", "created_at", "message", "source", "yaml", "golden"}
    assert (body["version"], body["source"], body["author"]) == (1, "bootstrap", "bootstrap")
    assert "olga" in body["yaml"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"authorization": "Bearer wrong"}, 401), (AUTH, 401), (VIEWER, 403)],
    ids=["no key", "wrong key", "client key", "viewer writing"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/admin/rules", TIGHTER),
        ("POST", "/admin/rules/validate", TIGHTER),
        ("POST", "/admin/rules/dry-run", TIGHTER),
        ("POST", "/admin/rules/rollback", '{"version": 1}'),
    ],
)
async def test_writes_need_an_editor_key(
    headers: dict[str, str], status: int, method: str, path: str, body: str
) -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        answer = await client.request(method, path, content=body, headers={**headers, "if-match": '"1"'})
        history = (await client.get("/admin/rules/history", headers=VIEWER)).json()
    assert answer.status_code == status
    assert answer.json()["error"]["code"] in ("invalid_admin_key", "viewer_key")
    assert len(history) == 1


@pytest.mark.parametrize(
    "path", ["/admin/rules", "/admin/rules/history", "/admin/rules/versions/1", "/admin/rules/audit"]
)
async def test_reads_need_an_admin_key_and_a_viewer_may_read(path: str) -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        statuses = [(await client.get(path, headers=headers)).status_code for headers in ({}, AUTH, VIEWER, EDITOR)]
    assert statuses == [401, 401, 200, 200]


async def test_apply_needs_if_match_and_is_served_at_once() -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        missing = await put(client, TIGHTER, None)
        applied = await put(client, TIGHTER, 1, "tighter code budget")
        stale = await put(client, TIGHTER, 1)
        served = await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
        ready = (await client.get("/readyz")).json()
        newest = (await client.get("/admin/rules", headers=VIEWER)).json()
    assert missing.status_code == 428
    assert applied.status_code == 200, applied.text
    assert applied.json() == {"version": 2}
    assert stale.status_code == 412
    assert stale.json()["error"]["latest_version"] == 2
    assert served.headers["x-turnout-rules-version"] == "2"
    assert ready["rules_version"] == 2
    assert (newest["author"], newest["message"], newest["source"]) == ("env", "tighter code budget", "api")
    assert "latency_budget_ms: 5000" in newest["yaml"]


async def test_an_invalid_document_is_422_with_each_error_at_its_line_and_nothing_stored() -> None:
    broken = WITH_VIEWER.replace("code: {backends: [primary]}", "code: {backends: [primary], latency_budget_ms: -5}")
    broken += "  - {name: kim, key_env: TEST_UNSET_KEY, role: editor}\n"
    line = broken.splitlines().index("  code: {backends: [primary], latency_budget_ms: -5}") + 1
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        validated = await client.post("/admin/rules/validate", content=broken, headers=EDITOR)
        applied = await put(client, broken, 1)
        good = await client.post("/admin/rules/validate", content=TIGHTER, headers=EDITOR)
        history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
        audit = (await client.get("/admin/rules/audit", headers=EDITOR)).json()
    assert validated.status_code == 422
    errors = validated.json()["errors"]
    assert validated.json()["valid"] is False
    assert {"path": "routes.code.latency_budget_ms", "line": line, "message": errors[0]["message"]} in errors
    assert applied.status_code == 422
    assert applied.json()["errors"] == errors
    assert good.json() == {"valid": True}
    assert [v["version"] for v in history] == [1]
    assert audit[0]["action"] == "rejected"
    assert audit[0]["author"] == "env"


async def test_an_unset_environment_variable_is_an_error_at_its_path() -> None:
    text = WITH_VIEWER + "  - {name: kim, key_env: TEST_UNSET_KEY, role: editor}\n"
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        validated = await client.post("/admin/rules/validate", content=text, headers=EDITOR)
    assert validated.status_code == 422
    assert validated.json()["errors"][0]["path"] == "admin_keys[1].key_env"
    assert "TEST_UNSET_KEY" in validated.json()["errors"][0]["message"]


async def test_history_versions_diff_and_rollback() -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        await put(client, TIGHTER, 1, "tighter")
        history = (await client.get("/admin/rules/history?limit=5", headers=VIEWER)).json()
        first = await client.get("/admin/rules/versions/1", headers=VIEWER)
        missing = await client.get("/admin/rules/versions/9", headers=VIEWER)
        diff = (await client.get("/admin/rules/diff?from=1&to=2", headers=VIEWER)).json()
        rolled = await client.post("/admin/rules/rollback", json={"version": 1, "message": "undo"}, headers=EDITOR)
        third = (await client.get("/admin/rules", headers=VIEWER)).json()
        served = await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
        audit = (await client.get("/admin/rules/audit", headers=VIEWER)).json()
    assert [(v["version"], v["source"]) for v in history] == [(2, "api"), (1, "bootstrap")]
    assert set(history[0]) == {"version", "author", "created_at", "message", "source", "golden"}
    assert first.headers["etag"] == '"1"'
    assert missing.status_code == 404
    assert {"path": "routes.code.latency_budget_ms", "before": None, "after": 5000} in diff["changes"]
    assert "+  code: {backends: [primary], latency_budget_ms: 5000}" in diff["unified"]
    assert rolled.json() == {"version": 3}
    assert (third["source"], third["message"], third["yaml"]) == ("rollback", "undo", first.json()["yaml"])
    assert served.headers["x-turnout-rules-version"] == "3"
    assert [(a["action"], a["version"]) for a in audit] == [("applied", 3), ("applied", 2)]
    assert "-  code: {backends: [primary], latency_budget_ms: 5000}" in audit[0]["detail"]


async def test_concurrent_applies_of_one_version_let_exactly_one_through() -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        texts = [TIGHTER.replace("5000", str(5000 + i)) for i in range(8)]
        answers = await asyncio.gather(*(put(client, text, 1) for text in texts))
        history = (await client.get("/admin/rules/history", headers=VIEWER)).json()
    assert sorted(a.status_code for a in answers) == [200] + [412] * 7
    assert [v["version"] for v in history] == [2, 1]


async def test_the_admin_api_is_off_without_any_admin_key() -> None:
    async with gateway() as client:
        answer = await client.get("/admin/rules", headers=EDITOR)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "admin_disabled"


async def test_dry_run_reports_exactly_the_recent_requests_whose_route_would_change() -> None:
    to_code = WITH_VIEWER.replace("default_route: general", "default_route: code")
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        sent = []
        for model in ("auto", "code", "auto", "general", "pinned-fallback", "auto"):
            body = chat_body(model, messages=[{"role": "user", "content": f"question for {model}"}])
            answer = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            sent.append((model, answer.headers["x-request-id"]))
        result = (await client.post("/admin/rules/dry-run", content=to_code, headers=EDITOR)).json()
        explicit = await client.post(
            "/admin/rules/dry-run",
            json={"yaml": to_code, "prompts": [{"prompt": "hi", "tenant": "t1"}]},
            headers=EDITOR,
        )
        history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
    assert result["sampled"] == 6
    assert result["changed"] == 3
    assert [c["request_id"] for c in result["changes"]] == [rid for model, rid in sent if model == "auto"]
    change = result["changes"][0]
    assert change["from"] == {"route": "general", "backend": "primary", "decided_by": "default"}
    assert change["to"] == {"route": "code", "backend": "primary", "decided_by": "default"}
    assert change["tenant"] == "t1"
    assert change["preview"] == "question for auto"
    assert explicit.json()["changed"] == 1
    assert len(history) == 1  # a dry run stores nothing


async def test_dry_run_sees_tenant_permissions_and_never_calls_a_backend() -> None:
    calls: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    only_general = WITH_VIEWER.replace("tenant: t1, sha256:", "tenant: t1, routes: [general], sha256:")
    to_code = only_general.replace("default_route: general", "default_route: code")
    async with gateway(upstream, rules=only_general, admin_key="adm-key-0123456789") as client:
        await client.post("/v1/chat/completions", json=chat_body(), headers={"authorization": f"Bearer {KEY}"})
        before = len(calls)
        result = (await client.post("/admin/rules/dry-run", content=to_code, headers=EDITOR)).json()
    assert result["changes"][0]["to"] == {"route": "code", "backend": None, "error": "permission_denied"}
    assert len(calls) == before


async def test_a_document_that_validates_but_fails_to_build_is_422_and_nothing_is_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway import state as state_module

    async def failing_build(*args: object) -> None:
        raise RuntimeError("the backend client could not be opened")

    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        monkeypatch.setattr(state_module, "build_snapshot", failing_build)
        answer = await put(client, TIGHTER, 1)
        history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
        served = await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
    assert answer.status_code == 422
    assert "could not be served: the backend client could not be opened" in answer.json()["errors"][0]["message"]
    assert [v["version"] for v in history] == [1]
    assert served.headers["x-turnout-rules-version"] == "1"


async def test_applying_an_unchanged_document_stores_nothing_and_answers_the_current_version() -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        first = await put(client, TIGHTER, 1)
        again = [await put(client, TIGHTER, 2) for _ in range(3)]
        stale = await put(client, TIGHTER, 1)  # a stale If-Match is still refused, whatever the document
        history = (await client.get("/admin/rules/history", headers=VIEWER)).json()
    assert first.json()["version"] == 2
    assert [(a.status_code, a.json()["version"]) for a in again] == [(200, 2)] * 3
    assert stale.status_code == 412
    assert [v["version"] for v in history] == [2, 1]


async def test_a_viewers_refused_write_is_audited() -> None:
    async with gateway(rules=WITH_VIEWER, admin_key="adm-key-0123456789") as client:
        refused = await client.put("/admin/rules", content=TIGHTER, headers={**VIEWER, "if-match": '"1"'})
        audit = (await client.get("/admin/rules/audit", headers=VIEWER)).json()
    assert refused.status_code == 403
    assert audit[0]["action"] == "rejected"
    assert audit[0]["author"] == "olga"
    assert "viewer" in audit[0]["detail"]
