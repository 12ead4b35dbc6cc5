"""The console's Rollouts view end to end in headless Chromium: a gateway process with a route
split between two variants and shadowed, real traffic through it; ops see both variants' figures
and the shadow's, move a weight, dry-run, apply, and the new weight serves."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from playwright.sync_api import Page, expect

from tests.gateway.harness import AUTH, KEY, chat_body
from tests.gateway.live.test_console import page, shot, shots  # noqa: F401 (fixtures)
from tests.servers import fixed_answer_upstream, gateway_process, serving

ADMIN_KEY = "console-admin-0123456789"


def upstream() -> FastAPI:
    return fixed_answer_upstream("The quarterly numbers went up by four percent, led by the north region.")


def rules(base: str) -> str:
    price = "price: {input_per_mtok: 1, output_per_mtok: 2}"
    backend = f'{{kind: openai, endpoint: "{base}/v1", model: MODEL, {price}}}'
    return f"""
backends:
  distil-v1: {backend.replace("MODEL", "distil-v1")}
  distil-v2: {backend.replace("MODEL", "distil-v2")}
  distil-v3: {backend.replace("MODEL", "distil-v3")}
routes:
  general: {{backends: [distil-v1]}}
  summarization:
    # the candidate takes half while it is measured
    variants:
      current: {{backends: [distil-v1], weight: 50}}
      candidate: {{backends: [distil-v2], weight: 50}}
    shadow: {{backend: distil-v3, sample: 1.0}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(upstream()) as base:
        config = tmp_path_factory.mktemp("rollouts") / "rules.yaml"
        config.write_text(rules(base))
        with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN_KEY) as (found, _):
            yield found


def variants_served(url: str, count: int) -> Counter[str]:
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        return Counter(
            client.post("/v1/chat/completions", json=chat_body("summarization")).headers["x-turnout-variant"]
            for _ in range(count)
        )


def test_ops_see_two_variants_move_a_weight_dry_run_and_apply(url: str, page: Page, shots: Path) -> None:  # noqa: F811
    assert set(variants_served(url, 30)) == {"current", "candidate"}  # 50/50: P(one side empty) ~ 2e-9
    time.sleep(0.5)  # the shadow calls finish in the background
    page.goto(url + "/admin")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#routes-table")).to_contain_text(
        "current (weight 50): distil-v1; candidate (weight 50): distil-v2; shadow distil-v3 (100 %)"
    )
    variants = page.get_by_role("table", name="Variants of summarization")
    expect(variants).to_contain_text("current")
    expect(variants).to_contain_text("candidate")
    requests = [int(variants.locator("tr").nth(row).locator("td").nth(2).inner_text()) for row in (1, 2)]
    assert sum(requests) == 30
    shadows = page.get_by_role("table", name="Shadows of summarization")
    expect(shadows).to_contain_text("distil-v3")
    expect(shadows).to_contain_text("1")  # agreement: the same answer
    page.locator("#rollouts").scroll_into_view_if_needed()
    shot(page, shots, "8-rollouts")

    page.get_by_label("Weight of candidate on summarization").fill("0")
    page.get_by_role("button", name="Propose these weights for summarization").click()
    editor = page.get_by_label("Rules YAML")
    expect(editor).to_have_value(re.compile(r"candidate: \{backends: \[distil-v2\], weight: 0\}"))
    assert "# the candidate takes half while it is measured" in editor.input_value()  # only the number changed
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#rule-status")).to_contain_text("recent request(s) would route differently")
    expect(page.locator("#dry-run-table")).to_contain_text("summarization / distil-v2")
    page.get_by_label("Change message").fill("candidate out")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#rule-status")).to_have_text("Applied: version 2 is serving.")
    expect(page.get_by_label("Weight of candidate on summarization")).to_have_value("0")
    shot(page, shots, "9-weight-applied")
    assert variants_served(url, 20) == {"current": 20}


def test_the_cli_reads_the_variant_report_as_a_table_json_and_csv(url: str) -> None:
    variants_served(url, 10)

    def report(*extra: str) -> str:
        command = [sys.executable, "-m", "gateway.cli", "report", "variants", "--url", url, "--admin-key", ADMIN_KEY]
        result = subprocess.run([*command, *extra], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    table = report()
    assert table.splitlines()[0].split()[:4] == ["route", "arm", "requests", "error_rate"]
    assert any(line.split()[:2] == ["summarization", "current"] for line in table.splitlines())
    as_json = json.loads(report("--route", "summarization", "--format", "json"))
    assert set(as_json["routes"]) == {"summarization"}
    names = {v["variant"] for v in as_json["routes"]["summarization"]["variants"]}
    assert {"current", "candidate"} <= names
    rows = list(csv.DictReader(io.StringIO(report("--format", "csv", "--since", "1h"))))
    assert {row["arm"] for row in rows if row["route"] == "summarization"} >= {
        "current",
        "shadow distil-v3 of distil-v1",
    }
