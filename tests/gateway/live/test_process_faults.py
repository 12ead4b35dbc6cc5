"""``turnout serve`` processes meeting a damaged state directory and a burst of SIGHUPs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.gateway.harness import RULES
from tests.gateway.live.test_following import TIGHTER
from tests.servers import gateway_process

ADMIN_KEY = "process-admin-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}


def history(url: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = httpx.get(url + "/admin/rules/history", headers=EDITOR, timeout=10).json()
    return found


def test_ten_sighups_after_one_edit_store_one_version(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(RULES)
    state = tmp_path / "state"
    with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN_KEY, TURNOUT_STATE_DIR=str(state)) as (url, pid):
        config.write_text(TIGHTER)
        for _ in range(10):
            os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and httpx.get(url + "/readyz").json()["rules_version"] != 2:
            time.sleep(0.1)
        time.sleep(1.0)  # every SIGHUP handled, and a poll of the file too
        found = history(url)
    assert [v["version"] for v in found] == [2, 1]


def test_a_damaged_state_directory_does_not_stop_the_gateway_from_starting(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(RULES)
    state = tmp_path / "state"
    with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN_KEY, TURNOUT_STATE_DIR=str(state)) as (url, _):
        assert [v["version"] for v in history(url)] == [1]
    rules = state / "rules"
    (rules / "vnotes.json").write_text("an operator's notes")
    (rules / "v00000002.json").write_text('{"yaml": "cut sh')
    with gateway_process(config, TURNOUT_ADMIN_KEY=ADMIN_KEY, TURNOUT_STATE_DIR=str(state)) as (url, _):
        ready = httpx.get(url + "/readyz").json()
        found = history(url)
    assert ready["rules_version"] == 1
    assert [v["version"] for v in found] == [1]
