"""The gateway's own requests (golden runs, warm-ups) in the cost report, apart from every tenant's:
tenant ``~synthetic`` (no key's tenant can be named so), endpoint ``golden`` or ``warmup``."""

from __future__ import annotations

from contracts.wire import ChatCompletion
from gateway.observe import Outcome, ReportBook
from gateway.rules import Rules

SYNTHETIC_TENANT = "~synthetic"


def book_synthetic(
    reports: ReportBook, rules: Rules, route: str, backend: str, completion: ChatCompletion, kind: str
) -> None:
    """Book one synthetic answer: its tokens and what they cost on ``backend``."""
    usage = completion.usage
    prompt, generated = (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (0, 0)
    spec = rules.backends.get(backend)
    cost = (prompt * spec.price.input_per_mtok + generated * spec.price.output_per_mtok) / 1e6 if spec else 0.0
    reports.record(Outcome(route, backend, SYNTHETIC_TENANT, "bypass", prompt, generated, cost, cost, kind))
