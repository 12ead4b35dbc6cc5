"""The guardrails' stages on one request.

On input, the checks that apply to every backend run before the cache and the backends see the
request: a ``block`` refuses it (400 ``content_blocked``), a ``redact`` rewrites the messages, a
``flag`` is only said. Those with ``applies_to: external`` make a redacted copy, which only attempts
on external backends are sent. On output, the checks run on each backend's answer inside its
attempt, so ``fallback`` moves on to the next backend as a failure would; ``block`` withholds the
answer (``finish_reason: content_filter``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from contracts.errors import AnswerRejected, ContentBlocked, ExternalRedactionFailed
from contracts.wire import ChatCompletion, ChatCompletionRequest, ChatMessage, text_of
from gateway.guardrails.engine import Ledger, Observe, Result, RouteGuards, judged, verdicts
from gateway.guardrails.kinds import (
    IN_PLACE_CHARS,
    Asked,
    Check,
    CheckFailed,
    PatternCheck,
    PiiCheck,
    Verdict,
    WebhookCheck,
)

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
    outcomes: list[list[Verdict | CheckFailed]]
    if isinstance(check, PatternCheck | PiiCheck) and sum(map(len, texts)) >= IN_PLACE_CHARS:
        # many messages, or long ones: all read in one worker thread, so no body stalls the loop
        outcomes = [[v] for v in await asyncio.to_thread(lambda: [check.verdict(t) for t in texts])]
    else:
        outcomes = [await verdicts([check], t, asked) for t in texts]  # in place: no task each
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
