"""One rules snapshot's guardrails: the checks built once, what each route runs, and how a set of
checks gives its verdicts on a text (concurrently; one that cannot answer follows its ``on_error``).
The input and output stages that act on them are :mod:`gateway.guardrails.stages`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backends.base import Backend
from gateway.guardrails.kinds import (
    Asked,
    Check,
    CheckFailed,
    JudgeCheck,
    Stage,
    Verdict,
    WebhookCheck,
    build_check,
)
from gateway.guardrails.specs import AttachedGuardrails, ClassifierGuardrail, GuardrailSpec, WebhookGuardrail
from routers.moderation import ModerationModel, model_dir_of

log = logging.getLogger("turnout")


@dataclass(frozen=True)
class Result:
    """What one check came to on one request: ``pass``, ``block``, ``redact``, ``flag``,
    ``fallback`` or ``error`` (it could not answer; ``on_error`` then decided)."""

    guardrail: str
    stage: Stage
    result: str
    detail: str = ""

    def header(self) -> str:
        return f"{self.guardrail}={self.result}"


GRAVEST_FIRST = (
    ("block", "blocked"),
    ("fallback", "fell_back"),
    ("redact", "redacted"),
    ("flag", "flagged"),
    ("error", "errored"),
)


@dataclass
class Ledger:
    """Every check's result on one request, and whether its answer was withheld (never cached)."""

    results: list[Result] = field(default_factory=list)
    withheld_by: str | None = None

    def fired(self) -> list[Result]:
        return [r for r in self.results if r.result != "pass"]

    def header(self) -> str | None:
        fired = self.fired()
        return ", ".join(r.header() for r in fired) if fired else None

    def summary(self) -> str:
        """The gravest result, for reports: blocked, fell_back, redacted, flagged, errored, passed."""
        if self.withheld_by is not None:
            return "blocked"
        order = ("block", "fallback", "redact", "flag", "error")
        names = {
            "block": "blocked",
            "fallback": "fell_back",
            "redact": "redacted",
            "flag": "flagged",
            "error": "errored",
        }
        for result in order:
            if any(r.result == result for r in self.results):
                return names[result]
        return "passed" if self.results else "none"


@dataclass(frozen=True)
class RouteGuards:
    """What one route runs, split by where and when."""

    input: tuple[Check, ...]
    external: tuple[Check, ...]
    """Input redactions for attempts on external backends only."""
    output: tuple[Check, ...]
    later_input: tuple[Check, ...]
    """``mode: async``: run after the answer is sent, flag only."""
    later_output: tuple[Check, ...]
    holdback_chars: int
    output_version: str
    """A fingerprint of the output checks: a cached answer checked under another is checked again."""

    @property
    def holds_whole_stream(self) -> bool:
        """A judge or a webhook reads a whole answer: a stream is held back until it has."""
        return any(isinstance(c, JudgeCheck | WebhookCheck) for c in self.output)


class Guardrails:
    """The snapshot's guardrails; :meth:`for_route` is ``None`` for a route that runs none."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        routes: Mapping[str, RouteGuards],
        default: RouteGuards | None,
        models: Mapping[Path, ModerationModel] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.checks = checks
        self._routes = routes
        self._default = default
        self.models = dict(models or {})
        """The classifier models these checks use, by directory (a later snapshot reuses them)."""
        self.client = client
        """The webhooks' HTTP client, when any check is a webhook (closed with the snapshot)."""
        self.later: set[asyncio.Task[None]] = set()
        """``mode: async`` checks running after their answers were sent (held so that they finish)."""

    def for_route(self, route: str) -> RouteGuards | None:
        return self._routes.get(route, self._default)


