"""Output guardrails on a stream: the text is checked as it grows, and the last ``holdback_chars``
are kept from the client until the checks have passed over them, so a span that fails a check
(up to that long) never reaches the client. On failure the stream ends with
``finish_reason: content_filter`` (each API writes that its own way); a ``fallback`` that fails
before any text was sent asks the route's next backends instead, and their stream continues the
client's. Redactions are made on the held text before it is released, and a redacted span is never
cut in two.

Patterns, PII and classifiers check the held text every :data:`STEP_CHARS` new characters; a judge
or a webhook reads a whole answer, so with one of them the whole stream is held until it ends.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from contracts.errors import BackendError
from contracts.wire import ChatCompletionChunk
from gateway.guardrails.engine import Ledger, Observe, Result, RouteGuards, judged, verdicts
from gateway.guardrails.kinds import (
    Asked,
    JudgeCheck,
    Verdict,
    WebhookCheck,
)
from gateway.guardrails.pii import replaced

STEP_CHARS = 64
"""New text between two checks of what is held."""


def _delta(chunk: ChatCompletionChunk) -> dict[str, object]:
    if not chunk.choices:
        return {}
    delta = (chunk.choices[0].model_extra or {}).get("delta")
    return delta if isinstance(delta, dict) else {}


def _text(chunk: ChatCompletionChunk) -> str:
    content = _delta(chunk).get("content")
    return content if isinstance(content, str) else ""


class Holdback:
    """One stream's held text and the checks it has passed."""

    def __init__(self, guards: RouteGuards, asked: Asked, ledger: Ledger, observe: Observe) -> None:
        self._guards, self._asked, self._ledger, self._observe = guards, asked, ledger, observe
        self._held = ""
        self._released: list[str] = []
        self._unchecked = 0
        self._template: ChatCompletionChunk | None = None
        self._reported: dict[str, Result] = {}
        self.stopped: Result | None = None
        """The check that stopped the stream (block or fallback): what is held is never sent."""
        self._holdback = math.inf if guards.holds_whole_stream else guards.holdback_chars
        self._growing = [c for c in guards.output if not isinstance(c, JudgeCheck | WebhookCheck)]

    def opening(self, first: ChatCompletionChunk) -> ChatCompletionChunk:
        """The first chunk as the client may see it at once: its role, none of its text."""
        self._template = first
        if not first.choices:
            return first
        delta = {k: v for k, v in _delta(first).items() if k != "content"}
        choice = first.choices[0].model_copy(update={"delta": delta, "finish_reason": None})
        return first.model_copy(update={"choices": [choice, *first.choices[1:]]})

    async def take(self, chunk: ChatCompletionChunk, is_first: bool = False) -> list[ChatCompletionChunk]:
        """What may go to the client now that ``chunk`` came."""
        text = _text(chunk)
        self._held += text
        self._unchecked += len(text)
        finished = any(c.finish_reason for c in chunk.choices)
        other = {k for k in _delta(chunk) if k not in ("content", "role")}
        if finished or other:
            out = await self._check(final=finished, flush=True)
            if self.stopped:
                return out
            rest = self._without_text(chunk)
            return out if is_first and not finished and not other else [*out, rest]
        if text and self._unchecked >= STEP_CHARS and len(self._held) > self._holdback:
            return await self._check()
        return [] if is_first or text else [chunk]

    @property
    def may_fall_back(self) -> bool:
        """A ``fallback`` stopped the stream before any of its text was sent: another backend may answer."""
        return self.stopped is not None and self.stopped.result == "fallback" and not self._released

    def restart(self) -> None:
        """Forget the stopped answer, to check the next backend's from its start."""
        self._held, self._released, self._unchecked, self._reported, self.stopped = "", [], 0, {}, None

    def filtered(self) -> ChatCompletionChunk:
        """The end of a withheld answer: ``finish_reason: content_filter``."""
        assert self.stopped is not None
        self._ledger.withheld_by = self.stopped.guardrail
        return self._chunk(None, "content_filter")

    async def end(self) -> list[ChatCompletionChunk]:
        """The stream ended without a finish reason: check and release what is held."""
        if self.stopped or (not self._held and self._reported_all()):
            return []
        return await self._check(final=True, flush=True)

    def _reported_all(self) -> bool:
        return all(c.name in self._reported for c in self._guards.output)

    async def _check(self, final: bool = False, flush: bool = False) -> list[ChatCompletionChunk]:
        checks = self._guards.output if final else self._growing
        whole = "".join(self._released) + self._held
        results: list[Result] = []
        masks: list[tuple[int, int, str]] = []
        rewritten: str | None = None
        growing = [c for c in checks if c in self._growing]
        reading_whole = [c for c in checks if c not in self._growing]
        for group, text in ((growing, self._held), (reading_whole, whole)):
            if not group or not text:
                continue
            for check, outcome in zip(group, await verdicts(group, text, self._asked), strict=True):
                result = judged(check, outcome, "output")
                results.append(result)
                if result.result == "redact" and isinstance(outcome, Verdict):
                    masks += outcome.masks  # patterns and PII: where in the held text
                    if isinstance(check, WebhookCheck):
                        rewritten = outcome.text  # a whole-stream check: nothing of the answer is released yet
        for result in results:
            if result.result != "pass":
                self._report(result)
        stop = next((r for r in results if r.result in ("block", "fallback")), None)
        if stop is not None:
            self.stopped = stop
            return []
        if final:
            for check in self._guards.output:  # a check that never saw text passed
                if check.name not in self._reported:
                    self._report(Result(check.name, "output", "pass"))
        if rewritten is not None and not self._released:
            self._held, masks = rewritten, []  # the webhook's text replaces what the masks were found in
        return self._release(flush, _merged(masks))

    def _report(self, result: Result) -> None:
        """Each check's result once per stream: its first firing, else its pass at the end."""
        if result.guardrail in self._reported:
            return
        self._reported[result.guardrail] = result
        self._ledger.results.append(result)
        self._observe(result)

    def _release(self, flush: bool, spans: list[tuple[int, int, str]]) -> list[ChatCompletionChunk]:
        """Send what is held but the last ``holdback_chars`` (all of it with ``flush``), with the
        redactions ``spans`` found in it made, never cutting one in two."""
        held = self._held
        cut = len(held) if flush else max(0, len(held) - int(min(self._holdback, len(held))))
        for start, end, _ in spans:
            if start < cut < end:
                cut = start
        released = replaced(held[:cut], [s for s in spans if s[1] <= cut])
        self._held, self._unchecked = held[cut:], 0
        if not released:
            return []
        self._released.append(released)
        return [self._chunk(released, None)]

    def _chunk(self, text: str | None, finish_reason: str | None) -> ChatCompletionChunk:
        template = self._template
        assert template is not None
        delta = {"content": text} if text is not None else {}
        return ChatCompletionChunk.model_validate(
            {
                "id": template.id,
                "object": template.object,
                "created": template.created,
                "model": template.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
        )

    def _without_text(self, chunk: ChatCompletionChunk) -> ChatCompletionChunk:
        if not chunk.choices or not _text(chunk):
            return chunk
        delta = {k: v for k, v in _delta(chunk).items() if k != "content"}
        return chunk.model_copy(
            update={"choices": [chunk.choices[0].model_copy(update={"delta": delta}), *chunk.choices[1:]]}
        )


def _merged(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Redactions of several checks in order, a span overlapping an earlier one dropped."""
    kept: list[tuple[int, int, str]] = []
    for span in sorted(spans):
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


Reopen = Callable[[], Awaitable[tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]] | None]]
"""The route's next backends asked for the same stream (``None``: none is left)."""


def guarded(
    first: ChatCompletionChunk,
    rest: AsyncIterator[ChatCompletionChunk],
    guards: RouteGuards,
    asked: Asked,
    ledger: Ledger,
    observe: Observe,
    reopen: Reopen | None = None,
) -> tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]]:
    """The stream as the client may see it: the opening chunk at once, the rest as checks allow.
    When a ``fallback`` check stops it before any text was sent, ``reopen`` asks the next backends
    and their stream continues it; otherwise, or when none answers, it ends withheld."""
    holdback = Holdback(guards, asked, ledger, observe)
    opening = holdback.opening(first)
    source = _Source(first, rest)

    async def one_stream() -> AsyncIterator[ChatCompletionChunk]:
        for chunk in await holdback.take(source.first, is_first=True):
            yield chunk
        async for chunk in source.rest:
            if holdback.stopped:
                return
            for out in await holdback.take(chunk):
                yield out
        for out in await holdback.end():
            yield out

    async def released() -> AsyncIterator[ChatCompletionChunk]:
        try:
            while True:
                async for chunk in one_stream():
                    yield chunk
                if holdback.stopped is None:
                    return
                reopened = await _next_backend(holdback, reopen, source)
                if reopened is None:
                    yield holdback.filtered()
                    return
        finally:
            await source.rest.aclose()  # type: ignore[attr-defined]

    return opening, released()


@dataclass
class _Source:
    """The stream being read: the first backend's, or the one a fallback moved to."""

    first: ChatCompletionChunk
    rest: AsyncIterator[ChatCompletionChunk]


async def _next_backend(
    holdback: Holdback, reopen: Reopen | None, source: _Source
) -> tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]] | None:
    """The next backend's stream in place of the stopped one, when a fallback may and one answers."""
    if reopen is None or not holdback.may_fall_back:
        return None
    await source.rest.aclose()  # type: ignore[attr-defined]
    try:
        reopened = await reopen()
    except BackendError:
        return None
    if reopened is not None:
        holdback.restart()
        source.first, source.rest = reopened
    return reopened
