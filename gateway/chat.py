"""One chat completion through the gateway: route, cache, dispatch, answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import BudgetExceeded
from contracts.wire import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from gateway.auth import ANONYMOUS, Principal
from gateway.cache.response_cache import CacheEntry, CachePlan
from gateway.cache.semantic import MAX_TEXT_CHARS, Probe, semantic_space
from gateway.cache.single_flight import Flight
from gateway.disconnect import unless_disconnected
from gateway.outcome import request_outcome
from gateway.request_body import parse_body, read_body
from gateway.resilience.deadline import BUDGET_HEADER, Deadline
from gateway.resources import Resources
from gateway.rules import CachePolicy
from gateway.snapshot import RulesSnapshot
from gateway.sse import SseResponse
from gateway.stream_assembly import (
    StreamAssembler,
    as_the_caller_asked,
    asking_for_usage,
    asks_for_usage,
    replay_chunks,
)
from routers.decision import RouteDecision, RoutingContext

JSON = "application/json"
PINNED_POLICY = CachePolicy()


class ChatCall:
    def __init__(self, resources: Resources, snapshot: RulesSnapshot, request: Request) -> None:
        self.resources = resources
        self.snapshot = snapshot
        """The rules this request was given on arrival, to its end."""
        self.request = request
        self.outcome = request_outcome(request, "chat")
        self.probe: Probe | None = None
        self.principal: Principal = ANONYMOUS

    async def respond(self) -> Response:
        resources, request = self.resources, self.request
        self.principal = principal = self.snapshot.keyring.authenticate(request.headers)
        self.outcome.tenant = principal.tenant
        await resources.limits.admit(principal)
        chat = parse_body(ChatCompletionRequest, await read_body(request, resources.settings.max_body_bytes))
        # Only once the body is read: the watch reads the connection's next message.
        return await unless_disconnected(request, self._answer(chat))

    async def _answer(self, chat: ChatCompletionRequest) -> Response:
        resources, snapshot, request, principal = self.resources, self.snapshot, self.request, self.principal
        context = RoutingContext(principal.tenant, request.headers)
        decision = await snapshot.selector.select(chat.model, request.headers.get("x-turnout-route"), chat, context)
        resources.metrics.observe_decision(decision.route, decision.decided_by, decision.score)
        self.outcome.route, self.outcome.decided_by = decision.route, decision.decided_by
        resources.samples.add(self.outcome.request_id, principal.tenant, chat, request.headers)
        principal.require_route(decision.route)
        deadline = snapshot.deadline(decision.route, request.headers.get(BUDGET_HEADER), self.outcome.started)
        plan = self._plan(decision, chat, principal.tenant)
        if not plan.can_read:
            return await self._fetch(decision, chat, plan, None, deadline)
        async with resources.cache.flight(plan, deadline.remaining()) as flight:  # every way out settles it
            if flight.entry is not None:
                return self._hit(flight.entry, chat, decision)
            self.outcome.cache = "off" if flight.is_store_down else "miss"
            if not flight.is_store_down and (found := await self._semantic_lookup(plan, chat, decision)):
                await flight.share(found[0])
                return self._hit(found[0], chat, decision, similarity=found[1])
            response = await self._fetch(decision, chat, plan, flight, deadline)
            if chat.stream:
                flight.outlive_scope()  # the stream's end settles it, as late as that comes
            return response

    async def _fetch(
        self,
        decision: RouteDecision,
        chat: ChatCompletionRequest,
        plan: CachePlan,
        flight: Flight | None,
        deadline: Deadline,
    ) -> Response:
        if chat.stream:
            return await self._stream(decision, chat, plan, flight, deadline)
        self.outcome.backend, completion = await self.snapshot.dispatcher.complete(decision, chat, deadline)
        await self._store(plan, completion, flight)
        body = completion.__pydantic_serializer__.to_json(completion, exclude_unset=True)
        return Response(body, media_type=JSON, headers=self._headers(decision))

    def _plan(self, decision: RouteDecision, chat: ChatCompletionRequest, tenant: str) -> CachePlan:
        route = self.snapshot.rules.routes.get(decision.route)
        policy = route.cache if route is not None else PINNED_POLICY
        cache_control = self.request.headers.get("cache-control", "")
        primary = decision.backends[0]
        identity = self.snapshot.identities[primary]
        plan = self.resources.cache.plan(decision.route, policy, primary, identity, chat, tenant, cache_control)
        self.outcome.cache = "bypass"
        return plan

    async def _semantic_lookup(
        self, plan: CachePlan, chat: ChatCompletionRequest, decision: RouteDecision
    ) -> tuple[CacheEntry, float] | None:
        threshold = plan.policy.semantic_threshold
        text = chat.last_user_text()
        semantic = self.snapshot.semantic_cache
        if threshold is None or semantic is None or not text or len(text) > MAX_TEXT_CHARS:
            return None
        space = semantic_space(plan.namespace, decision.route, plan.identity, chat)
        self.probe = await semantic.probe(space, text)
        return await semantic.lookup(self.probe, threshold)

    def _hit(
        self, entry: CacheEntry, chat: ChatCompletionRequest, decision: RouteDecision, similarity: float | None = None
    ) -> Response:
        self.outcome.backend, self.outcome.cache = entry.backend, "hit"
        self.outcome.prompt_tokens, self.outcome.completion_tokens = entry.prompt_tokens, entry.completion_tokens
        self.outcome.cost_usd = entry.cost_usd
        self.resources.metrics.observe_cache(
            self.outcome.route, "hit", entry.prompt_tokens + entry.completion_tokens, entry.cost_usd
        )
        headers = self._headers(decision)
        if similarity is not None:
            headers["x-turnout-cache-similarity"] = f"{similarity:.4f}"
        if not chat.stream:
            return Response(entry.completion, media_type=JSON, headers=headers)
        chunks = replay_chunks(entry.answer(), asks_for_usage(chat))
        return SseResponse(chunks[0], _iterate(chunks[1:]), lambda status: None, self.snapshot.redactor.bytes, headers)

    async def _stream(
        self,
        decision: RouteDecision,
        chat: ChatCompletionRequest,
        plan: CachePlan,
        flight: Flight | None,
        deadline: Deadline,
    ) -> Response:
        self.outcome.backend, (first, rest) = await self.snapshot.dispatcher.open_stream(
            decision, asking_for_usage(chat), deadline
        )
        assembler = StreamAssembler()
        assembler.add(first)

        def finished(status: int) -> None:
            # A task of its own: a client that left cancels the stream's, not this cache write.
            finishing = asyncio.get_running_loop().create_task(self._finish_stream(plan, assembler, flight, status))
            self.outcome.stream_ended(status, finishing)

        asks_usage = asks_for_usage(chat)
        first = as_the_caller_asked(first, asks_usage) or first
        teed = _teed(rest, assembler, deadline, asks_usage)
        return SseResponse(first, teed, finished, self.snapshot.redactor.bytes, self._headers(decision))

    async def _finish_stream(
        self, plan: CachePlan, assembler: StreamAssembler, flight: Flight | None, status: int
    ) -> None:
        try:
            completion = assembler.completion() if status == 200 else None
            if completion is not None:
                await self._store(plan, completion, flight)
        finally:
            if flight is not None:
                await flight.aclose()  # settles whatever happened above

    async def _store(self, plan: CachePlan, completion: ChatCompletion, flight: Flight | None) -> None:
        self.resources.metrics.observe_cache(self.outcome.route, self.outcome.cache)
        usage = completion.usage
        prompt, generated = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        self.outcome.priced(self.snapshot, prompt, generated)
        await self.resources.limits.spend_tokens(self.principal, prompt + generated)
        if not plan.can_write and flight is None:
            return  # nothing to store and nobody waiting: skip serialising the answer
        entry = CacheEntry(
            completion=completion.__pydantic_serializer__.to_json(completion, exclude_unset=True).decode(),
            backend=self.outcome.backend,
            created=time.time(),
            prompt_tokens=prompt,
            completion_tokens=generated,
            cost_usd=self.outcome.cost_usd,
        )
        cache, tools = self.resources.cache, has_tool_calls(completion)
        stored = await (flight.land(entry, tools) if flight is not None else cache.store_answer(plan, entry, tools))
        semantic = self.snapshot.semantic_cache
        if stored and self.probe is not None and semantic is not None:
            await semantic.remember(self.probe, plan.key, plan.policy.ttl_s)

    def _headers(self, decision: RouteDecision) -> dict[str, str]:
        return {**route_headers(decision, self.outcome.backend), "x-turnout-cache": self.outcome.cache}


def route_headers(decision: RouteDecision, backend: str) -> dict[str, str]:
    """What every routed answer says about its routing."""
    headers = {"x-turnout-route": decision.route, "x-turnout-backend": backend}
    if decision.score is not None:
        headers["x-turnout-router-score"] = f"{decision.score:.4f}"
    return headers


def has_tool_calls(completion: ChatCompletion) -> bool:
    return any(
        c.finish_reason == "tool_calls" or ((c.model_extra or {}).get("message") or {}).get("tool_calls")
        for c in completion.choices
    )


async def _teed(
    chunks: AsyncIterator[ChatCompletionChunk], assembler: StreamAssembler, deadline: Deadline, asks_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """The rest of the stream, recorded for the cache (usage included), each chunk awaited no longer
    than the budget allows, shown as the caller asked."""
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
            if (shown := as_the_caller_asked(chunk, asks_usage)) is not None:
                yield shown
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _iterate(chunks: list[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    for chunk in chunks:
        yield chunk
