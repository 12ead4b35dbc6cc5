from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gateway.cli.main import main as turnout_main
from routers.classifier import SHIPPED_MODEL as SHIPPED
from routers.classifier import TaskClassifier
from tests.routers.test_classifier import PROMPTS


def turnout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def intents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Operator data in CLINC's shape: {text, intent}, with out_of_scope rows."""
    path = tmp_path_factory.mktemp("data") / "intents.jsonl"
    rows = [{"text": p, "intent": label} for label, prompts in PROMPTS.items() for p in prompts * 3]
    rows += [{"text": t, "intent": "out_of_scope"} for t in ["asdf qwer", "play jazz", "tell me a joke", "xyz"] * 2]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def trained(intents: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    result = turnout("router", "train", "--data", str(intents), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_train_writes_a_model_with_the_operators_labels(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["labels"] == ["code", "math", "qa"]
    assert 0 < manifest["abstain_threshold"] < 1
    assert (trained / "head.onnx").stat().st_size > 0


def test_eval_json_has_the_documented_schema(trained: Path, intents: Path) -> None:
    result = turnout("router", "eval", "--model", str(trained), "--data", str(intents), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"accuracy", "macro_f1", "per_label", "confusion", "p50_ms", "p99_ms"} <= set(report)
    assert set(report["per_label"]["code"]) == {"precision", "recall", "f1", "support"}
    assert report["confusion"]["labels"] == sorted(report["per_label"])
    assert {"in_scope_accuracy", "out_of_scope_recall"} <= set(report)
    assert report["p99_ms"] >= report["p50_ms"] > 0


def test_eval_without_model_uses_the_shipped_one(intents: Path) -> None:
    result = turnout("router", "eval", "--data", str(intents), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 44
    shipped = {"classification", "code", "creative", "extraction", "math", "qa", "summarization"}
    assert set(report["per_label"]) <= shipped | {"out_of_scope"}
    assert report["per_label"]["math"]["recall"] > 0.5


def test_train_rejects_rows_without_label(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    result = turnout("router", "train", "--data", str(bad), "--out", str(tmp_path / "m"))
    assert result.returncode == 1
    assert "bad.jsonl:1" in result.stderr


def test_route_explain_prints_route_scores_and_rules(tmp_path: Path) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(
        """
backends: {b: {kind: openai, endpoint: "http://127.0.0.1:9/v1", model: m}}
routes: {general: {backends: [b]}, code: {backends: [b]}, math: {backends: [b]}}
default_route: general
rules: [{name: sql, when: {regex: "(?i)select .* from"}, route: code}]
"""
    )
    result = turnout("route", "explain", "--config", str(config), "What is 12 times 12?")
    assert result.returncode == 0, result.stderr
    explained = json.loads(result.stdout)
    assert explained["route"] == "math"
    assert explained["decided_by"] == "classifier"
    assert set(explained["scores"]) == {
        "classification",
        "code",
        "creative",
        "extraction",
        "math",
        "qa",
        "summarization",
    }
    assert explained["rules"] == [{"rule": "sql", "matched": False, "failed": "regex"}]
    by_rule = json.loads(turnout("route", "explain", "--config", str(config), "SELECT a FROM t").stdout)
    assert by_rule["decided_by"] == "rule:sql"


def test_eval_into_a_closed_pipe_exits_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "write a function", "label": "code"}\n{"prompt": "what is 2+2", "label": "math"}\n')
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) has left
    closed = os.fdopen(write_end, "w")
    monkeypatch.setattr("sys.stdout", closed)
    status = turnout_main(["router", "eval", "--model", str(SHIPPED), "--data", str(data), "--json"])
    closed.close()  # flushes into /dev/null now, not into the closed pipe
    assert status == 0


def test_serve_without_a_rules_file_names_the_file_it_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TURNOUT_CONFIG", raising=False)
    assert turnout_main(["serve"]) == 1
    assert str(tmp_path / "rules.yaml") in capsys.readouterr().err


def test_ten_examples_a_route_train_and_say_how_sure_the_model_is(tmp_path: Path) -> None:
    data = tmp_path / "few.jsonl"
    rows = [
        {"prompt": f"{p} (variant {n})", "label": label}
        for label, prompts in PROMPTS.items()
        for p in prompts
        for n in range(3)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:10] + rows[12:22] + rows[24:34]))
    result = turnout("router", "train", "--data", str(data), "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["fewest_examples_of_a_label"] == 10
    assert manifest["held_out"]["rows"] == 6  # two of each route's ten held out for the estimate
    assert 0 <= manifest["held_out"]["accuracy"] <= 1
    assert "held-out estimate" in result.stdout
    assert "only 10 examples" in result.stdout
    scores = TaskClassifier(tmp_path / "m").scores(["Compute 3 + 4", "Who painted the Mona Lisa?"])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_an_out_of_scope_recall_that_is_no_fraction_is_refused(intents: Path, tmp_path: Path) -> None:
    result = turnout("router", "train", "--data", str(intents), "--out", str(tmp_path), "--out-of-scope-recall", "80")
    assert result.returncode == 2
    assert "not a fraction between 0 and 1" in result.stderr
