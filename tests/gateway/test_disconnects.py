"""A client that leaves while it sends its body is a 499, counted, and no error in the log."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.gateway.harness import RULES
from tests.servers import serving


async def leave_mid_body(url: str) -> None:
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer sk-test-key\r\ncontent-length: 5000\r\n\r\n" + b'{"model": "auto", "mess'
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    await writer.wait_closed()


def requests_with_status(metrics: str, status: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("turnout_requests_total{") and f'status="{status}"' in line
    )


async def test_client_leaving_mid_body_is_recorded_as_499_without_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(Settings(), parse_rules(RULES))
    with serving(app) as url:
        for _ in range(5):
            await leave_mid_body(url)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(url + "/metrics")).text
            assert (await client.get(url + "/healthz")).status_code == 200
    assert requests_with_status(metrics, "499") == 5
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    gone = [r for r in caplog.records if "499" in r.getMessage() or "disconnect" in r.getMessage().lower()]
    assert len(gone) <= 5
