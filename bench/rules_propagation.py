"""Time from an apply on one replica to serving on another: 50 applies, p50 and p99.

Two gateway processes (``turnout serve``) share one real Redis on loopback. Each round applies a
changed document on replica A (``PUT /admin/rules``) and polls replica B's ``/readyz`` every 2 ms
until it reports the new ``rules_version``. The announcement (pub/sub) carries it; polling every
``TURNOUT_RULES_POLL_S`` (1 s) is the fallback. Output: one table on stdout.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))
from support.ports import free_port  # noqa: E402

APPLIES = int(os.environ.get("APPLIES", "50"))
RULES = (ROOT / "bench" / "rules.overhead.yaml").read_text()
ADMIN = {"authorization": "Bearer bench-admin-0123456789"}


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if ready and httpx.get(ready, timeout=1).status_code < 500:
                    break
            if not ready:
                time.sleep(0.5)
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{command[0]} did not start")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    redis_port = free_port()
    config = Path(tempfile.mkdtemp()) / "rules.yaml"
    config.write_text(RULES)
    env = {
        "TURNOUT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "TURNOUT_ADMIN_KEY": "bench-admin-0123456789",
        "BENCH_API_KEY": "sk-bench-turnout-0123456789",
        "TURNOUT_LOG_LEVEL": "warning",
    }
    ports = [free_port(), free_port()]
    serve = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port"]
    redis = ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(process(redis, {}, ""))
        one, two = (f"http://127.0.0.1:{port}" for port in ports)
        stack.enter_context(process([*serve, str(ports[0])], env, one + "/healthz"))
        stack.enter_context(process([*serve, str(ports[1])], env, two + "/healthz"))
        seconds = []
        with httpx.Client(timeout=30) as client:
            for i in range(APPLIES):
                current = client.get(one + "/admin/rules", headers=ADMIN).json()["version"]
                text = RULES + f"# apply {i}\n"
                started = time.perf_counter()
                answer = client.put(one + "/admin/rules", content=text, headers={**ADMIN, "if-match": f'"{current}"'})
                version = answer.json()["version"]
                while client.get(two + "/readyz").json()["rules_version"] != version:
                    time.sleep(0.002)
                seconds.append(time.perf_counter() - started)
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"# rules propagation: apply on replica A -> served by replica B, {APPLIES} applies, one Redis")
    print(f"# {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; includes A's validation and build")
    print(f"{'applies':>8} {'p50_ms':>8} {'p99_ms':>8} {'max_ms':>8} {'mean_ms':>8}")
    print(f"{len(ms):>8} {statistics.median(ms):>8.1f} {p99:>8.1f} {ms[-1]:>8.1f} {statistics.fmean(ms):>8.1f}")


if __name__ == "__main__":
    main()
