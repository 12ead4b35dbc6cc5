"""Ops fix a misroute from the console, in headless Chromium: explain a prompt, add it as an example
of the right route, add a recent request from the dry run too, validate, dry-run, apply, and see
the next prompt of the family decided by the example."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.gateway.harness import chat_body
from tests.gateway.live.test_console import page, shot, shots  # noqa: F401 (fixtures)
from tests.routers.test_examples_served import HELD_OUT, OTHER_TENANT, WITHOUT
from tests.servers import gateway_process

ADMIN = "console-admin-0123456789"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("examples-console") / "rules.yaml"
    config.write_text(WITHOUT)
    with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN) as (found, _):
        for prompt in HELD_OUT[2:]:  # recent requests for the dry run (their backend is unreachable)
            body = chat_body(messages=[{"role": "user", "content": prompt}])
            httpx.post(found + "/v1/chat/completions", json=body, headers=OTHER_TENANT, timeout=30)
        yield found


def test_a_prompt_from_explain_and_one_from_the_dry_run_become_examples_through_apply(
    url: str,
    page: Page,  # noqa: F811
    shots: Path,  # noqa: F811
) -> None:
    page.goto(url + "/admin")
    page.get_by_label("Admin key").fill(ADMIN)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_contain_text("rules version 1")
    expect(page.locator("#routes-table")).to_contain_text("roleplay")

    page.get_by_label("Prompt").fill(HELD_OUT[0])
    page.get_by_label("Tenant").fill("t2")
    page.get_by_role("button", name="Explain").click()
    result = page.locator("#explain-result")
    expect(result).to_contain_text("decided by classifier")
    result.get_by_label("route").select_option("roleplay")
    result.get_by_role("button", name="Add as example").click()
    expect(page.locator("#rule-status")).to_have_text(
        "Example of roleplay added to router.examples: validate, dry-run, then apply."
    )
    editor = page.get_by_label("Rules YAML")
    expect(editor).to_have_value(re.compile(r'- route: "roleplay"\n      prompt: "Continue this conversation'))
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()

    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#rule-status")).to_contain_text("recent request(s) would route differently")
    rows = page.locator("#dry-run-table tr")
    expect(rows.nth(1)).to_contain_text("roleplay")
    shot(page, shots, "13-examples-dry-run")
    before = editor.input_value().count("- route:")
    rows.nth(1).get_by_role("button", name="Add as example").click()  # the row's route is preselected
    expect(page.locator("#rule-status")).to_contain_text("Example of roleplay added")
    assert editor.input_value().count("- route:") == before + 1
    assert "I own a small bakery" in editor.input_value() or "chemistry teacher" in editor.input_value()

    page.get_by_role("button", name="Validate").click()
    expect(page.locator("#rule-status")).to_have_text("Valid.")
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#rule-status")).to_contain_text("would route differently")
    page.get_by_label("Change message").fill("persona chats go to roleplay")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#rule-status")).to_have_text("Applied: version 2 is serving.")

    page.get_by_label("Prompt").fill(HELD_OUT[1])
    page.get_by_role("button", name="Explain").click()
    expect(result).to_contain_text("roleplay")
    expect(result).to_contain_text("decided by example")
    expect(result.get_by_role("list", name="Nearest examples")).to_contain_text(re.compile(r"roleplay at 0\.[89]\d\d"))
    shot(page, shots, "14-explained-by-example")
