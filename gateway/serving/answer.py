"""The path's last stages: dispatch to the route's backends, or replay a cache entry, and encode
the answer in the API that asked. A fresh answer is settled once (priced, its tokens spent against
the caller's limits, cached, kept by the API), for a stream when its last chunk is in."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import AnswerRejected, BudgetExceeded
from contracts.wire import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from gateway.auth import Principal
from gateway.cache.response_cache import CacheEntry, CachePlan
from gateway.cache.semantic import Probe
from gateway.cache.single_flight import Flight
from gateway.guardrails.stages import UNSCREENED, Screening, check_answer, withheld
from gateway.guardrails.stream import Reopen, guarded
from gateway.observe.tracing import Tracing, captured
from gateway.resilience.deadline import Deadline
from gateway.resources import Resources
from gateway.rollouts.agreement import answer_text
from gateway.rollouts.shadow import ShadowCase
from gateway.serving.call import Call, Encoder
from gateway.serving.outcome import RequestOutcome, Tokens
from gateway.serving.screen import check_later
from gateway.serving.sse import SseResponse
from gateway.serving.stream_assembly import StreamAssembler, asking_for_usage, replay_chunks
from gateway.snapshot import RulesSnapshot
from routers.decision import RouteDecision

JSON = "application/json"
GUARDRAILS_HEADER = "x-turnout-guardrails"


@dataclass(frozen=True)
class Arrival:
    """What a request arrived with: the process, the rules it was given, itself and its outcome."""

    resources: Resources
    snapshot: RulesSnapshot
    """The rules this request was given on arrival, to its end."""
    request: Request
    outcome: RequestOutcome


@dataclass(frozen=True)
class Filling:
    """Where a fresh answer goes once it is whole: the caller's token spend, the cache, and the
    identical requests waiting on its flight."""

    principal: Principal
    plan: CachePlan
    flight: Flight | None = None
    probe: Probe | None = None
    screening: Screening = UNSCREENED
    """The request's guardrails: a withheld answer is never cached; a cached one says what checked it."""


async def from_backend(
    arrival: Arrival, filling: Filling, decision: RouteDecision, call: Call, encoder: Encoder, deadline: Deadline
) -> Response:
    dispatcher = arrival.snapshot.dispatcher
    if call.stream:
        return await _streamed(arrival, filling, decision, call, encoder, deadline)
    screening = filling.screening
    try:
        arrival.outcome.backend, completion = await dispatcher.complete(decision, call.chat, deadline, screening)
    except AnswerRejected as rejected:  # every backend's answer failed a fallback guardrail
        assert screening.ledger is not None
        screening.ledger.withheld_by = rejected.guardrail
        arrival.outcome.backend, completion = rejected.backend, withheld(rejected.answer)  # type: ignore[arg-type]
    await settle(arrival, filling, completion, call.chat)
    response = Response(encoder.whole(completion), media_type=JSON, headers=answer_headers(arrival, decision))
    await encoder.keep(completion)
    check_later(arrival.snapshot.guardrails.later, screening, call.chat, completion)
    return response


async def replayed(
    arrival: Arrival,
    entry: CacheEntry,
    similarity: float | None,
    decision: RouteDecision,
    call: Call,
    encoder: Encoder,
    screening: Screening = UNSCREENED,
) -> Response:
    """A cached answer, in whichever API asked: JSON, or replayed as a stream. An answer checked by
    other output guardrails than the route's now is checked again (a failure withholds it)."""
    outcome = arrival.outcome
    outcome.backend, outcome.cache = entry.backend, "hit"
    outcome.tokens = Tokens(entry.prompt_tokens, entry.completion_tokens, entry.cost_usd)
    arrival.resources.metrics.observe_cache(
        decision.route, "hit", entry.prompt_tokens + entry.completion_tokens, entry.cost_usd
    )
    headers = answer_headers(arrival, decision)
    if similarity is not None:
        headers["x-turnout-cache-similarity"] = f"{similarity:.4f}"
    completion = entry.answer()
    guards = screening.guards
    if guards is not None and guards.output and entry.guardrails != guards.output_version:
        completion = await rechecked(screening, entry.backend, completion)
    if not call.stream:
        response = Response(encoder.whole(completion), media_type=JSON, headers=headers)
        await encoder.keep(completion)
        return response

    def ended(status: int) -> None:
        if status == 200:
            finishing = asyncio.get_running_loop().create_task(encoder.keep(completion))
            outcome.stream_ended(status, finishing)

    chunks = replay_chunks(completion)
    redact = arrival.snapshot.redactor.bytes
    return SseResponse(chunks[0], _iterate(chunks[1:]), ended, redact, encoder.stream(), headers)


