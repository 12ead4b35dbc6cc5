"""The ops console end to end in headless Chromium (Debian's; Playwright drives it): log in, edit a
route's budget, see a validation error at its line, fix it, dry-run, apply, see the new version,
diff, roll back. Each state is saved as a screenshot in a temporary folder; the README's pictures
under ``docs/console/`` are refreshed only when asked, by a deliberate command:

    TURNOUT_CONSOLE_SHOTS=docs/console .venv/bin/python -m pytest tests/gateway/live/test_console.py
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.gateway.harness import AUTH, RULES, chat_body
from tests.servers import gateway_process

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PRICED = RULES.replace(
    "model: primary-model}", "model: primary-model, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}"
)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("console") / "rules.yaml"
    config.write_text(PRICED)
    with gateway_process(config, TURNOUT_ADMIN_KEY="console-admin-0123456789") as (found, _):
        for model in ("auto", "code", "auto"):  # recent requests for the dry run (their backend is unreachable)
            httpx.post(found + "/v1/chat/completions", json=chat_body(model), headers=AUTH, timeout=30)
        yield found


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 1280, "height": 900})
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: a temporary folder, so a test run never changes the committed pictures."""
    asked = os.environ.get("TURNOUT_CONSOLE_SHOTS")
    return Path(asked) if asked else tmp_path_factory.mktemp("console-shots")


def shot(page: Page, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_ops_edit_validate_dry_run_apply_diff_and_roll_back_in_the_console(url: str, page: Page, shots: Path) -> None:
    missing: list[str] = []
    refused: list[str] = []
    page.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto(url + "/admin")
    expect(page.get_by_label("Admin key")).to_be_focused()
    page.get_by_label("Admin key").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not an admin key")
    page.get_by_label("Admin key").fill("console-admin-0123456789")
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_contain_text("rules version 1")
    expect(page.locator("#backends-table")).to_contain_text("primary")
    expect(page.locator("#backends-table")).to_contain_text("of 20 answers")  # why there is no p50 yet
    assert missing == []  # the favicon included
    assert refused == []  # the console runs under its own Content-Security-Policy
    shot(page, shots, "1-signed-in")

    editor = page.get_by_label("Rules YAML")
    text = editor.input_value()
    broken = text.replace("code: {backends: [primary]}", "code: {backends: [primary], latency_budget_ms: -5}")
    line = broken.splitlines().index("  code: {backends: [primary], latency_budget_ms: -5}") + 1
    editor.fill(broken)
    page.get_by_role("button", name="Validate").click()
    errors = page.get_by_role("list", name="Validation errors")
    expect(errors).to_contain_text(f"line {line}: routes.code.latency_budget_ms")
    expect(page.locator("#gutter .flag")).to_have_text(str(line))
    shot(page, shots, "2-validation-error-at-its-line")
    errors.get_by_role("button", name=f"line {line}").click()
    expect(editor).to_be_focused()

    editor.fill(broken.replace("latency_budget_ms: -5", "latency_budget_ms: 5000"))
    page.get_by_role("button", name="Validate").click()
    expect(page.locator("#rule-status")).to_have_text("Valid.")
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#rule-status")).to_contain_text("of 3 recent request(s) would route differently")
    shot(page, shots, "3-dry-run")
    page.get_by_label("Change message").fill("code budget 5 s")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#rule-status")).to_have_text("Applied: version 2 is serving.")
    expect(page.locator("#who")).to_contain_text("rules version 2")
    expect(page.locator("#history-table")).to_contain_text("code budget 5 s")
    shot(page, shots, "4-applied")

    page.get_by_label("Diff from").select_option("1")
    page.get_by_label("to", exact=True).select_option("2")
    page.get_by_role("button", name="Show diff").click()
    expect(page.locator("#diff .add")).to_contain_text(["+  code: {backends: [primary], latency_budget_ms: 5000}"])
    shot(page, shots, "5-diff")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to 1").click()
    expect(page.locator("#history-status")).to_contain_text("version 3 serves version 1's rules")
    expect(page.locator("#who")).to_contain_text("rules version 3")
    expect(editor).not_to_have_value(re.compile("latency_budget_ms: 5000"))  # waits for the editor to reload
    shot(page, shots, "6-rolled-back")
    served = httpx.get(url + "/readyz").json()["rules_version"]
    assert served == 3


def test_costs_say_what_is_missing_rather_than_drawing_flat_lines(url: str, page: Page, shots: Path) -> None:
    page.goto(url + "/admin")
    page.get_by_label("Admin key").fill("console-admin-0123456789")
    page.keyboard.press("Enter")
    notes = page.locator("#costs-notes")
    expect(notes).to_contain_text("No cacheable requests yet")
    expect(notes).to_contain_text("no cache hit has saved anything yet")  # priced, so not "no prices"
    expect(page.locator("#saved")).to_be_hidden()
    expect(page.locator("#saved-empty")).to_be_visible()  # the empty chart says why it is empty
    page.get_by_label("Prompt").fill("write a python function")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#explain-result")).to_contain_text("decided by")
    page.locator("#costs").scroll_into_view_if_needed()
    shot(page, shots, "7-explain-and-costs")


def test_the_console_cannot_be_framed_and_admin_answers_are_not_cached_or_sniffed(url: str) -> None:
    page = httpx.get(url + "/admin")
    api = httpx.get(url + "/admin/rules", headers={"authorization": "Bearer console-admin-0123456789"})
    refused = httpx.get(url + "/admin/rules")
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'sha256-" in policy  # its own script only, by hash: no 'unsafe-inline' script
    assert page.headers["x-frame-options"] == "DENY"
    for answer in (page, api, refused):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
