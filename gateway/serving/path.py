"""The request path: one straight line for every API.

::

    decode ─ admit ─ route ─ plan ─ look up ─ dispatch ─ encode
    (API)    keys,   rules,  cache  flight,   race over  (API)
             limits  router  key    semantic  backends

Each stage is a function that takes what the previous one returned: :func:`admit` a
:class:`~gateway.auth.Principal`, :func:`route` a decision, :func:`plan` a cache plan,
:func:`look_up` a :class:`Found`, and :mod:`gateway.serving.answer` turns a found entry or a
backend's answer into the response through the API's encoder. Each stage's result is kept on the
request's outcome where it returns, and observed once when the request ends. The single flight of
a cache key and the snapshot a request holds are ``async with`` scopes: every way out settles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Principal
from gateway.cache.response_cache import CacheEntry, CachePlan
from gateway.cache.semantic import MAX_TEXT_CHARS, Probe, semantic_space
from gateway.cache.single_flight import Flight
from gateway.disconnect import unless_disconnected
from gateway.guardrails.stages import UNSCREENED
from gateway.request_body import read_body
from gateway.resilience.deadline import BUDGET_HEADER
from gateway.rules import CachePolicy
from gateway.serving.answer import Arrival, Filling, from_backend, replayed
from gateway.serving.call import Call, Encoder, Endpoint
from gateway.serving.outcome import request_outcome
from gateway.serving.screen import screen
from gateway.state import gateway_state, request_snapshot
from routers.decision import RouteDecision, RoutingContext

PINNED_POLICY = CachePolicy()


class Api(Protocol):
    """What an API adds to the path: its name, and how its wire format becomes a call."""

    endpoint: Endpoint

    async def decode(self, body: bytes, principal: Principal, arrival: Arrival) -> tuple[Call, Encoder]: ...


@dataclass(frozen=True)
class Found:
    """The cache lookup's answer: an entry (and how similar, when the semantic cache found it), or
    the probe a fresh answer is remembered under."""

    entry: CacheEntry | None = None
    similarity: float | None = None
    probe: Probe | None = None


async def serve(api: Api, request: Request) -> Response:
    arrival = arrive(request, api.endpoint)
    principal = await admit(arrival)
    body = await read_body(request, arrival.resources.settings.max_body_bytes)
    call, encoder = await api.decode(body, principal, arrival)
    # Only once the body is read: the watch reads the connection's next message.
    return await unless_disconnected(request, answer(arrival, principal, call, encoder))


def arrive(request: Request, endpoint: Endpoint) -> Arrival:
    """The request with the process, the snapshot it holds and its outcome: what every stage reads."""
    resources = gateway_state(request).resources
    return Arrival(resources, request_snapshot(request), request, request_outcome(request, endpoint))


async def admit(arrival: Arrival) -> Principal:
    """Who asked (401 without a valid key), and whether their limits let them in now (429)."""
    principal = arrival.outcome.principal = arrival.snapshot.keyring.authenticate(arrival.request.headers)
    await arrival.resources.limits.admit(principal)
    return principal


async def answer(arrival: Arrival, principal: Principal, call: Call, encoder: Encoder) -> Response:
    decision = await route(arrival, principal, call)
    headers = arrival.request.headers
    deadline = arrival.snapshot.deadline(decision.route, headers.get(BUDGET_HEADER), arrival.outcome.started)
    guards = arrival.snapshot.guardrails.for_route(decision.route)
    screening = UNSCREENED
    if guards is not None:
        call, screening = await screen(arrival, guards, decision, call, deadline)
    cache_plan = plan(arrival, decision, call, principal.tenant)
    if not cache_plan.can_read:
        filling = Filling(principal, cache_plan, screening=screening)
        return await from_backend(arrival, filling, decision, call, encoder, deadline)
    async with arrival.resources.cache.flight(cache_plan, deadline.remaining()) as flight:  # every way out settles it
        if arrival.resources.tracing.is_on:
            with arrival.resources.tracing.child("cache lookup") as span:
                found = await look_up(arrival, flight, cache_plan, decision, call)
                span.set({"turnout.cache": "hit" if found.entry is not None else arrival.outcome.cache})
        else:
            found = await look_up(arrival, flight, cache_plan, decision, call)
        if found.entry is not None:
            return await replayed(arrival, found.entry, found.similarity, decision, call, encoder, screening)
        filling = Filling(principal, cache_plan, flight, found.probe, screening)
        response = await from_backend(arrival, filling, decision, call, encoder, deadline)
        if call.stream:
            flight.outlive_scope()  # the stream's end settles it, as late as that comes
        return response


async def route(arrival: Arrival, principal: Principal, call: Call) -> RouteDecision:
    """The route: the ``x-turnout-route`` header, a model naming a route or alias, the rules, or the
    router; 403 when the caller's key may not use it."""
    snapshot, resources, headers = arrival.snapshot, arrival.resources, arrival.request.headers
    context = RoutingContext(principal.tenant, headers)
    if resources.tracing.is_on:
        with resources.tracing.child("route") as span:
            decision = await snapshot.selector.select(
                call.chat.model, headers.get("x-turnout-route"), call.chat, context
            )
            span.set(routing_attributes(decision))
    else:
        decision = await snapshot.selector.select(call.chat.model, headers.get("x-turnout-route"), call.chat, context)
    arrival.outcome.decision = decision
    resources.metrics.observe_decision(decision.route, decision.decided_by, decision.score)
    resources.samples.add(arrival.outcome.request_id, principal.tenant, call.chat, headers)
    principal.require_route(decision.route)
    return decision