async def rechecked(screening: Screening, backend: str, completion: ChatCompletion) -> ChatCompletion:
    assert screening.vet is not None or screening.guards is not None
    guards, asked, ledger, observe = screening.guards, screening.asked, screening.ledger, screening.observe
    assert guards is not None
    assert asked is not None
    assert ledger is not None
    assert observe is not None
    try:
        return await check_answer(guards, backend, completion, asked, ledger, observe)
    except AnswerRejected as rejected:
        ledger.withheld_by = rejected.guardrail
        return withheld(completion)


async def _streamed(
    arrival: Arrival, filling: Filling, decision: RouteDecision, call: Call, encoder: Encoder, deadline: Deadline
) -> Response:
    dispatcher = arrival.snapshot.dispatcher
    screening = filling.screening
    arrival.outcome.backend, (first, rest) = await dispatcher.open_stream(
        decision, asking_for_usage(call.chat), deadline, screening
    )
    arrival.outcome.first_chunk_s = time.monotonic() - arrival.outcome.started
    if arrival.resources.tracing.is_on:
        ms = round(arrival.outcome.first_chunk_s * 1000, 1)
        arrival.resources.tracing.current_event("gen_ai.first_chunk", {"turnout.first_chunk_ms": ms})
    guards = screening.guards
    if guards is not None and guards.output:
        assert screening.asked is not None
        assert screening.ledger is not None
        assert screening.observe is not None
        reopen = _reopener(arrival, decision, call, deadline, screening)
        first, rest = guarded(first, rest, guards, screening.asked, screening.ledger, screening.observe, reopen)
    assembler = StreamAssembler()
    assembler.add(first)

    def finished(status: int) -> None:
        # A task of its own: a client that left cancels the stream's, not this cache write.
        finished_stream = _finish_stream(arrival, filling, assembler, call, encoder, status)
        finishing = asyncio.get_running_loop().create_task(finished_stream)
        arrival.outcome.stream_ended(status, finishing)

    teed = _teed(rest, assembler, deadline)
    redact = arrival.snapshot.redactor.bytes
    return SseResponse(first, teed, finished, redact, encoder.stream(), answer_headers(arrival, decision))


def _reopener(
    arrival: Arrival, decision: RouteDecision, call: Call, deadline: Deadline, screening: Screening
) -> Reopen:
    """How a stream whose answer failed a ``fallback`` check asks the route's backends after the one
    that gave it, within the same deadline."""

    async def reopen() -> tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]] | None:
        after = decision.backends[decision.backends.index(arrival.outcome.backend) + 1 :]
        if not after:
            return None
        later = dataclasses.replace(decision, backends=after)
        request = asking_for_usage(call.chat)
        arrival.outcome.backend, opened = await arrival.snapshot.dispatcher.open_stream(
            later, request, deadline, screening
        )
        return opened

    return reopen


async def _finish_stream(
    arrival: Arrival, filling: Filling, assembler: StreamAssembler, call: Call, encoder: Encoder, status: int
) -> None:
    try:
        completion = assembler.completion() if status == 200 else None
        if completion is not None:
            await settle(arrival, filling, completion, call.chat)
            await encoder.keep(completion)
            check_later(arrival.snapshot.guardrails.later, filling.screening, call.chat, completion)
    finally:
        if filling.flight is not None:
            await filling.flight.aclose()  # settles whatever happened above


