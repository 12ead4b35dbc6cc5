"""Rules files over the fault server's backends, and the one message the tests and benchmarks send."""

from __future__ import annotations

MESSAGES = [{"role": "user", "content": "hello"}]


def route_rules(backends: list[tuple[str, str]], route: str = "", backend: str = "", extra: str = "") -> str:
    """Rules with one route ``r`` over ``backends`` (name, endpoint) in order; ``route`` and ``backend``
    add flow-style keys to the route and to every backend."""
    lines = ["backends:"]
    for name, endpoint in backends:
        lines.append(
            f"  {name}: {{kind: openai, endpoint: '{endpoint}', model: m, timeout_s: 30, "
            f"health_check: {{enabled: false}}{backend}}}"
        )
    names = ", ".join(name for name, _ in backends)
    lines += ["routes:", f"  r: {{backends: [{names}]{route}}}", "default_route: r", "router: {kind: default}"]
    return "\n".join(lines) + "\n" + extra
