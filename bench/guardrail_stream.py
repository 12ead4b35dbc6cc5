"""Time to first token with output guardrails on a stream, against none, in one run.

A model server (aiohttp, in this process) streams a 1,200-character answer in 4-character tokens
every 10 ms (about 100 tokens a second, a small model on a GPU). One gateway process serves four
routes in front of it: no output guardrails (plain), a pattern with the default holdback of 256
characters, the same with 64, and the shipped moderation model with 256. Each route is asked
``--streams`` times, one stream at a time, alternating routes; the figure is the median time from
the request to the first character of text the client receives, and to the stream's end.

    .venv/bin/python bench/guardrail_stream.py      # ~1 minute; writes bench/results/guardrail-stream.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
TOKEN, EVERY_S, ANSWER_CHARS = "word", 0.010, 1200
RULES = """
version: 1
backends:
  model: {{kind: openai, endpoint: "http://127.0.0.1:{model_port}/v1", model: m}}
guardrails:
  vault: {{kind: pattern, patterns: ["TOP-SECRET-[0-9]+"], action: block}}
  moderation: {{kind: classifier, model: "builtin:moderation", action: block}}
routes:
  plain: {{backends: [model]}}
  holdback-256: {{backends: [model], guardrails: {{output: [vault]}}}}
  holdback-64: {{backends: [model], guardrails: {{output: [vault], holdback_chars: 64}}}}
  moderation-256: {{backends: [model], guardrails: {{output: [moderation]}}}}
default_route: plain
router: {{kind: default}}
api_keys:
  - {{tenant: bench, key_env: BENCH_API_KEY}}
"""
KEY = "sk-bench-turnout-0123456789"
ROUTES = ("plain", "holdback-256", "holdback-64", "moderation-256")


def chunk(text: str | None, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {}
    event = {"id": "b", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(event).encode() + b"\n\n"


async def model(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk(""))
    for _ in range(ANSWER_CHARS // len(TOKEN)):
        await asyncio.sleep(EVERY_S)
        await response.write(chunk(TOKEN))
    await response.write(chunk(None, "stop") + b"data: [DONE]\n\n")
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": []})


async def one_stream(client: httpx.AsyncClient, url: str, route: str) -> tuple[float, float]:
    body = {"model": route, "stream": True, "messages": [{"role": "user", "content": "write"}]}
    started = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=body, headers={"authorization": f"Bearer {KEY}"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - started
    return (first if first is not None else float("nan")), time.perf_counter() - started


async def measure(model_port: int, port: int, streams: int) -> dict[str, list[tuple[float, float]]]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", model_port).start()
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            for _ in range(120):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            direct = f"http://127.0.0.1:{model_port}/v1/chat/completions"
            figures: dict[str, list[tuple[float, float]]] = {r: [] for r in ("direct", *ROUTES)}
            for _ in range(streams):
                figures["direct"].append(await one_stream(client, direct, "m"))
                for route in ROUTES:
                    figures[route].append(await one_stream(client, url, route))
    finally:
        await runner.cleanup()
    return figures


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def report(figures: dict[str, list[tuple[float, float]]], streams: int) -> str:
    lines = [
        f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {os.cpu_count()} cores; {streams} streams per row, "
        f"one at a time, alternating; a {ANSWER_CHARS}-character answer in {len(TOKEN)}-character tokens every "
        f"{EVERY_S * 1000:.0f} ms; median ms",
    ]
    base = statistics.median(f for f, _ in figures["plain"])
    for route, values in figures.items():
        ttft = statistics.median(f for f, _ in values)
        total = statistics.median(t for _, t in values)
        added = "" if route in ("direct", "plain") else f"  (+{(ttft - base) * 1000:.0f} ms over plain)"
        lines.append(f"{route:<15} first text {ttft * 1000:7.1f}  end {total * 1000:7.1f}{added}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=15)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "guardrail-stream.txt")
    args = parser.parse_args()
    model_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as work:
        rules = Path(work) / "rules.yaml"
        rules.write_text(RULES.format(model_port=model_port))
        command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(rules), "--port", str(port)]
        env = {**os.environ, "TURNOUT_LOG_LEVEL": "warning", "BENCH_API_KEY": KEY}
        gateway = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            figures = asyncio.run(measure(model_port, port, args.streams))
        finally:
            gateway.terminate()
            gateway.wait(30)
    args.out.write_text(report(figures, args.streams))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
