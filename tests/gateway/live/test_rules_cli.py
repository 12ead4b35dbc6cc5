"""``turnout rules ...`` against a running gateway process: parity with the API."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.rules import shown
from support.ports import free_port
from tests.gateway.harness import RULES
from tests.servers import gateway_process

TIGHTER = RULES.replace("code: {backends: [primary]}", "code: {backends: [primary], latency_budget_ms: 5000}")
BROKEN = RULES.replace("code: {backends: [primary]}", "code: {backends: [primary], latency_budget_ms: -5}")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("cli") / "rules.yaml"
    config.write_text(RULES)
    with gateway_process(config, TURNOUT_ADMIN_KEY="cli-admin-0123456789") as (found, _):
        yield found


def turnout(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway.cli", "rules", *args]
    if args[0] != "validate" or "--url" in args:
        command += ["--url", url, "--admin-key", "cli-admin-0123456789"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_cli_gets_validates_applies_lists_diffs_and_rolls_back(url: str, tmp_path: Path) -> None:
    tighter, broken = tmp_path / "tighter.yaml", tmp_path / "broken.yaml"
    tighter.write_text(TIGHTER)
    broken.write_text(BROKEN)
    line = BROKEN.splitlines().index("  code: {backends: [primary], latency_budget_ms: -5}") + 1

    got = turnout(url, "get")
    assert got.returncode == 0
    assert got.stderr.startswith("version 1 by bootstrap (bootstrap)")
    assert got.stdout == RULES  # the document alone: `get > file` round-trips
    offline = turnout(url, "validate", str(broken))
    online = turnout(url, "validate", str(broken), "--url", url)
    for checked in (offline, online):
        assert checked.returncode == 1
        assert f"{broken}:{line}: routes.code.latency_budget_ms:" in checked.stderr
    refused = turnout(url, "apply", str(broken))
    assert refused.returncode == 1
    dry = turnout(url, "dry-run", str(tighter))
    assert dry.returncode == 0
    assert "would route differently" in dry.stdout
    applied = turnout(url, "apply", str(tighter), "-m", "tighter code budget")
    assert applied.returncode == 0, applied.stderr
    assert "rules version 2 applied (was 1)" in applied.stdout
    stale = turnout(url, "apply", str(tighter), "--if-match", "1")
    assert stale.returncode == 1
    assert "412" in stale.stderr
    history = turnout(url, "history")
    assert [row.split()[0] for row in history.stdout.splitlines()] == ["2", "1"]
    assert "tighter code budget" in history.stdout
    diff = turnout(url, "diff", "1", "2")
    assert "+  code: {backends: [primary], latency_budget_ms: 5000}" in diff.stdout
    rolled = turnout(url, "rollback", "1", "-m", "undo")
    assert "rules version 3 applied" in rolled.stdout
    assert turnout(url, "get", "--version", "3").stdout == RULES
    audit = turnout(url, "audit").stdout
    assert audit.index("applied") < audit.index("rejected")
    assert "latency_budget_ms" in audit


def test_the_cli_says_what_is_wrong_with_a_bad_key(url: str) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rules", "history", "--url", url, "--admin-key", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 1
    assert "401: missing or wrong admin key" in answer.stderr


def test_validate_without_url_stays_offline_even_with_turnout_url_exported(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    env = {**os.environ, "TURNOUT_URL": f"http://127.0.0.1:{free_port()}", "TURNOUT_ADMIN_KEY": "whatever"}
    answer = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rules", "validate", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert answer.returncode == 0, answer.stderr
    assert "ok" in answer.stdout


def test_a_412_names_the_cli_commands_that_recover_from_it(url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    answer = turnout(url, "apply", str(rules), "--if-match", "0")
    assert answer.returncode == 1
    assert "turnout rules get > FILE" in answer.stderr
    assert "turnout rules apply FILE" in answer.stderr
    assert "GET /admin/rules" not in answer.stderr


def test_history_and_audit_escape_control_characters_from_the_store() -> None:
    assert shown("ok\x1b[2Jforged\rline\n") == "ok\\x1b[2Jforged\\rline\\n"
    assert shown("café – fine") == "café – fine"
