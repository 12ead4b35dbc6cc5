"""Warm backends: synthetic requests (``x-turnout-synthetic: warmup``, never a tenant's) so that a
model server that loads lazily, or unloads or scales down when idle, never meets a user cold.

- A backend new or changed in a rules snapshot gets ``warmup.requests`` requests before the
  snapshot is installed, all within ``warmup.timeout_s``; a failure is logged and counted, and does
  not hold the change back (the golden gate is what judges answers).
- A backend idle for ``warmup.keep_warm_idle_s`` (no client request, no warm-up) gets one request;
  one with real traffic gets none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from backends.base import Backend
from backends.request_context import SYNTHETIC
from contracts.errors import BackendError
from contracts.wire import ChatCompletionRequest
from gateway.golden.sets import GoldenInvalid, load_set
from gateway.golden.synthetic import book_synthetic
from gateway.observe import ReportBook
from gateway.observe.metrics import Metrics
from gateway.resilience.upstreams import Upstream
from gateway.rules import Rules, WarmupSpec

log = logging.getLogger("turnout")
MAX_TOKENS = 8
"""Enough for the model to run; a warm-up's answer is not read."""


def prompts_for(rules: Rules, name: str, warmup: WarmupSpec) -> list[str]:
    """The warm-up prompts of backend ``name``: its own, or the golden rows of the routes it serves."""
    if warmup.prompt is not None:
        return [warmup.prompt]
    found: list[str] = []
    for route in rules.routes.values():
        if route.golden is not None and any(name in chain for chain in route.chains().values()):
            try:
                rows = load_set(route.golden.set).rows
            except GoldenInvalid as exc:
                log.warning("warm-up of %s: %s", name, exc)
                continue
            found += [row.prompt or str(row.request_messages()[-1].get("content", "")) for row in rows]
    return found or ["Hello."]


async def warm_up(rules: Rules, opened: Mapping[str, Backend], metrics: Metrics, reports: ReportBook) -> None:
    """Warm every backend just opened that asks for it, together, each within its ``timeout_s``."""
    await asyncio.gather(
        *(
            _warm(rules, backend, spec.warmup, metrics, reports)
            for name, backend in opened.items()
            if (spec := rules.backends[name]).warmup is not None
        )
    )


async def _warm(rules: Rules, backend: Backend, warmup: WarmupSpec, metrics: Metrics, reports: ReportBook) -> None:
    prompts = await asyncio.to_thread(prompts_for, rules, backend.name, warmup)  # may read golden sets
    started = time.monotonic()
    try:
        async with asyncio.timeout(warmup.timeout_s):
            for n in range(warmup.requests):
                await ask(backend, prompts[n % len(prompts)], warmup.timeout_s, metrics, "change", rules, reports)
    except TimeoutError:
        metrics.observe_warmup(backend.name, "change", "timeout")
        log.warning("warm-up of %s ran out of its %.0f s; it takes traffic as it is", backend.name, warmup.timeout_s)
        return
    log.info("backend %s warmed up in %.0f ms", backend.name, (time.monotonic() - started) * 1000)


async def ask(
    backend: Backend, prompt: str, timeout_s: float, metrics: Metrics, reason: str, rules: Rules, reports: ReportBook
) -> bool:
    """One synthetic request, booked as synthetic in the cost report; whether it was answered. Never
    raises for the backend's failure."""
    body = {"model": backend.name, "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS}
    token = SYNTHETIC.set("warmup")
    try:
        completion = await backend.complete(ChatCompletionRequest.model_validate(body), timeout_s)
    except BackendError as exc:
        metrics.observe_warmup(backend.name, reason, exc.code or "error")
        log.warning("warm-up request to %s failed: %s", backend.name, exc.message)
        return False
    finally:
        SYNTHETIC.reset(token)
    metrics.observe_warmup(backend.name, reason, "ok")
    book_synthetic(reports, rules, "-", backend.name, completion, "warmup")
    return True


async def keep_warm(rules: Rules, upstreams: Mapping[str, Upstream], metrics: Metrics, reports: ReportBook) -> None:
    """One request to each backend that asks to be kept warm and has been idle that long."""
    now = time.monotonic()
    for name, upstream in upstreams.items():
        warmup = rules.backends[name].warmup
        if warmup is None or warmup.keep_warm_idle_s is None or not upstream.is_idle(now, warmup.keep_warm_idle_s):
            continue
        upstream.last_warm = now
        prompt = (await asyncio.to_thread(prompts_for, rules, name, warmup))[0]
        await ask(upstream.backend, prompt, min(warmup.timeout_s, upstream.timeout_s), metrics, "idle", rules, reports)
