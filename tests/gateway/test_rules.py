from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from gateway.auth import KeyRing
from gateway.cli.main import main
from gateway.rules import RulesInvalid, load_rules, parse_rules
from gateway.settings import Settings

ROOT = Path(__file__).parents[2]
VALID = """
backends:
  gpu: {kind: openai, endpoint: "http://vllm:8000/v1", model: m}
  ext: {kind: litellm, model: openai/gpt-4o-mini, api_key_env: OPENAI_API_KEY}
routes:
  code: {backends: [gpu, ext]}
  general: {backends: [ext]}
default_route: general
aliases: {gpt-4o-mini: ext}
api_keys:
  - {tenant: a, key_env: A_KEY, routes: [code]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        parse_rules(text, "rules.yaml")
    return [f"{p.line}:{p.path}: {p.message}" for p in caught.value.problems]


def test_valid_rules_parse_with_order_kept() -> None:
    rules = parse_rules(VALID)
    assert rules.routes["code"].backends == ["gpu", "ext"]
    assert rules.backends["gpu"].kind == "openai"


@pytest.mark.parametrize("name", ["rules.local.yaml", "rules.example.yaml"])
def test_shipped_rules_files_are_valid(name: str) -> None:
    assert main(["rules", "validate", str(ROOT / "deploy" / name)]) == 0


def test_unknown_key_is_named_with_its_path_and_line() -> None:
    text = VALID.replace("model: m}", "model: m, timout_s: 3}")
    assert problems_of(text) == ["3:backends.gpu.timout_s: unknown key (is it misspelt?)"]


def test_duplicate_keys_are_reported_not_silently_merged() -> None:
    text = VALID.replace("  general: {backends: [ext]}", "  general: {backends: [ext]}\n  code: {backends: [ext]}")
    assert "8:routes.code: duplicate key" in problems_of(text)


def test_cross_check_problems_are_all_reported_together() -> None:
    text = (
        VALID.replace("[gpu, ext]", "[gpu, nowhere]")
        .replace("default_route: general", "default_route: missing")
        .replace("{gpt-4o-mini: ext}", "{auto: ext, code: gone}")
        .replace("routes: [code]", "routes: [secret]")
    )
    found = problems_of(text)
    assert "6:routes.code.backends[1]: unknown backend 'nowhere'" in found
    assert "8:default_route: unknown route 'missing'" in found
    assert "9:aliases.code: unknown backend 'gone'" in found
    assert any("aliases.code: the same name is a route" in p for p in found)
    assert any("aliases.auto: 'auto' is reserved" in p for p in found)
    assert "11:api_keys[0].routes: unknown route 'secret'" in found


def test_api_key_needs_exactly_one_source() -> None:
    text = VALID.replace("{tenant: a, key_env: A_KEY, routes: [code]}", "{tenant: a}")
    assert problems_of(text) == ["11:api_keys[0]: give exactly one of sha256 or key_env"]


def test_wrong_types_and_missing_fields_are_reported() -> None:
    text = VALID.replace('endpoint: "http://vllm:8000/v1", ', "").replace("[gpu, ext]", "gpu")
    found = problems_of(text)
    assert any(p.startswith("3:backends.gpu.endpoint: Field required") for p in found)
    assert any(p.startswith("6:routes.code.backends: Input should be a valid list") for p in found)


def test_invalid_yaml_reports_its_line() -> None:
    assert problems_of("routes:\n  a: [b\n")[0].startswith("3:: not valid YAML")


def test_cli_validate_exits_1_and_prints_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(VALID.replace("[gpu, ext]", "[gpu, x1]").replace("default_route: general", "default_route: y"))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rules", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{path}:6: routes.code.backends[1]: unknown backend 'x1'" in result.stderr
    assert f"{path}:8: default_route: unknown route 'y'" in result.stderr
    assert "2 problem(s)" in result.stderr


def test_cli_validate_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "validate", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_resilience_settings_are_cross_checked() -> None:
    text = VALID.replace(
        "general: {backends: [ext]}",
        "general: {backends: [ext], latency_budget_ms: 1000, ttft_budget_ms: 2000, hedge: {delay_ms: 100}}",
    ).replace("model: m}", "model: m, breaker: {window: 5, min_calls: 10}}")
    found = problems_of(text)
    assert any("routes.general.ttft_budget_ms: longer than latency_budget_ms" in p for p in found)
    assert any("routes.general.hedge: hedging needs a second backend" in p for p in found)
    assert any("backends.gpu.breaker.min_calls: larger than window" in p for p in found)


def test_fallback_kinds_are_validated() -> None:
    text = VALID.replace(
        "code: {backends: [gpu, ext]}", "code: {backends: [gpu, ext], fallback: {failures: [5xx, teapot]}}"
    )
    assert any("routes.code.fallback.failures[1]" in p for p in problems_of(text))


def test_quickstart_dev_key_is_the_one_the_readme_names() -> None:
    keyring = KeyRing.from_config(load_rules(ROOT / "deploy" / "rules.local.yaml"), Settings(api_keys={}))
    principal = keyring.authenticate(Headers({"authorization": "Bearer sk-turnout-dev"}))
    assert principal.tenant
    assert "sk-turnout-dev" in (ROOT / "README.md").read_text()


def test_schema_and_cross_check_problems_are_reported_in_one_run() -> None:
    text = VALID.replace("[gpu, ext]", "[gpu, nowhere]").replace("default_route: general", "default_route: missing")
    text = text.replace("routes:\n", "routes:\n  extra: {backends: [gpu], latency_budget_ms: -5}\n", 1)
    found = problems_of(text)
    assert any("routes.extra.latency_budget_ms: Input should be greater than or equal to 1" in p for p in found)
    assert any("routes.code.backends[1]: unknown backend 'nowhere'" in p for p in found)
    assert any("default_route: unknown route 'missing'" in p for p in found)


@pytest.mark.parametrize(
    "name",
    ["TURNOUT_ADMIN_KEY", "TURNOUT_REDIS_URL", "HOME", "PATH", "REDIS_PASSWORD", "LITELLM_MASTER_KEY", "", "x_key"],
)
def test_a_rules_file_may_not_name_the_gateways_own_or_non_secret_variables(name: str) -> None:
    for text in (
        VALID.replace("api_key_env: OPENAI_API_KEY", f"api_key_env: '{name}'"),
        VALID.replace("key_env: A_KEY", f"key_env: '{name}'"),
        VALID + f"admin_keys: [{{name: ops, key_env: '{name}', role: viewer}}]\n",
    ):
        found = problems_of(text)
        assert any("key_env" in p for p in found), found


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "HF_TOKEN", "VLLM_SECRET", "PARTNER_PASSWORD"])
def test_secrets_meant_for_rules_may_be_named(name: str) -> None:
    parse_rules(VALID.replace("api_key_env: OPENAI_API_KEY", f"api_key_env: {name}"), "rules.yaml")


@pytest.mark.parametrize(
    "endpoint", ["http://[::1", "http://vllm:99999/v1", "http://vllm/v1\\nX-Injected: 1", "ftp://vllm/v1", "http:///v1"]
)
def test_an_endpoint_that_is_not_a_url_is_refused(endpoint: str) -> None:
    found = problems_of(VALID.replace('"http://vllm:8000/v1"', f'"{endpoint}"'))
    assert any("backends.gpu.endpoint" in p for p in found), found


@pytest.mark.parametrize(
    ("setting", "value"),
    [("health_check", "{interval_s: 0.000001}"), ("breaker", "{open_s: 0}"), ("timeout_s", "100000"),
     ("max_connections", "100000000")],
)  # fmt: skip
def test_intervals_and_counts_are_bounded(setting: str, value: str) -> None:
    found = problems_of(VALID.replace("model: m}", f"model: m, {setting}: {value}}}"))
    assert any(f"backends.gpu.{setting}" in p for p in found), found


def test_a_local_backend_loads_only_a_gguf_file() -> None:
    local = VALID.replace(
        '{kind: openai, endpoint: "http://vllm:8000/v1", model: m}', "{kind: local, gguf: /etc/passwd}"
    )
    found = problems_of(local)
    assert any("backends.gpu.gguf" in p for p in found), found


@pytest.mark.parametrize("text", ["- a\n- b\n", "5\n", "just text\n"])
def test_a_document_that_is_not_a_mapping_is_a_problem_not_a_crash(text: str) -> None:
    assert problems_of(text)


def test_a_document_holds_at_most_a_hundred_patterns() -> None:
    rules = "".join(f"  - {{name: r{i}, when: {{regex: 'x{i}'}}, route: code}}\n" for i in range(101))
    found = problems_of(VALID + "rules:\n" + rules)
    assert any("more than 100 rules with a regex" in p for p in found), found
