"""The golden gate in the console, end to end in headless Chromium: a dry run shows the gate's
result before Apply is used; Apply is refused with the failing rows; forcing with a reason applies."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import Page, expect

from tests.gateway.live.test_console import page, shot, shots  # noqa: F401 (fixtures)
from tests.golden.scripted import RIGHT, ROWS, WRONG
from tests.servers import gateway_process, serving

ADMIN_KEY = "console-admin-0123456789"


def upstream() -> FastAPI:
    app = FastAPI()

    @app.get("/{name}/v1/models")
    async def models(name: str) -> dict[str, object]:
        return {"object": "list", "data": []}

    @app.post("/{name}/v1/chat/completions")
    async def chat(name: str, body: dict[str, object]) -> dict[str, object]:
        messages = body["messages"]
        assert isinstance(messages, list)
        text = (RIGHT if name == "right" else WRONG).get(str(messages[-1]["content"]), "I do not know")
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return {"id": "u", "object": "chat.completion", "created": 1, "model": name, "choices": [choice]}

    return app


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("gate")
    (folder / "general.jsonl").write_text("\n".join(json.dumps(row) for row in ROWS) + "\n")
    with serving(upstream()) as base:
        (folder / "rules.yaml").write_text(f"""
backends:
  right: {{kind: openai, endpoint: "{base}/right/v1", model: m}}
  wrong: {{kind: openai, endpoint: "{base}/wrong/v1", model: m}}
routes:
  general:
    backends: [right]
    golden: {{set: {folder / "general.jsonl"}, min_pass_ratio: 0.75}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(b"sk-x").hexdigest()}"}}
""")
        with gateway_process(folder / "rules.yaml", TURNOUT_ADMIN_KEY=ADMIN_KEY) as (found, _):
            yield found


def test_the_console_shows_the_gate_refuses_and_forces_with_a_reason(url: str, page: Page, shots: Path) -> None:  # noqa: F811
    page.goto(url + "/admin")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.keyboard.press("Enter")
    editor = page.get_by_label("Rules YAML")
    expect(editor).to_have_value(re.compile(r"backends: \[right\]"))
    editor.fill(editor.input_value().replace("backends: [right]", "backends: [wrong]"))
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#rule-status")).to_contain_text("The golden gate would refuse it: 1 set(s) below the bar")
    result = page.get_by_role("table", name="Golden sets of this change")
    expect(result).to_contain_text("wrong")
    expect(result).to_contain_text("capital (critical)")
    expect(result).to_contain_text("0 % of 4 (75 % needed)")
    shot(page, shots, "10-golden-gate")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#rule-status")).to_contain_text("Refused by the golden gate")
    expect(page.locator("#who")).to_contain_text("rules version 1")
    page.get_by_label("Change message").fill("the candidate is known wrong on these; measuring it")
    page.get_by_label("Force past a failed golden gate").check()
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#rule-status")).to_have_text("Applied: version 2 is serving.")
    expect(page.locator("#audit-table")).to_contain_text("golden_forced")