def build_guardrails(
    defined: Mapping[str, GuardrailSpec],
    per_route: Mapping[str, AttachedGuardrails | None],
    default: AttachedGuardrails | None,
    backends: Mapping[str, Backend],
    kept_models: Mapping[Path, ModerationModel],
    threads: int | None = None,
    shared_client: httpx.AsyncClient | None = None,
) -> Guardrails:
    """The checks the routes use, built once; a classifier's model is taken from ``kept_models``
    when loaded there (a previous snapshot's), else loaded: call it off the event loop."""
    used = {name for a in (*per_route.values(), default) if a is not None for name in (*a.input, *a.output)}
    models: dict[Path, ModerationModel] = {}
    for name in sorted(used):
        spec = defined[name]
        if isinstance(spec, ClassifierGuardrail):
            model_dir = model_dir_of(spec.model)
            models[model_dir] = (
                models.get(model_dir) or kept_models.get(model_dir) or ModerationModel(model_dir, threads)
            )
    client = None
    if any(isinstance(defined[name], WebhookGuardrail) for name in used):
        client = shared_client or httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
    checks = {name: build_check(name, defined[name], backends, models, client) for name in sorted(used)}
    routes = {
        route: guards
        for route, attached in per_route.items()
        if (guards := _route_guards(checks, default, attached)) is not None
    }
    owned_client = client if client is not shared_client else None
    return Guardrails(checks, routes, _route_guards(checks, default, None), models, owned_client)


def _route_guards(
    checks: Mapping[str, Check], default: AttachedGuardrails | None, own: AttachedGuardrails | None
) -> RouteGuards | None:
    parts = [a for a in (default, own) if a is not None]
    names_in = list(dict.fromkeys(n for a in parts for n in a.input))
    names_out = list(dict.fromkeys(n for a in parts for n in a.output))
    if not names_in and not names_out:
        return None
    inputs = [checks[n] for n in names_in]
    outputs = [checks[n] for n in names_out]
    fingerprint = json.dumps([[c.name, c.spec.model_dump(mode="json")] for c in outputs if c.spec.mode == "sync"])
    return RouteGuards(
        input=tuple(c for c in inputs if c.spec.mode == "sync" and c.spec.applies_to == "all"),
        external=tuple(c for c in inputs if c.spec.mode == "sync" and c.spec.applies_to == "external"),
        output=tuple(c for c in outputs if c.spec.mode == "sync"),
        later_input=tuple(c for c in inputs if c.spec.mode == "async"),
        later_output=tuple(c for c in outputs if c.spec.mode == "async"),
        holdback_chars=(own or default or AttachedGuardrails()).holdback_chars,
        output_version=hashlib.sha256(fingerprint.encode()).hexdigest()[:16],
    )


Observe = Callable[[Result], None]


async def verdicts(checks: Sequence[Check], text: str, asked: Asked) -> list[Verdict | CheckFailed]:
    """Each check's verdict on ``text``, run concurrently; a failure is returned, not raised."""
    one = _inspected if asked.tracing is None else _traced
    if len(checks) == 1:
        return [await one(checks[0], text, asked)]
    return list(await asyncio.gather(*(one(c, text, asked) for c in checks)))


async def _inspected(check: Check, text: str, asked: Asked) -> Verdict | CheckFailed:
    try:
        return await check.inspect(text, asked)
    except CheckFailed as exc:
        return exc
    except Exception as exc:  # a check's own bug must not take the request down: it is an error
        log.exception("guardrail %s failed", check.name)
        return CheckFailed(type(exc).__name__)


async def _traced(check: Check, text: str, asked: Asked) -> Verdict | CheckFailed:
    """One check inside its ``apply_guardrail`` span (OpenTelemetry's GenAI conventions)."""
    assert asked.tracing is not None
    attributes = {
        "gen_ai.operation.name": "apply_guardrail",
        "gen_ai.guardrail.name": check.name,
        "turnout.guardrail.kind": check.spec.kind,
        "turnout.guardrail.stage": asked.stage,
    }
    with asked.tracing.child(f"apply_guardrail {check.name}", attributes) as span:
        outcome = await _inspected(check, text, asked)
        result = judged(check, outcome, asked.stage).result
        span.set({"turnout.guardrail.result": result, "gen_ai.guardrail.decision": result})
        return outcome


def judged(check: Check, outcome: Verdict | CheckFailed, stage: Stage) -> Result:
    """A verdict read through the check's action (and ``on_error`` for a failure)."""
    spec = check.spec
    if isinstance(outcome, CheckFailed):
        if spec.on_error == "block":
            return Result(
                check.name,
                stage,
                "block" if stage == "input" or spec.action != "fallback" else "fallback",
                f"error: {outcome}",
            )
        return Result(check.name, stage, "error", str(outcome))
    if not outcome.fired:
        return Result(check.name, stage, "pass")
    if spec.action == "redact" and outcome.text is None:
        return Result(check.name, stage, "flag", outcome.detail)  # said it fired, but gave nothing to rewrite
    return Result(check.name, stage, spec.action, outcome.detail)
