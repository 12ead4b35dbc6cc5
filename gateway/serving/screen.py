"""The guardrails' stage of the request path: the input checks, and what the later stages need
to check the answer (:mod:`gateway.guardrails`). A route without guardrails skips it whole."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from contracts.errors import BudgetExceeded, InvalidRequest
from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.guardrails.engine import Ledger, Result, RouteGuards
from gateway.guardrails.kinds import Asked
from gateway.guardrails.stages import (
    ExternalCopy,
    Screening,
    check_answer,
    check_request,
    external_request,
    run_later,
)
from gateway.resilience.deadline import Deadline
from gateway.rollouts.agreement import answer_text
from gateway.serving.call import Call
from routers.decision import RouteDecision

if TYPE_CHECKING:
    from gateway.serving.answer import Arrival

log = logging.getLogger("turnout")


async def screen(
    arrival: Arrival, guards: RouteGuards, decision: RouteDecision, call: Call, deadline: Deadline
) -> tuple[Call, Screening]:
    """The call as the cache and the backends see it (redacted, or refused with 400
    ``content_blocked``), and the screening of its attempts and answer."""
    outcome, snapshot, resources = arrival.outcome, arrival.snapshot, arrival.resources
    ledger = outcome.guardrails = Ledger()
    metrics = resources.metrics

    def observe(result: Result) -> None:
        metrics.observe_guardrail(result.guardrail, result.stage, result.result)

    tracing = resources.tracing if resources.tracing.is_on else None
    asked = Asked("input", decision.route, outcome.tenant, tracing)
    if call.stream and guards.output and (call.chat.n or 1) > 1:
        raise InvalidRequest("a stream on a route with output guardrails takes n: 1", param="n")
    try:
        async with asyncio.timeout(deadline.remaining()):
            chat = await check_request(guards, call.chat, asked, ledger, observe)
    except TimeoutError:
        raise BudgetExceeded(
            f"the {deadline.budget_ms} ms latency budget ran out in the input guardrails ({deadline.elapsed_ms()} ms)"
        ) from None
    answering = Asked("output", decision.route, outcome.tenant, tracing)
    external = None
    if guards.external and snapshot.externals.intersection(decision.backends):
        external = ExternalCopy(lambda: external_request(guards, chat, asked, ledger, observe))

    async def vet(backend: str, completion: ChatCompletion) -> ChatCompletion:
        return await check_answer(guards, backend, completion, answering, ledger, observe)

    screening = Screening(
        external_copy=external,
        externals=snapshot.externals,
        vet=vet if guards.output and not call.stream else None,
        guards=guards,
        ledger=ledger,
        asked=answering,
        observe=observe,
    )
    return (call if chat is call.chat else Call(call.endpoint, chat)), screening


def check_later(
    running: set[asyncio.Task[None]], screening: Screening, request: ChatCompletionRequest, completion: ChatCompletion
) -> None:
    """Start the ``mode: async`` checks, if the route has any, once the answer is sent; ``running``
    holds them until they finish (the snapshot's :attr:`~gateway.guardrails.engine.Guardrails.later`).
    Nothing is read of the request or the answer unless the route has such checks."""
    guards, asked, observe = screening.guards, screening.asked, screening.observe
    if guards is None or asked is None or observe is None or not (guards.later_input or guards.later_output):
        return
    texts = request.conversation_text(), answer_text(completion)
    task = asyncio.get_running_loop().create_task(run_later(guards, *texts, asked, observe))
    running.add(task)
    task.add_done_callback(running.discard)
