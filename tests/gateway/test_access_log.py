"""One access line per API request, request ids end to end, and outcomes as they really were."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from gateway.observe.access_log import JsonFormatter
from tests.gateway.harness import AUTH, chat_body, completion, delta, gateway, sse

SECRET_PROMPT = "my-private-prompt-text"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "turnout.access"]


async def test_each_request_logs_one_access_line_without_prompt_or_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = chat_body(messages=[{"role": "user", "content": SECRET_PROMPT}])
    async with gateway() as client:
        await client.post("/v1/chat/completions", json=body, headers=AUTH)
        await client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sk-wrong"})
    lines = access_lines(caplog)
    assert len(lines) == 2
    fields = [line.fields for line in lines]  # type: ignore[attr-defined]
    assert fields[0]["status"] == 200
    assert fields[0]["tenant"] == "t1"
    assert fields[0]["route"] == "general"
    assert fields[0]["backend"] == "primary"
    assert fields[0]["decided_by"]
    assert fields[0]["prompt_tokens"] == 5
    assert fields[1]["status"] == 401
    text = " ".join(line.getMessage() for line in lines)
    assert SECRET_PROMPT not in text
    assert "sk-" not in text


async def test_request_id_is_kept_returned_and_sent_upstream(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    seen: list[str | None] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(200, json=completion("hi"))

    async with gateway(upstream) as client:
        given = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={**AUTH, "x-request-id": "req-42.a"}
        )
        made = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        replaced = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={**AUTH, "x-request-id": "bad id\twith spaces"}
        )
        probe = await client.get("/healthz")
    assert given.headers["x-request-id"] == "req-42.a"
    assert len(made.headers["x-request-id"]) == 32
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert probe.headers["x-request-id"]
    assert seen == ["req-42.a", made.headers["x-request-id"], replaced.headers["x-request-id"]]
    assert access_lines(caplog)[0].fields["request_id"] == "req-42.a"  # type: ignore[attr-defined]


async def test_stream_cut_midway_is_recorded_as_its_error_not_200(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    def cut(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=sse(delta("part"), done=False), headers={"content-type": "text/event-stream"}
        )

    async with gateway(cut) as client:
        response = await client.post("/v1/chat/completions", json=chat_body("code", stream=True), headers=AUTH)
        assert response.status_code == 200  # the headers went out before the cut
        metrics = (await client.get("/metrics")).text
    assert 'status="502"' in metrics
    assert access_lines(caplog)[-1].fields["status"] == 502  # type: ignore[attr-defined]


async def test_a_backend_adapter_bug_is_answered_and_counted_as_502() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("bug")

    async with gateway(broken) as client:
        # The breaker's seam turns the bug into a 502; a bug above it is the catch-all's 500.
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 502
    assert 'status="502"' in metrics


def test_json_format_writes_the_fields_as_keys() -> None:
    record = logging.LogRecord("turnout.access", logging.INFO, __file__, 1, "status=200", None, None)
    record.fields = {"status": 200, "route": "code"}
    line = json.loads(JsonFormatter().format(record))
    assert line["status"] == 200
    assert line["route"] == "code"
    assert line["level"] == "info"


def _streamed(request: httpx.Request) -> httpx.Response:
    usage = {**delta("", "stop"), "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    return httpx.Response(200, content=sse(delta("hi"), usage), headers={"content-type": "text/event-stream"})


@pytest.mark.parametrize(
    ("body", "headers", "status", "completion_tokens"),
    [
        (chat_body(), AUTH, 200, 2),
        (chat_body(stream=True), AUTH, 200, 2),
        ({"model": "auto", "messages": "not a list"}, AUTH, 422, 0),
        (chat_body(), {"authorization": "Bearer sk-wrong"}, 401, 0),
        (chat_body("no-such-model"), AUTH, 404, 0),
    ],
    ids=["json", "stream", "bad body", "bad key", "unknown model"],
)
async def test_every_request_is_observed_exactly_once_by_the_time_its_response_ends(
    caplog: pytest.LogCaptureFixture,
    body: dict[str, object],
    headers: dict[str, str],
    status: int,
    completion_tokens: int,
) -> None:
    caplog.set_level(logging.INFO)
    async with gateway(
        _streamed if body.get("stream") else lambda r: httpx.Response(200, json=completion("hi"))
    ) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
        # Nothing awaited after the response: a stream's record (its tokens) is already written.
        lines = [line.fields for line in access_lines(caplog)]  # type: ignore[attr-defined]
    assert response.status_code == status
    assert response.headers["x-turnout-rules-version"] == "1"
    assert len(lines) == 1
    assert lines[0]["status"] == status
    assert lines[0]["request_id"] == response.headers["x-request-id"]
    assert lines[0]["completion_tokens"] == completion_tokens


async def test_an_unexpected_failure_is_observed_once_as_500(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    async with gateway() as client:
        state = client._transport.app.state.gateway  # type: ignore[attr-defined]

        async def broken(*args: object) -> None:
            raise RuntimeError("a bug in routing")

        monkeypatch.setattr(state.snapshot.selector, "select", broken)
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "internal error in the gateway; it has been logged"
    lines = [line.fields for line in access_lines(caplog)]  # type: ignore[attr-defined]
    assert [line["status"] for line in lines] == [500]