async def settle(arrival: Arrival, filling: Filling, completion: ChatCompletion, asked: ChatCompletionRequest) -> None:
    """Price a fresh answer, spend its tokens against the caller's limits, draw it for the route's
    shadow, and cache it (landing it for the flight's waiters) when the policy allows."""
    resources, outcome, plan, flight = arrival.resources, arrival.outcome, filling.plan, filling.flight
    resources.metrics.observe_cache(outcome.route, outcome.cache)
    usage = completion.usage
    prompt, generated = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    outcome.tokens = tokens = Tokens(prompt, generated, arrival.snapshot.price(outcome.backend, prompt, generated))
    outcome.shadow = shadow_case(arrival, asked, completion)
    if resources.tracing.captures_content:
        record_content(resources.tracing, asked, completion, arrival.snapshot.redactor.text)
    await resources.limits.spend_tokens(filling.principal, prompt + generated)
    ledger, guards = filling.screening.ledger, filling.screening.guards
    if ledger is not None and ledger.withheld_by is not None:
        return  # a withheld answer is never cached; the flight's waiters ask for themselves
    if not plan.can_write and flight is None:
        return  # nothing to store and nobody waiting: skip serialising the answer
    entry = CacheEntry(
        completion=completion.__pydantic_serializer__.to_json(completion, exclude_unset=True).decode(),
        backend=outcome.backend,
        created=time.time(),
        prompt_tokens=prompt,
        completion_tokens=generated,
        cost_usd=tokens.cost_usd,
        guardrails=guards.output_version if guards is not None and guards.output else None,
    )
    tools = has_tool_calls(completion)
    landing = flight.land(entry, tools) if flight is not None else resources.cache.store_answer(plan, entry, tools)
    stored = await landing
    semantic = arrival.snapshot.semantic_cache
    if stored and filling.probe is not None and semantic is not None:
        await semantic.remember(filling.probe, plan.key, plan.policy.ttl_s)


def record_content(
    tracing: Tracing, asked: ChatCompletionRequest, completion: ChatCompletion, redact: Callable[[str], str]
) -> None:
    """The prompt and the answer on the request's span (only with TURNOUT_OTEL_CAPTURE_CONTENT), redacted."""
    tracing.current_event(
        "gen_ai.content",
        {
            "gen_ai.input.messages": captured(tracing, asked.conversation_text(), redact),
            "gen_ai.output.messages": captured(tracing, answer_text(completion), redact),
        },
    )


def shadow_case(arrival: Arrival, asked: ChatCompletionRequest, completion: ChatCompletion) -> ShadowCase | None:
    """The request to ask again of its route's shadow, when the route has one and the draw picks it."""
    outcome = arrival.outcome
    route = arrival.snapshot.rules.routes.get(outcome.route)
    spec = route.shadow if route is not None else None
    if spec is None or random.random() >= spec.sample:
        return None
    shadow = arrival.snapshot.rules.backends[spec.backend]
    return ShadowCase(
        route=outcome.route,
        tenant=outcome.tenant,
        endpoint=outcome.endpoint,
        primary=outcome.backend,
        request=asked.model_copy(update={"stream": False, "stream_options": None}),
        answer=answer_text(completion),
        primary_usd=outcome.tokens.cost_usd,
        spec=spec,
        upstream=arrival.snapshot.upstreams[spec.backend],
        input_per_mtok=shadow.price.input_per_mtok,
        output_per_mtok=shadow.price.output_per_mtok,
    )


def answer_headers(arrival: Arrival, decision: RouteDecision) -> dict[str, str]:
    headers = {**route_headers(decision, arrival.outcome.backend), "x-turnout-cache": arrival.outcome.cache}
    ledger = arrival.outcome.guardrails
    fired = ledger.header() if ledger is not None else None
    if fired is not None:
        headers[GUARDRAILS_HEADER] = fired  # names and results, never what matched
    return headers


def route_headers(decision: RouteDecision, backend: str) -> dict[str, str]:
    """What every routed answer says about its routing."""
    headers = {"x-turnout-route": decision.route, "x-turnout-backend": backend}
    if decision.variant is not None:
        headers["x-turnout-variant"] = decision.variant
    if decision.score is not None:
        headers["x-turnout-router-score"] = f"{decision.score:.4f}"
    return headers


def has_tool_calls(completion: ChatCompletion) -> bool:
    return any(
        c.finish_reason == "tool_calls" or ((c.model_extra or {}).get("message") or {}).get("tool_calls")
        for c in completion.choices
    )


async def _teed(
    chunks: AsyncIterator[ChatCompletionChunk], assembler: StreamAssembler, deadline: Deadline
) -> AsyncIterator[ChatCompletionChunk]:
    """The rest of the stream, recorded for the cache (usage included), each chunk awaited no longer
    than the budget allows."""
    try:
        while True:
            try:
                async with asyncio.timeout(deadline.remaining()):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise BudgetExceeded(
                    f"the {deadline.budget_ms} ms latency budget ran out mid-stream after {deadline.elapsed_ms()} ms"
                ) from None
            assembler.add(chunk)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _iterate(chunks: list[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    for chunk in chunks:
        yield chunk
