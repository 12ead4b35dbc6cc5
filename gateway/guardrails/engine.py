"""One rules snapshot's guardrails: the checks built once, and what each route runs.

A route runs the default guardrails and its own (``default_guardrails`` first). On input, the
checks that apply to every backend run before the cache and the backends see the request: a
``block`` refuses it (400 ``content_blocked``), a ``redact`` rewrites the messages, a ``flag`` is
only said. Those with ``applies_to: external`` make a second, redacted request, which only attempts
on external backends are sent. On output, the checks run on each backend's answer inside its
attempt, so ``fallback`` moves on to the next backend as a failure would; ``block`` withholds the
answer (``finish_reason: content_filter``). Checks of one stage run concurrently; one that cannot
answer follows its ``on_error``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backends.base import Backend
from contracts.errors import AnswerRejected, ContentBlocked, ExternalRedactionFailed
from contracts.wire import ChatCompletion, ChatCompletionRequest, ChatMessage, text_of
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
from gateway.observe.tracing import Tracing
from routers.moderation import ModerationModel, model_dir_of

log = logging.getLogger("turnout")
WITHHELD = "The answer was withheld by a content guardrail."
"""Not sent to anyone: the withheld answer's text is empty; this is the refusal Messages and
Responses clients are given in its place."""


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

    @property
    def is_empty(self) -> bool:
        return not self._routes and self._default is None

    def for_route(self, route: str) -> RouteGuards | None:
        return self._routes.get(route, self._default)

    def attached(self) -> dict[str, dict[str, list[str]]]:
        """Route to ``{"input": [...], "output": [...]}`` for the console."""
        return {
            route: {"input": [c.name for c in (*g.input, *g.external)], "output": [c.name for c in g.output]}
            for route, g in self._routes.items()
        }


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
Vet = Callable[[str, ChatCompletion], Awaitable[ChatCompletion]]


class ExternalCopy:
    """The request as external backends are sent it: redacted by the ``applies_to: external``
    checks the first time an attempt goes to one (never when none does), then kept."""

    def __init__(self, redact: Callable[[], Awaitable[ChatCompletionRequest | None]]) -> None:
        self._redact = redact
        self._made: asyncio.Task[ChatCompletionRequest | None] | None = None

    async def get(self, request: ChatCompletionRequest) -> ChatCompletionRequest:
        if self._made is None:  # hedged attempts share one redaction
            self._made = asyncio.ensure_future(self._redact())
        try:
            return await asyncio.shield(self._made) or request
        except ContentBlocked as blocked:
            raise ExternalRedactionFailed(f"not sent to an external backend: {blocked.message}") from None


@dataclass(frozen=True)
class Screening:
    """One request's guardrails past its input stage: the redacted copy external backends are
    sent, the check of each backend's answer (run inside its attempt), and where results go."""

    external_copy: ExternalCopy | None = None
    externals: frozenset[str] = frozenset()
    vet: Vet | None = None
    guards: RouteGuards | None = None
    ledger: Ledger | None = None
    asked: Asked | None = None
    """The output stage's question."""
    observe: Observe | None = None

    async def request_for(self, backend: str, request: ChatCompletionRequest) -> ChatCompletionRequest:
        if self.external_copy is not None and backend in self.externals:
            return await self.external_copy.get(request)
        return request


UNSCREENED = Screening()


async def verdicts(checks: Sequence[Check], text: str, asked: Asked) -> list[Verdict | CheckFailed]:
    """Each check's verdict on ``text``, run concurrently; a failure is returned, not raised."""

    async def one(check: Check) -> Verdict | CheckFailed:
        if asked.tracing is not None:
            return await _traced(check, text, asked, asked.tracing)
        try:
            return await check.inspect(text, asked)
        except CheckFailed as exc:
            return exc
        except Exception as exc:  # a check's own bug must not take the request down: it is an error
            log.exception("guardrail %s failed", check.name)
            return CheckFailed(type(exc).__name__)

    if len(checks) == 1:
        return [await one(checks[0])]
    return list(await asyncio.gather(*(one(c) for c in checks)))


