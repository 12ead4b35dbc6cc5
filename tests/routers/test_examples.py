"""Corrections by example, below the gateway: the index's threshold and margin, the examples file,
and the edit that adds one to a rules document."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from contracts.errors import InvalidRequest
from gateway.live.example_edit import with_example
from routers.examples import ExampleIndex, ExamplesInvalid, read_examples_file
from routers.specs import RouteExample


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def examples(*routes: str) -> list[RouteExample]:
    return [RouteExample(route=route, prompt=f"prompt {i}") for i, route in enumerate(routes)]


def test_the_nearest_example_over_its_threshold_decides() -> None:
    index = ExampleIndex(examples("code", "qa"), np.stack([unit(1, 0, 0), unit(0, 1, 0)]), threshold=0.9, margin=0.05)
    assert index.match(unit(1, 0.1, 0)).route == "code"
    assert index.match(unit(0.1, 1, 0)).route == "qa"
    far = index.match(unit(1, 1, 0))  # 0.71 from both: under the threshold
    assert far.route is None
    assert "under its threshold" in far.reason
    assert [n.route for n in far.nearest] == ["code", "qa"] or [n.route for n in far.nearest] == ["qa", "code"]


def test_two_routes_examples_too_close_to_tell_apart_leave_it_to_the_classifier() -> None:
    index = ExampleIndex(examples("code", "qa"), np.stack([unit(1, 0.02, 0), unit(1, -0.02, 0)]), 0.9, 0.05)
    undecided = index.match(unit(1, 0, 0))
    assert undecided.route is None
    assert "within 0.05 of another route's" in undecided.reason
    decided = ExampleIndex(examples("code", "qa"), np.stack([unit(1, 0.02, 0), unit(1, -0.02, 0)]), 0.9, 0.0)
    assert decided.match(unit(1, 0.01, 0)).route == "code"


def test_per_route_thresholds_override_the_default_and_length_does_not_matter() -> None:
    index = ExampleIndex(examples("code"), np.stack([unit(1, 0, 0) * 7]), 0.99, 0.05, {"code": 0.6})
    assert index.match(unit(1, 1, 0) * 0.001).route == "code"  # cosine 0.71, over code's own 0.6
    assert ExampleIndex(examples("code"), np.stack([unit(1, 0, 0)]), 0.99).match(unit(1, 1, 0)).route is None


def test_the_nearest_examples_are_listed_closest_first() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0, 1, 0), unit(1, 1, 0), unit(0, 0, 1)])
    index = ExampleIndex(examples("a", "b", "c", "d"), vectors, 0.5, 0.0)
    found = index.match(unit(1, 0.2, 0))
    assert [n.route for n in found.nearest] == ["a", "c", "b"]
    assert found.nearest[0].similarity > found.nearest[1].similarity > found.nearest[2].similarity
    assert ExampleIndex([], np.zeros((0, 3), np.float32)).match(unit(1, 0, 0)).route is None


def test_an_examples_file_is_read_and_every_bad_row_is_refused_at_its_line(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"route": "code", "prompt": "write SQL"}\n\n{"route": "qa", "prompt": "who?"}\n')
    assert [e.route for e in read_examples_file(good)] == ["code", "qa"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"route": "code", "prompt": "ok"}\nnot json\n{"route": "qa", "prompt": "   "}\n{"prompt": "x"}\n')
    with pytest.raises(ExamplesInvalid) as caught:
        read_examples_file(bad)
    assert [line for line, _ in caught.value.problems] == [2, 3, 4]
    assert "empty" in caught.value.problems[1][1]
    assert "route" in caught.value.problems[2][1]
    many = tmp_path / "many.jsonl"
    many.write_text("".join(f'{{"route": "qa", "prompt": "q{i}"}}\n' for i in range(5)))
    with pytest.raises(ExamplesInvalid) as caught:
        read_examples_file(many, limit=3)
    assert caught.value.problems == [(4, "one example too many: router.max_examples allows 3 here")]
    with pytest.raises(ExamplesInvalid, match="cannot be read"):
        read_examples_file(tmp_path / "missing.jsonl")


LITERAL_RULES = (
    "router:\n  kind: classifier\n  examples:\n    - route: qa\n      prompt: |\n        who wrote it\n\nroutes: {}\n"
)
BLOCK_RULES = """\
# the team's rules
router:
  kind: classifier   # the shipped model
  threshold: 0.4
routes:
  code: {backends: [a]}
"""


@pytest.mark.parametrize(
    "text",
    [
        BLOCK_RULES,
        LITERAL_RULES,
        "router: {kind: classifier, threshold: 0.3}\nroutes: {}\n",
        "router:\n  kind: classifier\n  examples: []\n  threshold: 0.3\n",
        "router:\n    kind: llm\n    backend: x\n    fallback:\n        kind: classifier\n",
    ],
)
def test_an_example_is_written_into_the_rules_text_keeping_the_rest(text: str) -> None:
    prompt = 'He said "hi"\nnext: line # not a comment'
    edited = with_example(text, "code", prompt)
    router = yaml.safe_load(edited)["router"]
    router = router.get("fallback", router)
    assert router["examples"][-1] == {"route": "code", "prompt": prompt}
    before = yaml.safe_load(text)["router"]
    before = before.get("fallback", before)
    assert {k: v for k, v in router.items() if k != "examples"} == {k: v for k, v in before.items() if k != "examples"}
    assert len(router["examples"]) == len(before.get("examples") or []) + 1
    again = with_example(edited, "qa", "second")
    assert yaml.safe_load(again)["router"].get("fallback", yaml.safe_load(again)["router"])["examples"][-2:] == [
        {"route": "code", "prompt": prompt},
        {"route": "qa", "prompt": "second"},
    ]


def test_comments_stay_where_ops_wrote_them() -> None:
    edited = with_example(BLOCK_RULES, "code", "write SQL")
    assert edited.startswith("# the team's rules\nrouter:\n  kind: classifier   # the shipped model\n")


@pytest.mark.parametrize(
    ("text", "prompt", "complaint"),
    [
        ("router: {kind: default}\n", "a prompt", "classifier router"),
        ("routes: {}\n", "a prompt", "classifier router"),
        (BLOCK_RULES, "   ", "empty"),
    ],
)
def test_an_example_that_cannot_be_added_is_refused(text: str, prompt: str, complaint: str) -> None:
    with pytest.raises(InvalidRequest, match=complaint):
        with_example(text, "code", prompt)
