"""The console's traffic view end to end in headless Chromium, after a scripted mix of requests
(cache hits and misses, an error, two routes): what the page shows equals the report API's."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from playwright.sync_api import Page, expect

from tests.gateway.harness import completion
from tests.gateway.live.test_console import page, shot, shots  # noqa: F401 (fixtures)
from tests.servers import gateway_process, serving

ADMIN_KEY = "console-admin-0123456789"
KEY = "sk-traffic"
AUTH = {"authorization": f"Bearer {KEY}"}


def upstream() -> FastAPI:
    app = FastAPI()

    @app.get("/{name}/v1/models")
    async def models(name: str) -> dict[str, object]:
        return {"object": "list", "data": []}

    @app.post("/{name}/v1/chat/completions")
    async def chat(name: str) -> object:
        if name == "broken":
            return JSONResponse({"error": {"message": "down"}}, status_code=500)
        return completion(f"from {name}")

    return app


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("traffic")
    with serving(upstream()) as base:
        price = "price: {input_per_mtok: 1, output_per_mtok: 2}"
        (folder / "rules.yaml").write_text(f"""
backends:
  fast: {{kind: openai, endpoint: "{base}/fast/v1", model: m, {price}}}
  broken: {{kind: openai, endpoint: "{base}/broken/v1", model: m}}
routes:
  general: {{backends: [fast]}}
  code: {{backends: [fast]}}
  flaky: {{backends: [broken]}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
""")
        with gateway_process(folder / "rules.yaml", TURNOUT_ADMIN_KEY=ADMIN_KEY) as (found, _):
            with httpx.Client(base_url=found, headers=AUTH, timeout=30) as client:
                for model, content in [("general", "same")] * 3 + [("code", "a"), ("code", "b"), ("flaky", "x")]:
                    body = {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0}
                    client.post("/v1/chat/completions", json=body)
            yield found


def test_the_traffic_view_shows_what_the_report_api_says(url: str, page: Page, shots: Path) -> None:  # noqa: F811
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    report = httpx.get(
        url + "/admin/reports/traffic", params={"since": "1h"}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()
    latest = max(p["minute"] for p in report["points"])
    expected = {p["series"]: p for p in report["points"] if p["minute"] == latest}
    assert {name: p["requests"] for name, p in expected.items()} == {"general": 3, "code": 2, "flaky": 1}
    assert expected["flaky"]["errors"] == 1
    assert expected["general"]["hit_ratio"] == round(2 / 3, 4)
    page.goto(url + "/admin")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.keyboard.press("Enter")
    page.get_by_label("Since", exact=True).first.select_option("1h")
    table = page.get_by_role("table", name="The latest minute per line")
    expect(table).to_contain_text("general")
    rows = table.locator("tr")
    shown = {}
    for n in range(1, rows.count()):
        cells = rows.nth(n).locator("td").all_inner_texts()
        shown[cells[1]] = cells
    for name, point in expected.items():
        assert shown[name][2] == str(point["requests"])
        assert shown[name][3] == str(point["errors"])
        assert shown[name][4] == f"– ({point['latency_samples']} of 5 answers)"  # too few for a percentile
    requests = page.locator("#chart-requests circle")
    labels = [requests.nth(i).get_attribute("aria-label") for i in range(requests.count())]
    for name, point in expected.items():
        assert f"{name} at {latest}: {point['requests']}" in labels
    expect(page.locator("#empty-p50")).to_contain_text("enough answers for a percentile")
    expect(page.locator("#chart-hits")).to_be_visible()
    expect(page.locator("#chart-dollars")).to_be_visible()
    assert refused == []
    page.locator("#traffic").scroll_into_view_if_needed()
    shot(page, shots, "11-traffic")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", latest)
