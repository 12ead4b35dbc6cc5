"""The fault matrix, in the manner of failoverbench: each scenario's expected and observed outcome
and its time to answer, through the gateway under uvicorn with the official openai SDK.

Upstream faults come from the fault-injecting server that the tests use too (support/faults.py); the gateway
runs in a process of its own.
Usage: .venv/bin/python -m bench.fault_matrix [--runs 5] (from the repository root); writes
bench/results/fault-matrix.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer, fault_server
from support.ports import free_port

OUT = Path(__file__).parent / "results" / "fault-matrix.md"


@dataclass
class Scenario:
    name: str
    faults: list[str]
    expected: str
    budget_ms: int = 1000
    route: str = ""
    backend: str = ""
    is_stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    warmup: int = 0


SCENARIOS = [
    Scenario("primary hangs", ["hang", "ok"], "200 via fallback"),
    Scenario("primary slow first byte (5 s)", ["slow-5000", "ok"], "200 via fallback"),
    Scenario("primary 500", ["status-500", "ok"], "200 via fallback"),
    Scenario("primary 503", ["status-503", "ok"], "200 via fallback"),
    Scenario("primary 429 + Retry-After", ["status-429", "ok"], "200 via fallback"),
    Scenario("primary malformed JSON", ["malformed", "ok"], "200 via fallback"),
    Scenario("primary resets the connection", ["reset", "ok"], "200 via fallback"),
    Scenario("primary refuses connections", ["refused", "ok"], "200 via fallback"),
    Scenario("request refused as the caller's fault (422)", ["status-422", "ok"], "422, no fallback"),
    Scenario("only backend hangs", ["hang"], "504 budget_exceeded"),
    Scenario("only backend 500", ["status-500"], "502 bad_upstream_response"),
    Scenario("client budget 300 ms, backend hangs", ["hang"], "504 budget_exceeded", 20000,
             headers={"x-turnout-budget-ms": "300"}),
    Scenario("stream: primary hangs before the first chunk", ["hang", "ok"], "stream via fallback, 5 chunks",
             route=", ttft_budget_ms: 500", is_stream=True),
    Scenario("stream: cut after 2 chunks", ["cut-2", "ok"], "error event after 2 chunks", is_stream=True),
    Scenario("stream: slower than the whole budget", ["slowstream-400"], "error event after 3 chunks",
             is_stream=True),
    Scenario("hedge: primary 2 s, hedge after 100 ms", ["slow-2000", "ok"], "200 via fallback",
             route=", hedge: {delay_ms: 100}"),
    Scenario("breaker open: primary 500s, skipped", ["status-500", "ok"], "200 via fallback",
             backend=", breaker: {consecutive_failures: 2, open_s: 60}", warmup=2),
    Scenario("every breaker open", ["status-500"], "503 no_backend_available",
             backend=", breaker: {consecutive_failures: 2, open_s: 60}", warmup=2),
]  # fmt: skip


@asynccontextmanager
async def gateway_process(rules: str) -> AsyncIterator[str]:
    """The gateway in a process of its own (as deployed), so that its timing shares no GIL with the
    client and the fault server; yields its base URL."""
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "rules.yaml"
        config.write_text(rules)
        port = free_port()
        env = {**os.environ, "TURNOUT_AUTH_DISABLED": "true", "TURNOUT_LOG_LEVEL": "error"}
        command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)]
        process = await asyncio.create_subprocess_exec(*command, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient() as probe:
                for _ in range(300):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await probe.get(url + "/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
            yield url
        finally:
            process.terminate()
            await process.wait()


async def observe(scenario: Scenario, client: openai.AsyncOpenAI, names: list[str]) -> str:
    """One request; its outcome in the words of the ``expected`` column."""
    via = {names[0]: "primary", names[-1]: "fallback"} if len(names) > 1 else {names[0]: "primary"}
    try:
        if not scenario.is_stream:
            raw = await client.chat.completions.with_raw_response.create(
                model="auto", messages=MESSAGES, extra_headers=scenario.headers
            )
            return f"{raw.status_code} via {via[raw.headers['x-turnout-backend']]}"
        raw_stream = await client.chat.completions.with_raw_response.create(
            model="auto", messages=MESSAGES, stream=True, extra_headers=scenario.headers
        )
        chunks = 0
        try:
            async for _ in raw_stream.parse():
                chunks += 1
        except openai.APIError:
            return f"error event after {chunks} chunks"
        return f"stream via {via[raw_stream.headers['x-turnout-backend']]}, {chunks} chunks"
    except openai.APIStatusError as exc:
        code = exc.body.get("code") if isinstance(exc.body, dict) else None
        return f"{exc.status_code} {code}" if exc.status_code != 422 else "422, no fallback"


async def run_scenario(
    faults: FaultServer, scenario: Scenario, runs: int, sdk: openai.AsyncOpenAI
) -> tuple[str, list[float]]:
    backends = [
        (f"refused{i}", f"http://127.0.0.1:{free_port()}/v1") if fault == "refused" else faults.backend(fault)
        for i, fault in enumerate(scenario.faults)
    ]
    rules = route_rules(backends, route=f", latency_budget_ms: {scenario.budget_ms}{scenario.route}",
                        backend=scenario.backend)  # fmt: skip
    names = [name for name, _ in backends]
    outcomes, times = [], []
    async with gateway_process(rules) as url:
        client = sdk.with_options(base_url=url + "/v1")  # one warm client for every scenario
        for _ in range(scenario.warmup):
            await observe(scenario, client, names)
        for _ in range(runs):
            started = time.perf_counter()
            outcomes.append(await observe(scenario, client, names))
            times.append(time.perf_counter() - started)
    observed = max(set(outcomes), key=outcomes.count)
    if len(set(outcomes)) > 1:
        observed += f" (other runs: {sorted(set(outcomes) - {observed})})"
    return observed, times


async def disconnect_scenario(faults: FaultServer) -> tuple[str, float]:
    """A client that gives up after 300 ms: how long after that the upstream connection is closed."""
    name, endpoint = faults.backend("hang")
    async with gateway_process(route_rules([(name, endpoint)])) as url, httpx.AsyncClient(base_url=url) as client:
        with contextlib.suppress(httpx.ReadTimeout):
            await client.post("/v1/chat/completions", json={"model": "auto", "messages": MESSAGES}, timeout=0.3)
        gave_up = time.perf_counter()
        await asyncio.sleep(2)
    closed = faults.last_seen.get((name, "closed"))
    if closed is None:
        return "upstream left open", float("nan")
    return "upstream closed", closed - gave_up


async def main(runs: int) -> None:
    rows = []
    sdk = openai.AsyncOpenAI(base_url="http://127.0.0.1:1/v1", api_key="unused", max_retries=0, timeout=30)
    async with fault_server() as faults:
        # The SDK's first request and first error in a process take ~0.4 s of its own: not the gateway's time.
        # (Also its first request with extra headers.)
        budget = {"x-turnout-budget-ms": "60000"}
        await run_scenario(faults, Scenario("warm-up", ["ok"], "200 via primary", headers=budget), 1, sdk)
        await run_scenario(faults, Scenario("warm-up", ["status-500"], "502", headers=budget), 1, sdk)
        for scenario in SCENARIOS:
            observed, times = await run_scenario(faults, scenario, runs, sdk)
            rows.append((scenario, observed, times))
            print(f"{scenario.name}: {observed}; runs {[round(t * 1000) for t in times]} ms", flush=True)
        disconnect = await disconnect_scenario(faults)
    lines = [
        "# Fault matrix",
        "",
        f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}; `python -m bench.fault_matrix --runs {runs}`;",
        "the gateway in a process of its own, the official openai SDK as the client, the fault-injecting",
        "upstream of `support/faults.py`. The first run of a scenario includes the gateway's first request.",
        "Times are to the whole answer (streams: to their end); *over budget* is the worst run minus the budget.",
        "",
        "| scenario | budget | expected | observed | pass | median | worst | over budget |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, observed, times in rows:
        budget = int(scenario.headers.get("x-turnout-budget-ms", scenario.budget_ms))
        worst = max(times) * 1000
        over = f"{worst - budget:+.0f} ms" if worst > budget * 0.5 else "—"
        mark = "yes" if observed.startswith(scenario.expected) else "**NO**"
        lines.append(
            f"| {scenario.name} | {budget} ms | {scenario.expected} | {observed} | {mark} | "
            f"{statistics.median(times) * 1000:.0f} ms | {worst:.0f} ms | {over} |"
        )
    outcome, seconds = disconnect
    lines.append(
        f"| client gives up after 300 ms (backend hangs) | — | upstream closed | {outcome} | "
        f"{'yes' if outcome == 'upstream closed' else '**NO**'} | closed {seconds * 1000:.0f} ms after the client "
        "left | — | — |"
    )
    OUT.write_text("\n".join(lines) + "\n")
    print(f"written to {OUT}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
