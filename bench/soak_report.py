"""Turn the soak's wrk output, /metrics and RSS samples into bench/results/soak.md (on stdout).

Usage: soak_report.py RSS_LOG WARMUP_S DURATION_S CONNS < wrk output, "@@METRICS@@", metrics text
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path


def wrk_figures(text: str) -> dict[str, str]:
    figures = {}
    for name, pattern in {
        "requests": r"(\d+) requests in",
        "rps": r"Requests/sec:\s+([\d.]+)",
        "p50": r"\n\s+50%\s+(\S+)",
        "p90": r"\n\s+90%\s+(\S+)",
        "p99": r"\n\s+99%\s+(\S+)",
        "non_2xx": r"Non-2xx or 3xx responses: (\d+)",
        "socket_errors": r"Socket errors: (.*)",
    }.items():
        found = re.search(pattern, text)
        figures[name] = found.group(1) if found else "0" if name in ("non_2xx",) else "none"
    return figures


def metric_counts(text: str, name: str, label: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            counts[labels.get(label, "?") if label != "*" else ",".join(labels.values())] += int(
                float(line.rsplit(" ", 1)[1])
            )
    return counts


def main() -> None:
    rss_log, warmup, duration, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    wrk_text, _, metrics = sys.stdin.read().partition("@@METRICS@@")
    samples = [
        tuple(map(int, line.split())) for line in Path(rss_log).read_text().splitlines() if len(line.split()) == 2
    ]
    after_warmup = [rss for t, rss in samples if t >= warmup]
    base, last, peak = after_warmup[0], after_warmup[-1], max(rss for _, rss in samples)
    growth = (last - base) / base * 100
    wrk = wrk_figures(wrk_text)
    statuses = metric_counts(metrics, "turnout_requests_total", "status")
    attempts = metric_counts(metrics, "turnout_backend_attempts_total", "*")
    server_errors = sum(n for status, n in statuses.items() if status.startswith("5"))
    print(f"# Soak: {duration} s at {conns} connections, 10 % of requests on a route whose primary always fails")
    print()
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}; one gateway process; nginx upstreams; wrk 2 threads.")
    print("Route `flaky` = [failing (HTTP 500 on every call; breaker 5 in a row, open 2 s), healthy];")
    print("route `general` = [healthy]. Both have a 1,000 ms latency budget.")
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| requests | {wrk['requests']} ({wrk['rps']} req/s) |")
    print(f"| latency p50 / p90 / p99 | {wrk['p50']} / {wrk['p90']} / {wrk['p99']} (budget 1,000 ms) |")
    print(f"| non-2xx answers seen by the client | {wrk['non_2xx']} |")
    print(f"| 5xx counted by the gateway | {server_errors} |")
    print(f"| socket errors | {wrk['socket_errors']} |")
    print(
        f"| RSS after {warmup} s warm-up / at the end / peak | {base / 1024:.1f} / {last / 1024:.1f} / "
        f"{peak / 1024:.1f} MiB |"
    )
    print(f"| RSS growth after warm-up | {growth:+.1f} % (target < 10 %) |")
    print()
    print("Gateway answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
    print()
    print("Backend attempts (backend, outcome): " + "; ".join(f"{k}: {n}" for k, n in sorted(attempts.items())))
    print()
    print("RSS samples (s, MiB), every 5 s: " + " ".join(f"{t}:{rss / 1024:.0f}" for t, rss in samples[::6]))


if __name__ == "__main__":
    main()