def routing_attributes(decision: RouteDecision) -> dict[str, object]:
    rule = decision.decided_by.removeprefix("rule:") if decision.decided_by.startswith("rule:") else None
    return {
        "turnout.route": decision.route,
        "turnout.decided_by": decision.decided_by.partition(":")[0],
        "turnout.router_score": decision.score,
        "turnout.rule": rule,
        "turnout.variant": decision.variant,
    }


def plan(arrival: Arrival, decision: RouteDecision, call: Call, tenant: str) -> CachePlan:
    """Whether the cache may read and write this call's answer, and under which key (taken over the
    call, so an answer cached through one API is a hit through another)."""
    route_spec = arrival.snapshot.rules.routes.get(decision.route)
    policy = route_spec.cache if route_spec is not None else PINNED_POLICY
    primary = decision.backends[0]
    identity = arrival.snapshot.identities[primary]
    if decision.variant is not None:  # two variants sharing a primary still never share an answer
        identity = f"{identity}|variant:{decision.variant}"
    cache_control = arrival.request.headers.get("cache-control", "")
    return arrival.resources.cache.plan(decision.route, policy, primary, identity, call.chat, tenant, cache_control)


async def look_up(
    arrival: Arrival, flight: Flight, cache_plan: CachePlan, decision: RouteDecision, call: Call
) -> Found:
    """The exact entry (perhaps landed by an identical request this one waited for), else a
    semantic neighbour above the route's threshold, else a miss with the probe to remember."""
    if flight.entry is not None:
        return Found(flight.entry)
    arrival.outcome.cache = "off" if flight.is_store_down else "miss"
    threshold, semantic = cache_plan.policy.semantic_threshold, arrival.snapshot.semantic_cache
    text = call.chat.last_user_text()
    if flight.is_store_down or threshold is None or semantic is None or not text or len(text) > MAX_TEXT_CHARS:
        return Found()
    space = semantic_space(cache_plan.namespace, decision.route, cache_plan.identity, call.chat)
    probe = await semantic.probe(space, text)
    near = await semantic.lookup(probe, threshold)
    if near is None:
        return Found(probe=probe)
    await flight.share(near[0])
    return Found(near[0], near[1])
