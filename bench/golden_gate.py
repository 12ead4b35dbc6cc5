"""The golden gate's cost: time from a rules apply to the new version serving, with a 50-row golden
set run against the changed primary, beside the same change on a route without a set; once against
the fixed-answer nginx upstream and once against the real local model (SmolLM2 on llama.cpp).
    .venv/bin/python -m bench.golden_gate
Figures go to bench/results/golden-gate.txt. Needs the upstream of shared/bench/upstream-nginx.conf
on 127.0.0.1:18000 (bench/overhead.sh starts it) and the local extra (deploy/setup.sh installs it).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from support.ports import free_port

ROOT = Path(__file__).parents[1]
OUT = ROOT / "bench" / "results" / "golden-gate.txt"
ADMIN = "bench-admin-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN}"}
ROWS = 50
TIMES = 3


def golden_rows(kind: str) -> list[dict[str, object]]:
    if kind == "fixed":
        expect: dict[str, object] = {"contains": "fixed answer", "max_latency_ms": 5000}
    else:
        expect = {"not_contains": "I cannot browse", "max_output_tokens": 16, "max_latency_ms": 60000}
    return [
        {"name": f"row-{n}", "prompt": f"Question {n}: name a colour.", "max_tokens": 16, "expect": expect}
        for n in range(ROWS)
    ]


FIXED = "{kind: openai, endpoint: 'http://127.0.0.1:18000/v1', model: NAME-model, max_connections: 64}"
LOCAL = "{kind: local, model: smollm2-NAME, parallel: 4, context_tokens: 1024, timeout_s: 120}"


def rules(kind: str, golden: Path, primary: str, plain_budget_ms: int) -> str:
    """The gated route's primary is ``primary``; the plain route has no set and only its budget moves."""
    template = FIXED if kind == "fixed" else LOCAL
    backends = "\n".join(f"  {name}: {template.replace('NAME', name)}" for name in ("one", "two"))
    return f"""
backends:
{backends}
routes:
  gated: {{backends: [{primary}], golden: {{set: {golden}, min_pass_ratio: 0.9, timeout_s: 300, concurrency: 4}}}}
  plain: {{backends: [one], latency_budget_ms: {plain_budget_ms}}}
default_route: gated
router: {{kind: default}}
"""


def apply(url: str, text: str) -> float:
    current = httpx.get(url + "/admin/rules", headers=EDITOR, timeout=30).json()["version"]
    started = time.perf_counter()
    answer = httpx.put(url + "/admin/rules", content=text, headers={**EDITOR, "if-match": f'"{current}"'}, timeout=600)
    answer.raise_for_status()
    while httpx.get(url + "/readyz", timeout=30).json()["rules_version"] != answer.json()["version"]:
        time.sleep(0.01)
    return time.perf_counter() - started


def measure(kind: str, folder: Path) -> list[str]:
    golden = folder / f"{kind}.jsonl"
    golden.write_text("\n".join(json.dumps(row) for row in golden_rows(kind)) + "\n")
    config = folder / f"{kind}.yaml"
    config.write_text(rules(kind, golden, "one", 5000))
    env = {**os.environ, "TURNOUT_ADMIN_KEY": ADMIN, "TURNOUT_AUTH_DISABLED": "true", "TURNOUT_LOG_LEVEL": "warning"}
    env["TURNOUT_STATE_DIR"] = str(folder / f"{kind}-state")  # a history of its own
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)]
    with (folder / f"{kind}.log").open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        ready(url, process)
        gated, plain = [], []
        primary, budget = "one", 5000
        for _ in range(TIMES):
            budget = 11000 - budget
            plain.append(apply(url, rules(kind, golden, primary, budget)))
            primary = "two" if primary == "one" else "one"
            gated.append(apply(url, rules(kind, golden, primary, budget)))
        exposed = httpx.get(url + "/metrics", timeout=30).text
        runs = [line for line in exposed.splitlines() if line.startswith("turnout_golden_runs_total{")]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    shown = [f"#   {line}" for line in runs]  # that the gate ran, and how each run ended
    return [
        row(kind, "a change the gate skips (a budget)", plain),
        row(kind, f"a primary changed, {ROWS} rows first", gated),
        *shown,
    ]


def ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the gateway on {url} did not become ready")


def row(kind: str, what: str, seconds: list[float]) -> str:
    runs = " ".join(f"{t * 1000:.0f}" for t in seconds)
    return f"{kind:<6} {what:<36} median {statistics.median(seconds) * 1000:8.0f} ms  (runs: {runs})"


def main() -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [f"# {stamp} {os.cpu_count()} cores; from PUT /admin/rules to /readyz serving it, {TIMES} times each"]
    with tempfile.TemporaryDirectory() as folder:
        lines += measure("fixed", Path(folder))
        lines += measure("local", Path(folder))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    OUT.write_text(text)


if __name__ == "__main__":
    main()