async def _traced(check: Check, text: str, asked: Asked, tracing: Tracing) -> Verdict | CheckFailed:
    """One check inside its ``apply_guardrail`` span (OpenTelemetry's GenAI conventions)."""
    attributes = {
        "gen_ai.operation.name": "apply_guardrail",
        "gen_ai.guardrail.name": check.name,
        "turnout.guardrail.kind": check.spec.kind,
        "turnout.guardrail.stage": asked.stage,
    }
    with tracing.child(f"apply_guardrail {check.name}", attributes) as span:
        try:
            outcome: Verdict | CheckFailed = await check.inspect(text, asked)
        except CheckFailed as exc:
            outcome = exc
        except Exception as exc:
            log.exception("guardrail %s failed", check.name)
            outcome = CheckFailed(type(exc).__name__)
        result = judged(check, outcome, asked.stage)
        span.set({"turnout.guardrail.result": result.result, "gen_ai.guardrail.decision": result.result})
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


async def check_request(
    guards: RouteGuards, request: ChatCompletionRequest, asked: Asked, ledger: Ledger, observe: Observe
) -> ChatCompletionRequest:
    """The request the cache and every backend see (redacted where a check says), or ContentBlocked."""
    return await _checked_request(guards.input, request, asked, ledger, observe)


async def external_request(
    guards: RouteGuards, request: ChatCompletionRequest, asked: Asked, ledger: Ledger, observe: Observe
) -> ChatCompletionRequest | None:
    """The request as external backends may see it, when any check there rewrote it."""
    if not guards.external:
        return None
    redacted = await _checked_request(guards.external, request, asked, ledger, observe)
    return redacted if redacted is not request else None


async def _checked_request(
    checks: Sequence[Check], request: ChatCompletionRequest, asked: Asked, ledger: Ledger, observe: Observe
) -> ChatCompletionRequest:
    if not checks:
        return request
    rewriting = [c for c in checks if c.spec.action == "redact" and c.rewrites]
    judging = [c for c in checks if c not in rewriting]
    if judging:
        text = "\n\n".join(t for m in request.messages if (t := text_of(m.content)))
        for check, outcome in zip(judging, await verdicts(judging, text, asked), strict=True):
            _record(judged(check, outcome, "input"), ledger, observe)
        blocked = next((r for r in ledger.results if r.stage == "input" and r.result == "block"), None)
        if blocked is not None:
            raise ContentBlocked(
                f"the request was blocked by the input guardrail {blocked.guardrail!r}", param="messages"
            )
    for check in rewriting:  # in order: each reads what the one before wrote
        request = await _rewritten(check, request, asked, ledger, observe)
    return request


async def _rewritten(
    check: Check, request: ChatCompletionRequest, asked: Asked, ledger: Ledger, observe: Observe
) -> ChatCompletionRequest:
    """The request with each message's text put through the check (a webhook: the last user message)."""
    indices = [i for i, m in enumerate(request.messages) if text_of(m.content)]
    if isinstance(check, WebhookCheck):
        indices = [i for i in indices if request.messages[i].role == "user"][-1:]
    texts = [text_of(request.messages[i].content) for i in indices]
    outcomes = [await verdicts([check], t, asked) for t in texts]  # patterns and PII run in place: no task each
    rewritten: dict[int, str] = {}
    details: list[str] = []
    failure: CheckFailed | None = None
    for index, (outcome,) in zip(indices, outcomes, strict=True):
        if isinstance(outcome, CheckFailed):
            failure = outcome
        elif outcome.fired and outcome.text is not None:
            rewritten[index] = outcome.text
            details.append(outcome.detail)
    if failure is not None:
        result = judged(check, failure, "input")
    elif rewritten:
        result = Result(check.name, "input", "redact", ",".join(sorted(set(",".join(details).split(",")))))
    else:
        result = Result(check.name, "input", "pass")
    _record(result, ledger, observe)
    if result.result == "block":
        raise ContentBlocked(f"the request was blocked by the input guardrail {check.name!r}", param="messages")
    if not rewritten:
        return request
    messages = [_with_text(m, rewritten[i]) if i in rewritten else m for i, m in enumerate(request.messages)]
    return request.model_copy(update={"messages": messages})


