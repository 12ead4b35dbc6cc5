"""Sending a request down its route's backends: the entry points over :class:`BackendRace`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from backends.base import Backend
from contracts.errors import BackendBadResponse, BackendTimeout
from contracts.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.guardrails.stages import UNSCREENED, Screening
from gateway.observe.metrics import Metrics
from gateway.observe.tracing import OFF, Tracing
from gateway.resilience.deadline import Deadline
from gateway.resilience.race import PINNED_POLICY, Answer, BackendRace, Call, Discard, RoutePolicy, Traced
from gateway.resilience.upstreams import Upstream
from gateway.rules import Rules
from routers.decision import RouteDecision

FirstChunk = tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]]


class Dispatcher:
    def __init__(
        self, rules: Rules, upstreams: Mapping[str, Upstream], metrics: Metrics, tracing: Tracing = OFF
    ) -> None:
        self.upstreams = upstreams
        self._metrics = metrics
        self._tracing = tracing
        self._policies = {name: RoutePolicy.of(spec) for name, spec in rules.routes.items()}

    async def complete(
        self,
        decision: RouteDecision,
        request: ChatCompletionRequest,
        deadline: Deadline,
        screening: Screening = UNSCREENED,
    ) -> tuple[str, ChatCompletion]:
        traced: Traced[ChatCompletion] | None = (
            self._traced("chat", request, _described) if self._tracing.is_on else None
        )
        if screening is UNSCREENED:
            return await self._race(
                decision, deadline, lambda backend, timeout: backend.complete(request, timeout), traced=traced
            )
        vet = screening.vet

        async def screened(backend: Backend, timeout_s: float) -> ChatCompletion:
            sent = await screening.request_for(backend.name, request)
            answer = await backend.complete(sent, timeout_s)
            return answer if vet is None else await vet(backend.name, answer)

        return await self._race(decision, deadline, screened, traced=traced)

    async def embed(
        self, decision: RouteDecision, request: EmbeddingRequest, deadline: Deadline
    ) -> tuple[str, EmbeddingResponse]:
        traced: Traced[EmbeddingResponse] | None = (
            self._traced("embeddings", None, lambda answer: {}) if self._tracing.is_on else None
        )
        return await self._race(
            decision, deadline, lambda backend, timeout: backend.embed(request, timeout), traced=traced
        )

    async def open_stream(
        self,
        decision: RouteDecision,
        request: ChatCompletionRequest,
        deadline: Deadline,
        screening: Screening = UNSCREENED,
    ) -> tuple[str, FirstChunk]:
        """Start a stream and wait for its first chunk, so that a failure before it can still fall back."""

        async def first_chunk(backend: Backend, timeout_s: float) -> FirstChunk:
            # The attempt's time bounds the first chunk only; the gaps after it may be as long as the
            # backend's own timeout, within what is left of the whole budget (the caller sees to that).
            sent = await screening.request_for(backend.name, request)
            chunks = backend.stream(sent, self.upstreams[backend.name].timeout_s)
            try:
                async with asyncio.timeout(timeout_s):
                    return await anext(chunks), chunks
            except StopAsyncIteration:
                raise BackendBadResponse(f"backend {backend.name!r} sent an empty stream") from None
            except TimeoutError:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise BackendTimeout(
                    f"backend {backend.name!r}: no first chunk within {timeout_s * 1000:.0f} ms"
                ) from None
            except BaseException:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise

        async def close(answer: FirstChunk) -> None:
            await answer[1].aclose()  # type: ignore[attr-defined]

        traced: Traced[FirstChunk] | None = (
            self._traced("chat", request, lambda answer: _described(answer[0])) if self._tracing.is_on else None
        )
        return await self._race(decision, deadline, first_chunk, close, is_stream=True, traced=traced)

    async def _race(
        self,
        decision: RouteDecision,
        deadline: Deadline,
        call: Call[Answer],
        discard: Discard[Answer] | None = None,
        is_stream: bool = False,
        traced: Traced[Answer] | None = None,
    ) -> tuple[str, Answer]:
        policy = self._policies.get(decision.route, PINNED_POLICY)
        race: BackendRace[Answer] = BackendRace(
            self.upstreams, self._metrics, decision, deadline, policy, is_stream, traced
        )
        return await race.run(call, discard)

    def _traced(
        self, operation: str, request: ChatCompletionRequest | None, describe: Callable[[Answer], Mapping[str, object]]
    ) -> Traced[Answer]:
        asked: dict[str, object] = {"gen_ai.operation.name": operation}
        if request is not None:
            asked |= {
                "gen_ai.request.stream": request.stream,
                "gen_ai.request.max_tokens": request.max_tokens or request.max_completion_tokens,
                "gen_ai.request.temperature": request.temperature,
            }
        return Traced(self._tracing, operation, asked, describe)


def _described(answer: ChatCompletion | ChatCompletionChunk) -> dict[str, object]:
    """``gen_ai.response.*`` and ``gen_ai.usage.*`` of an answer (a stream's: its first chunk's)."""
    described: dict[str, object] = {
        "gen_ai.response.model": answer.model or None,
        "gen_ai.response.id": answer.id or None,
    }
    reasons = [c.finish_reason for c in answer.choices if c.finish_reason]
    if reasons:
        described["gen_ai.response.finish_reasons"] = reasons
    if isinstance(answer, ChatCompletion) and answer.usage is not None:
        described["gen_ai.usage.input_tokens"] = answer.usage.prompt_tokens
        described["gen_ai.usage.output_tokens"] = answer.usage.completion_tokens
    return described
