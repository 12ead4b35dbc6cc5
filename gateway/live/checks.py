"""Complete validation of a proposed rules document, before anything is stored or served.

The schema (every error at its path and YAML line) and the cross-checks come from
:func:`gateway.rules.parse_rules`; here the document meets this replica's world: environment
variables it names, files it points at, and the router model it asks for, loaded.
"""

from __future__ import annotations

import asyncio
import os

from gateway.live.gate import check_golden_sets
from gateway.rules import RuleProblem, Rules, RulesInvalid, parse_rules
from gateway.settings import MIN_ADMIN_KEY_CHARS, is_long_enough_for_admin
from gateway.snapshot import RulesSnapshot, routing_only
from gateway.state import GatewayState
from gateway.yaml_source import load_yaml
from routers.examples import ExamplesInvalid, example_lines
from routers.factory import route_examples
from routers.specs import ClassifierRouterSpec, LLMRouterSpec

SOURCE = "<proposed rules>"


def environment_problems(rules: Rules) -> list[tuple[str, str]]:
    """Names of unset environment variables and files that do not exist, at their paths."""
    problems = [
        (path, f"environment variable {variable} is unset")
        for path, variable in rules.environment_names()
        if not os.environ.get(variable)
    ]
    for i, admin in enumerate(rules.admin_keys):
        value = os.environ.get(admin.key_env, "")
        if value and not is_long_enough_for_admin(value):
            problems.append(
                (f"admin_keys[{i}].key_env", f"{admin.key_env} holds fewer than {MIN_ADMIN_KEY_CHARS} characters")
            )
    for name, spec in rules.backends.items():
        gguf = getattr(spec, "gguf", None)
        if gguf is not None and not gguf.is_file():
            problems.append((f"backends.{name}.gguf", f"no such file: {gguf}"))
    router = rules.router.fallback if isinstance(rules.router, LLMRouterSpec) else rules.router
    prefix = "router.fallback" if isinstance(rules.router, LLMRouterSpec) else "router"
    if isinstance(router, ClassifierRouterSpec):
        if router.model is not None and not router.model.is_dir():
            problems.append((f"{prefix}.model", f"no such model directory: {router.model}"))
        problems += examples_file_problems(router, rules, prefix)
    return problems


def examples_file_problems(router: ClassifierRouterSpec, rules: Rules, prefix: str) -> list[tuple[str, str]]:
    """The examples file read as the router will read it: each bad row, an unknown route, or one
    example too many, at the file's line."""
    if router.examples_file is None:
        return []
    path = f"{prefix}.examples_file"
    try:
        examples = route_examples(router)
    except ExamplesInvalid as exc:
        return [(path, str(exc))]
    except ValueError as exc:
        return [(path, str(exc))]
    first_of_file = len(router.examples)
    return [
        (path, f"{router.examples_file} line {line}: unknown route {example.route!r}")
        for example, line in zip(examples[first_of_file:], example_lines(router.examples_file), strict=False)
        if example.route not in rules.routes
    ][:20]


async def check_rules(text: str, state: GatewayState) -> Rules:
    """The rules in ``text`` if this replica could serve them; else :class:`RulesInvalid` with every
    problem found. The router is built (its model loaded, or borrowed from the serving snapshot)."""
    rules = await asyncio.to_thread(parse_rules, text, SOURCE)
    if found := await asyncio.to_thread(environment_problems, rules):
        _, lines, _ = load_yaml(text)  # parsed again only to place these problems at their lines
        raise RulesInvalid(SOURCE, [RuleProblem(path=p, message=m, line=lines.line_of(p)) for p, m in found])
    await check_golden_sets(rules)
    try:
        async with routing_only(rules, state.resources.clients, state.settings, state.snapshot):
            pass
    except Exception as exc:
        raise RulesInvalid(SOURCE, [RuleProblem(path="router", message=f"the router cannot be built: {exc}")]) from exc
    return rules


def build_failure(exc: BaseException, snapshot: RulesSnapshot) -> RulesInvalid:
    """A document that validated but failed to build: rejected like an invalid one."""
    message = f"the rules validated but could not be served: {snapshot.redactor.text(str(exc)) or type(exc).__name__}"
    return RulesInvalid(SOURCE, [RuleProblem(path="", message=message)])
