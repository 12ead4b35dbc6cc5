"""Provider credentials never reach a client or a log line, even when an upstream echoes them."""

from __future__ import annotations

import logging

import openai
import pytest

from support.fault_rules import MESSAGES
from support.faults import FaultServer
from tests.gateway.resilience_harness import sdk_gateway

SECRET = "sk-provider-secret-0123456789"


def echoing_rules(endpoint: str) -> str:
    return f"""
backends:
  leaky: {{kind: openai, endpoint: '{endpoint}', model: m, api_key_env: LEAKY_KEY, health_check: {{enabled: false}}}}
routes:
  r: {{backends: [leaky]}}
default_route: r
router: {{kind: default}}
"""


@pytest.mark.parametrize("status", [400, 500, 503])
async def test_echoed_provider_key_is_redacted_from_error_bodies_and_logs(
    faults: FaultServer, status: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LEAKY_KEY", SECRET)
    _, endpoint = faults.backend(f"echoauth-{status}")
    caplog.set_level(logging.DEBUG)
    async with sdk_gateway(echoing_rules(endpoint)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    assert faults.last_headers["authorization"] == f"Bearer {SECRET}"  # the upstream did see it
    relayed = caught.value.response.text
    assert "bad request from" in relayed
    assert SECRET not in relayed
    assert "[redacted]" in relayed
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_echoed_provider_key_is_redacted_from_stream_error_events(
    faults: FaultServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LEAKY_KEY", SECRET)
    _, endpoint = faults.backend("echoauth-200")
    caplog.set_level(logging.DEBUG)
    async with sdk_gateway(echoing_rules(endpoint)) as gw:
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, stream=True)
        text = (await raw.http_response.aread()).decode()
    assert "bad request from" in text
    assert SECRET not in text
    assert all(SECRET not in record.getMessage() for record in caplog.records)
