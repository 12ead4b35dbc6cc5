"""Golden set files and expectations: each kind passing and failing, the set's verdict, and invalid
files refused with each problem at its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.golden.expectations import Answered, failures
from gateway.golden.runner import RowResult, SetResult
from gateway.golden.sets import Expect, GoldenInvalid, parse_set
from gateway.rollouts.agreement import Agreement

LONG = "The meeting moved to Thursday at ten, in the large room on the third floor."


async def check(expect: dict[str, object], text: str, latency_ms: float = 10, tokens: int | None = 5) -> list[str]:
    return await failures(Expect.model_validate(expect), Answered(text, latency_ms, tokens), Agreement().similarity)


@pytest.mark.parametrize(
    ("expect", "passing", "failing"),
    [
        ({"contains": "Paris"}, "It is paris.", "It is Lyon."),
        ({"contains": ["Paris", "France"], "case_sensitive": True}, "Paris, France", "paris, france"),
        ({"not_contains": "as an AI"}, "Paris.", "As an AI, I think Paris."),
        ({"regex": r"^\d{4}-\d{2}-\d{2}$"}, "2026-12-03", "3 Dec 2026"),
        ({"equals": "Four"}, "  four\n", "four."),
        ({"one_of": ["positive", "negative"]}, "Negative", "neutral"),
        ({"json_schema": {"type": "object", "required": ["city"]}}, '{"city": "Paris"}', '{"town": "Paris"}'),
        (
            {"similar_to": LONG, "min_similarity": 0.9},
            LONG.replace("ten", "10"),
            "Photosynthesis makes sugar from light.",
        ),
        ({"max_output_tokens": 10}, "short", None),
    ],
)
async def test_each_expectation_passes_and_fails(expect: dict[str, object], passing: str, failing: str | None) -> None:
    assert await check(expect, passing) == []
    if failing is not None:
        failed = await check(expect, failing)
        kind = next(k for k in expect if k not in ("case_sensitive", "min_similarity"))
        assert failed
        assert all(f.startswith(f"{kind}:") for f in failed)


async def test_latency_and_token_bounds() -> None:
    assert await check({"max_latency_ms": 100}, "x", latency_ms=99) == []
    assert (await check({"max_latency_ms": 100}, "x", latency_ms=150))[0].startswith("max_latency_ms: took 150")
    assert (await check({"max_output_tokens": 3}, "x", tokens=4))[0] == "max_output_tokens: 4, over 3"
    assert "did not say" in (await check({"max_output_tokens": 3}, "x", tokens=None))[0]
    assert (await check({"json_schema": {"type": "object"}}, "not json"))[0] == "json_schema: the answer is not JSON"


def test_a_critical_row_failing_fails_the_set_at_any_ratio() -> None:
    rows = [RowResult(f"r{n}", False, [], "", 1.0) for n in range(99)]
    critical = RowResult("capital", True, ["contains: 'Paris' is not in the answer"], "Lyon", 1.0)
    result = SetResult("general", "b", 0.95, [*rows, critical])
    assert result.pass_ratio == 0.99
    assert not result.passed
    assert result.summary()["critical_failed"] == ["capital"]
    assert SetResult("general", "b", 0.95, rows).passed


def test_an_invalid_file_is_refused_with_each_problem_at_its_line() -> None:
    lines = [
        json.dumps({"name": "ok", "prompt": "hi", "expect": {"contains": "x"}}),
        "{not json",
        json.dumps(
            {"name": "both", "prompt": "hi", "messages": [{"role": "user", "content": "x"}], "expect": {"equals": "x"}}
        ),
        json.dumps({"name": "nothing", "prompt": "hi", "expect": {}}),
        json.dumps({"name": "bad-re", "prompt": "hi", "expect": {"regex": "(a)\\1"}}),
        json.dumps({"name": "bad-schema", "prompt": "hi", "expect": {"json_schema": {"type": 7}}}),
        "",
        json.dumps({"name": "ok", "prompt": "hi", "expect": {"contains": "x"}, "extra": 1}),
    ]
    with pytest.raises(GoldenInvalid) as caught:
        parse_set("\n".join(lines).encode(), Path("golden.jsonl"))
    problems = {line: message for line, message in caught.value.problems}
    assert set(problems) == {2, 3, 4, 5, 6, 8}
    assert problems[2].startswith("not JSON")
    assert 'exactly one of "messages" or "prompt"' in problems[3]
    assert "expects nothing" in problems[4]
    assert "RE2" in problems[5]
    assert "not a valid JSON Schema" in problems[6]
    assert "unknown key" in problems[8]
    assert "golden.jsonl:2: not JSON" in str(caught.value)


async def test_json_schema_patterns_run_under_re2() -> None:
    nested = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(a+)+$"}}}
    passing = '{"code": "' + "a" * 30 + '"}'
    failing = '{"code": "' + "a" * 30 + '!"}'  # exponential under a backtracking engine; linear here
    assert await check({"json_schema": nested}, passing) == []
    assert (await check({"json_schema": nested}, failing))[0].startswith("json_schema: ")
    for schema in ({"type": "string", "pattern": "(?=a)a"}, {"type": "object", "patternProperties": {"x": {}}}):
        row = json.dumps({"name": "r", "prompt": "hi", "expect": {"json_schema": schema}})
        with pytest.raises(GoldenInvalid, match=r"RE2|patternProperties"):
            parse_set(row.encode(), Path("g.jsonl"))


def test_names_are_unique_and_an_empty_file_is_refused() -> None:
    row = json.dumps({"name": "a", "prompt": "hi", "expect": {"contains": "x"}})
    with pytest.raises(GoldenInvalid, match="also on line 1"):
        parse_set(f"{row}\n{row}\n".encode(), Path("g.jsonl"))
    with pytest.raises(GoldenInvalid, match="no rows"):
        parse_set(b"\n", Path("g.jsonl"))
    assert parse_set(row.encode(), Path("g.jsonl")).sha256 == parse_set(row.encode(), Path("g.jsonl")).sha256
