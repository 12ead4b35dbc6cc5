"""``turnout golden``: validate a file, and run a set against the real llama.cpp server (SmolLM2),
both straight at the backend of a rules file and through a running gateway's route."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.servers import serving

KEY = "sk-golden-cli"
MEETS = [  # what a 135M model can meet
    {"name": "answers-fast", "prompt": "Say hello.", "max_tokens": 16, "expect": {"max_latency_ms": 30000}},
    {"name": "short", "prompt": "Name a colour.", "max_tokens": 8, "expect": {"max_output_tokens": 8}},
    {"name": "no-refusal", "prompt": "Say hello.", "max_tokens": 16, "expect": {"not_contains": "I cannot browse"}},
]
CANNOT = {
    "name": "exact-json",
    "prompt": "Say hello.",
    "max_tokens": 16,
    "expect": {"json_schema": {"type": "object", "required": ["primes_below_100"]}},
    "critical": True,
}


def turnout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, check=False)


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_validate_says_ok_or_names_each_problem_at_its_line(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", MEETS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(MEETS[0]) + "\n{oops\n")
    assert turnout("golden", "validate", str(good)).stdout.strip() == f"{good}: ok (3 rows, 0 critical)"
    refused = turnout("golden", "validate", str(bad))
    assert refused.returncode == 1
    assert f"{bad}:2: not JSON" in refused.stderr


def test_rules_validate_checks_the_golden_sets_too(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""
backends:
  b: {{kind: openai, endpoint: "http://b/v1", model: m}}
routes:
  general: {{backends: [b], golden: {{set: {tmp_path / "missing.jsonl"}}}}}
default_route: general
""")
    refused = turnout("rules", "validate", str(rules))
    assert refused.returncode == 1
    assert "routes.general.golden.set" in refused.stderr
    assert "cannot read" in refused.stderr


@pytest.mark.local_model
def test_a_set_the_model_meets_passes_and_one_it_cannot_fails(llama_server: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"""
backends:
  llama: {{kind: openai, endpoint: "{llama_server}", model: smollm2}}
routes:
  general: {{backends: [llama]}}
default_route: general
""")
    meets = write(tmp_path / "meets.jsonl", MEETS)
    cannot = write(tmp_path / "cannot.jsonl", [*MEETS, CANNOT])
    passed = turnout("golden", "run", "--set", str(meets), "--config", str(rules), "--backend", "llama", "--json")
    failed = turnout("golden", "run", "--set", str(cannot), "--config", str(rules), "--backend", "llama")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    summary = json.loads(passed.stdout)
    assert (summary["passed"], summary["pass_ratio"], summary["rows"]) == (True, 1.0, 3)
    assert failed.returncode == 1
    assert "FAIL  exact-json (critical)" in failed.stdout
    assert "json_schema:" in failed.stdout
    assert "critical rows failed: exact-json" in failed.stdout.splitlines()[-1]


@pytest.fixture(scope="module")
def gateway_url(llama_server: str) -> Iterator[str]:
    rules = f"""
backends:
  llama: {{kind: openai, endpoint: "{llama_server}", model: smollm2}}
routes:
  general: {{backends: [llama]}}
default_route: general
api_keys:
  - {{tenant: ops, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""
    with serving(create_app(Settings(), parse_rules(rules))) as url:
        yield url


@pytest.mark.local_model
def test_a_set_runs_through_a_gateways_route(gateway_url: str, tmp_path: Path) -> None:
    meets = write(tmp_path / "meets.jsonl", MEETS)
    common = ["golden", "run", "--set", str(meets), "--url", gateway_url, "--route", "general"]
    passed = turnout(*common, "--api-key", KEY)
    unauthorised = turnout(*common, "--api-key", "sk-wrong")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.splitlines()[-1].startswith("passed: 100% of 3 rows")
    assert unauthorised.returncode == 1
    assert "the gateway answered 401" in unauthorised.stdout
    assert turnout("golden", "run", "--set", str(meets)).returncode == 2
