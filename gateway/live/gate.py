"""The golden gate: a rules change that changes which backend answers first for a route with a
golden set (its primary, a variant's primary, or that backend's endpoint or model) runs the set
against each changed primary before anything is stored. Below the bar the change is refused
(:class:`GoldenFailed`), unless an editor forces it with a reason. Rollbacks are not gated: they
return to rules that served before."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from gateway.golden.runner import SetResult, run_set
from gateway.golden.sets import GoldenInvalid, file_sha256, load_set
from gateway.golden.synthetic import book_synthetic
from gateway.rules import RouteSpec, RuleProblem, Rules, RulesInvalid, backend_identity
from gateway.snapshot import backend_of
from gateway.state import GatewayState
from routers.specs import ClassifierRouterSpec, LLMRouterSpec


class GoldenFailed(Exception):
    """A change refused by the golden gate; each set's result says which rows failed and why."""

    def __init__(self, results: list[SetResult]) -> None:
        self.results = results
        failing = [f"{r.route} on {r.backend}: {r.pass_ratio:.0%} passed, {r.min_pass_ratio:.0%} needed"
                   + (f", critical rows failed: {', '.join(r.critical_failed)}" if r.critical_failed else "")
                   for r in results if not r.passed]  # fmt: skip
        super().__init__("the golden gate refused the change: " + "; ".join(failing))


def primaries(route: RouteSpec | None) -> set[str]:
    return {chain[0] for chain in route.chains().values() if chain} if route is not None else set()


def gated(serving: Rules, proposed: Rules, changed_sets: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """``(route, backend)``: each changed primary of each route with a golden set, and every primary
    of a route whose set itself changed, in rules order."""
    found: list[tuple[str, str]] = []
    for name, route in proposed.routes.items():
        if route.golden is None:
            continue
        before = set() if name in changed_sets else primaries(serving.routes.get(name))
        for backend in sorted(primaries(route)):
            old = serving.backends.get(backend)
            if (
                backend not in before
                or old is None
                or backend_identity(old) != backend_identity(proposed.backends[backend])
            ):
                found.append((name, backend))
    return found


def golden_problems(rules: Rules) -> list[RuleProblem]:
    """Each route's golden set loaded and validated, as the rules are: problems at their paths."""
    problems: list[RuleProblem] = []
    for name, route in rules.routes.items():
        if route.golden is not None:
            try:
                load_set(route.golden.set)
            except GoldenInvalid as exc:
                problems.append(RuleProblem(path=f"routes.{name}.golden.set", message=str(exc)))
    return problems


async def check_golden_sets(rules: Rules) -> None:
    if problems := await asyncio.to_thread(golden_problems, rules):
        raise RulesInvalid("<proposed rules>", problems)


EXAMPLES_FILE = "@examples"
"""The key of the router's examples file among :func:`file_hashes` (a route name cannot start with @)."""


def file_hashes(rules: Rules) -> dict[str, str]:
    """The sha256 of each file the rules read whose change is a new version (a file that cannot be
    read has none): each route's golden set by route name, and the router's examples file."""
    found: dict[str, str] = {}
    for name, route in rules.routes.items():
        if route.golden is not None and (sha := file_sha256(route.golden.set)) is not None:
            found[name] = sha
    examples = examples_file_of(rules)
    if examples is not None and (sha := file_sha256(examples)) is not None:
        found[EXAMPLES_FILE] = sha
    return found


def examples_file_of(rules: Rules) -> Path | None:
    router = rules.router.fallback if isinstance(rules.router, LLMRouterSpec) else rules.router
    return router.examples_file if isinstance(router, ClassifierRouterSpec) else None


def described_change(rules: Rules, hashes: dict[str, str], changed: list[str]) -> str:
    """What changed on disk, for the new version's message."""
    sets = [f"{key} (sha256 {hashes[key][:12]})" for key in changed if key != EXAMPLES_FILE]
    parts = [f"golden set changed: {', '.join(sets)}"] if sets else []
    if EXAMPLES_FILE in changed:
        parts.append(f"examples file changed: {examples_file_of(rules)} (sha256 {hashes[EXAMPLES_FILE][:12]})")
    return "; ".join(parts)


async def run_gate(state: GatewayState, proposed: Rules, changed_sets: frozenset[str] = frozenset()) -> list[SetResult]:
    """The golden sets of every change :func:`gated` finds, run now (none found: nothing run)."""
    serving = state.snapshot
    results: list[SetResult] = []
    for route, backend_name in gated(serving.rules, proposed, changed_sets):
        spec = proposed.routes[route].golden
        assert spec is not None
        golden = await asyncio.to_thread(load_set, spec.set)
        async with backend_of(proposed, backend_name, state.resources.clients, serving) as backend:
            book = functools.partial(
                book_synthetic, state.resources.reports, proposed, route, backend_name, kind="golden"
            )
            results.append(await run_set(golden, backend, spec, state.resources.agreement.similarity, route, book))
    return results