def _with_text(message: ChatMessage, text: str) -> ChatMessage:
    """The message with its text replaced: a string as a string; parts as one text part in place of
    the text parts (images and files stay)."""
    if isinstance(message.content, str) or message.content is None:
        return message.model_copy(update={"content": text})
    others = [p for p in message.content if p.type != "text"]
    first = next(p for p in message.content if p.type == "text")
    return message.model_copy(update={"content": [first.model_copy(update={"text": text}), *others]})


def answer_texts(completion: ChatCompletion) -> list[str]:
    return [str(((c.model_extra or {}).get("message") or {}).get("content") or "") for c in completion.choices]


async def check_answer(
    guards: RouteGuards, backend: str, completion: ChatCompletion, asked: Asked, ledger: Ledger, observe: Observe
) -> ChatCompletion:
    """The answer as the client may see it: as it came, redacted, or withheld (``content_filter``);
    raises AnswerRejected when a ``fallback`` check fired."""
    if not guards.output:
        return completion
    rewritten: list[str] = []
    for text in answer_texts(completion):
        if not text:  # a tool call alone: output checks read text, not tool arguments
            rewritten.append(text)
            continue
        text, verdict = await _checked_text(guards.output, text, asked, ledger, observe)
        if verdict is not None:
            if verdict.result == "fallback":
                raise AnswerRejected(
                    f"backend {backend!r}: the answer failed the output guardrail {verdict.guardrail!r}",
                    guardrail=verdict.guardrail,
                    backend=backend,
                    answer=completion,
                )
            ledger.withheld_by = verdict.guardrail
            return withheld(completion)
        rewritten.append(text)
    if rewritten == answer_texts(completion):
        return completion
    return _with_answer_texts(completion, rewritten)


async def _checked_text(
    checks: Sequence[Check], text: str, asked: Asked, ledger: Ledger, observe: Observe
) -> tuple[str, Result | None]:
    """The text after the checks' redactions, and the result that stops it (block or fallback), if any."""
    outcomes = await verdicts(checks, text, asked)
    for check, outcome in zip(checks, outcomes, strict=True):
        result = judged(check, outcome, "output")
        _record(result, ledger, observe)
        if result.result in ("block", "fallback"):
            return text, result
    original = text
    for check, outcome in zip(checks, outcomes, strict=True):  # redactions in order, each over the last's text
        if not (isinstance(outcome, Verdict) and outcome.fired and outcome.text is not None):
            continue
        if text != original:  # an earlier redaction changed the text: this check reads the new one
            (outcome,) = await verdicts([check], text, asked)
        if isinstance(outcome, Verdict) and outcome.fired and outcome.text is not None:
            text = outcome.text
    return text, None


def withheld(completion: ChatCompletion) -> ChatCompletion:
    """The answer with every choice's text removed and ``finish_reason: content_filter``; usage kept."""
    choices = []
    for choice in completion.choices:
        message = {"role": "assistant", "content": ""}
        choices.append({"index": choice.index, "message": message, "finish_reason": "content_filter"})
    return completion.model_copy(update={"choices": [type(completion.choices[0]).model_validate(c) for c in choices]})


def _with_answer_texts(completion: ChatCompletion, texts: list[str]) -> ChatCompletion:
    choices = []
    for choice, text in zip(completion.choices, texts, strict=True):
        message = dict((choice.model_extra or {}).get("message") or {})
        message["content"] = text
        choices.append(choice.model_copy(update={"message": message}))
    return completion.model_copy(update={"choices": choices})


def _record(result: Result, ledger: Ledger, observe: Observe) -> None:
    ledger.results.append(result)
    observe(result)


async def run_later(
    guards: RouteGuards, asked_text: str, answer_text: str | None, asked: Asked, observe: Observe
) -> None:
    """The ``mode: async`` checks of a served request, once its answer is sent: they only flag."""
    for stage, checks, text in (
        ("input", guards.later_input, asked_text),
        ("output", guards.later_output, answer_text),
    ):
        if not checks or text is None:
            continue
        staged = Asked(stage, asked.route, asked.tenant)  # type: ignore[arg-type]
        for check, outcome in zip(checks, await verdicts(checks, text, staged), strict=True):
            observe(judged(check, outcome, staged.stage))
