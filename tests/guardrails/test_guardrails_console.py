"""The console's Guardrails view and explain in headless Chromium: a gateway process with
guardrails in front of a real upstream; ops see each route's checks with their counts, and explain
shows what a prompt would be refused for or what the backends would be sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Page, expect

from tests.gateway.harness import AUTH
from tests.gateway.live.test_console import page, shot, shots  # noqa: F401 (fixtures)
from tests.guardrails.rules import rules
from tests.servers import fixed_answer_upstream, gateway_process, serving

ADMIN_KEY = "console-admin-0123456789"
DEFINED = """
  pii: {kind: pii, action: redact}
  banned: {kind: pattern, words: [plutonium], action: block}
  boilerplate: {kind: pattern, patterns: ["(?i)as an ai language model"], action: flag}
"""
ROUTES = """
  general: {backends: [local], guardrails: {input: [banned, pii], output: [boilerplate]}}
"""


def upstream() -> FastAPI:
    return fixed_answer_upstream("As an AI language model, I would say yes.")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(upstream()) as base:
        config = tmp_path_factory.mktemp("guardrails") / "rules.yaml"
        config.write_text(rules(DEFINED, ROUTES).replace('"http://local/v1"', f'"{base}/v1"'))
        with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN_KEY) as (found, _):
            yield found


def test_ops_see_each_routes_guardrails_with_their_counts_and_explain_a_prompt(
    url: str,
    page: Page,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        for text in ("mail me at ann@example.com", "plutonium for sale?", "hello there"):
            client.post(
                "/v1/chat/completions", json={"model": "general", "messages": [{"role": "user", "content": text}]}
            )
    page.goto(url + "/admin")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.keyboard.press("Enter")
    guardrails = page.get_by_role("table", name="Guardrails of general")
    expect(guardrails).to_contain_text("banned")
    rows = {
        guardrails.locator("tr").nth(i).locator("td").nth(0).inner_text(): guardrails.locator("tr").nth(i).locator("td")
        for i in (1, 2, 3)
    }
    assert set(rows) == {"banned", "pii", "boilerplate"}
    headers = [h.inner_text() for h in guardrails.locator("th").all()]
    column = {name: headers.index(name) for name in ("pass", "block", "redact", "flag")}
    expect(rows["banned"].nth(column["block"])).to_have_text("1")
    expect(rows["banned"].nth(column["pass"])).to_have_text("2")
    expect(rows["pii"].nth(column["redact"])).to_have_text("1")
    expect(rows["boilerplate"].nth(column["flag"])).to_have_text("2")
    page.locator("#guardrails").scroll_into_view_if_needed()
    shot(page, shots, "12-guardrails")

    page.get_by_label("Prompt").fill("call +1 415 555 2671 or write bob@example.com")
    page.get_by_role("button", name="Explain").click()
    result = page.locator("#explain-result")
    expect(result).to_contain_text("pii: redact (email,phone)")
    expect(result).to_contain_text("Backends get: call [PHONE] or write [EMAIL]")
    page.get_by_label("Prompt").fill("plutonium?")
    page.get_by_role("button", name="Explain").click()
    expect(result).to_contain_text("refused by banned")
