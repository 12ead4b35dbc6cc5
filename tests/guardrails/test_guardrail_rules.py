"""Guardrails in the rules file: each mistake refused at its path and line, by ``rules validate`` too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.rules import RulesInvalid, parse_rules

VALID = """
backends:
  local: {kind: openai, endpoint: "http://local/v1", model: m}
  vendor: {kind: litellm, model: openai/gpt-4o-mini}
  guard: {kind: openai, endpoint: "http://guard/v1", model: llama-guard}
guardrails:
  pii: {kind: pii, entities: [email, phone], action: redact, applies_to: external}
  moderation: {kind: classifier, model: "builtin:moderation", flag_labels: [hate, offensive], action: fallback}
  boilerplate: {kind: pattern, patterns: ["(?i)as an ai language model"], action: flag}
  judge: {kind: llm, backend: guard, budget_ms: 800, on_error: allow, action: block}
  presidio: {kind: webhook, url: "http://127.0.0.1:9/check", timeout_ms: 200, action: redact}
routes:
  general:
    backends: [local, vendor]
    guardrails: {input: [pii, presidio], output: [moderation, boilerplate, judge], holdback_chars: 128}
default_route: general
default_guardrails: {input: [pii]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        parse_rules(text, "rules.yaml")
    return [f"{p.line}:{p.path}: {p.message}" for p in caught.value.problems]


def test_the_issues_example_parses_and_litellm_backends_are_external() -> None:
    rules = parse_rules(VALID)
    assert set(rules.guardrails) == {"pii", "moderation", "boilerplate", "judge", "presidio"}
    assert rules.external_backends() == frozenset({"vendor"})
    assert rules.routes["general"].guardrails is not None
    assert rules.routes["general"].guardrails.holdback_chars == 128


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("kind: pattern, patterns", "kind: regexes, patterns"), "9:guardrails.boilerplate: Input tag 'regexes'"),
        (
            ('["(?i)as an ai language model"]', '["(a)\\\\1"]'),
            "9:guardrails.boilerplate.patterns[0]: not a pattern RE2",
        ),
        (("backend: guard, budget_ms", "backend: nowhere, budget_ms"), "10:guardrails.judge.backend: unknown backend"),
        (('"builtin:moderation"', '"models/missing"'), "8:guardrails.moderation.model: no model at 'models/missing'"),
        (("[pii, presidio]", "[pii, typo]"), "15:routes.general.guardrails.input[1]: unknown guardrail 'typo'"),
        (("[pii, presidio]", "[pii, moderation]"), "15:routes.general.guardrails.input[1]: 'moderation' falls back"),
        (
            ("output: [moderation", "output: [pii, moderation"),
            "15:routes.general.guardrails.output[0]: 'pii' applies_to",
        ),
        (("{input: [pii]}", "{input: [pii, pii]}"), "17:default_guardrails.input: a guardrail is listed twice"),
        (("action: fallback}", "action: redact}"), "8:guardrails.moderation.action: a classifier check cannot redact"),
        (("timeout_ms: 200", "timeout_ms: 0"), "11:guardrails.presidio.timeout_ms: Input should be greater than"),
    ],
)
def test_a_bad_guardrail_is_refused_at_its_line(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in VALID
    problems = problems_of(VALID.replace(old, new, 1))
    assert any(p.startswith(expected) for p in problems), problems


def test_rules_validate_refuses_them_at_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        VALID.replace('["(?i)as an ai language model"]', '["(a+)(?=b)"]').replace("[pii, presidio]", "[pii, typo]")
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rules", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"{path}:9: guardrails.boilerplate.patterns[0]: not a pattern RE2 can run" in done.stdout + done.stderr
    assert f"{path}:15: routes.general.guardrails.input[1]: unknown guardrail 'typo'" in done.stdout + done.stderr
