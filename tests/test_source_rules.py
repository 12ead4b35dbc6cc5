"""Rules about the source itself, checked over every module of the three packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("contracts", "gateway", "routers", "backends")
MODULES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
LAYERS = {"contracts": 0, "backends": 1, "routers": 2, "gateway": 3}
"""Each package may import only the packages below it: ``gateway → routers → backends → contracts``."""


def dangling_tasks(tree: ast.AST) -> list[int]:
    """Lines that start a task and drop the only reference to it (the loop keeps tasks weakly)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr in {"create_task", "ensure_future"}
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_task_is_started_without_keeping_a_reference(path: Path) -> None:
    assert dangling_tasks(ast.parse(path.read_text())) == []


def imported_packages(tree: ast.AST) -> set[str]:
    """Top-level packages named by the module's imports, wherever they are (functions and
    ``TYPE_CHECKING`` blocks included: a layer that needs an upper one's types depends on it)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.partition(".")[0])
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_import_only_downwards(path: Path) -> None:
    layer = path.relative_to(ROOT).parts[0]
    above = {package for package, level in LAYERS.items() if level > LAYERS[layer]}
    assert imported_packages(ast.parse(path.read_text())) & above == set()


def test_the_layer_check_sees_an_upward_import() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.rules import Rules\n")
    assert imported_packages(tree) == {"typing", "gateway"}


GATEWAY_FLOORS = {
    # 0: what everything stands on
    **dict.fromkeys(
        ("settings", "yaml_source", "store_guard", "redis_client", "disconnect", "request_body", "heap"), 0
    ),
    # 1: the rules, what they configure (backends' resilience, keys, redaction, guardrails, the error
    # shape), and what observes the traffic (metrics name backends' breakers)
    **dict.fromkeys(
        ("rules", "resilience", "auth", "admin_keys", "redaction", "guardrails", "error_handlers", "observe"), 1
    ),
    # 2: what a request uses: the cache, limits, stored responses, the process and rules snapshot
    **dict.fromkeys(("cache", "rate_limits", "response_store", "rollouts", "golden", "resources", "snapshot"), 2),
    # 3: the request path, and the state that leases it a snapshot
    **dict.fromkeys(("serving", "state"), 3),
    # 4: the APIs on the path
    "apis": 4,
    # 5: operating the gateway: the admin API, live rules, probes, signals
    **dict.fromkeys(("admin", "live", "probes", "signals"), 5),
    # 6: the process: the app and the command line
    **dict.fromkeys(("app", "front", "cli"), 6),
}
"""Floors inside ``gateway/``, by sub-package or top-level module: each imports only its own floor
and those below (``gateway.serving`` may use ``gateway.cache``, never ``gateway.admin``)."""
GATEWAY_MODULES = [
    p for p in MODULES if p.parts[len(ROOT.parts)] == "gateway" and p != ROOT / "gateway" / "__init__.py"
]


def floor_of(dotted: str) -> int:
    """The floor of ``gateway.<part>...``; a KeyError for a part that has none (put it on one)."""
    return GATEWAY_FLOORS[dotted.split(".")[1].removesuffix(".py")]


def upward_imports(module: str, tree: ast.AST) -> list[str]:
    """The ``gateway.*`` modules ``module`` imports from a higher floor than its own."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "gateway":
                names |= {f"gateway.{alias.name}" for alias in node.names}
    own = floor_of(module)
    return sorted(name for name in names if name.startswith("gateway.") and floor_of(name) > own)


@pytest.mark.parametrize("path", GATEWAY_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_gateway_floors_import_only_downwards(path: Path) -> None:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    assert upward_imports(module, ast.parse(path.read_text())) == []


def test_the_floor_check_sees_an_upward_import() -> None:
    tree = ast.parse("from gateway.admin.api import router\nfrom gateway import apis\nimport gateway.cache.store\n")
    assert upward_imports("gateway.resources", tree) == ["gateway.admin.api", "gateway.apis"]
    assert upward_imports("gateway.app", tree) == []


OBSERVE_INTERNALS = {
    f"gateway.observe.{name}" for name in ("reports", "samples", "feedback", "traffic", "variant_report")
}
MAY_READ_REPORTS = ("gateway/observe/", "gateway/admin/", "gateway/resources.py")
"""Where the reports' and samples' own modules may be imported: the package itself, the admin API
that reads the reports, and the wiring. Everything else uses ``gateway.observe``'s names."""


def reaching_into_observe(tree: ast.AST) -> list[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in OBSERVE_INTERNALS:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "gateway.observe":
            found |= {f"gateway.observe.{a.name}" for a in node.names} & OBSERVE_INTERNALS
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names} & OBSERVE_INTERNALS
    return sorted(found)


@pytest.mark.parametrize(
    "path",
    [p for p in GATEWAY_MODULES if not str(p.relative_to(ROOT)).startswith(MAY_READ_REPORTS)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_only_observe_admin_and_the_wiring_import_the_reports_and_samples_modules(path: Path) -> None:
    assert reaching_into_observe(ast.parse(path.read_text())) == []


def test_the_observe_boundary_check_sees_a_reach_inside() -> None:
    tree = ast.parse("from gateway.observe.reports import deltas_of\nfrom gateway.observe import traffic, Outcome\n")
    assert reaching_into_observe(tree) == ["gateway.observe.reports", "gateway.observe.traffic"]


def test_serving_imports_no_training_library() -> None:
    """The gateway with the shipped classifier, started and asked once, in a fresh interpreter:
    neither scikit-learn nor skl2onnx may load (they are the ``train`` extra, not a serving need)."""
    script = """
import asyncio, sys
import httpx
from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings

RULES = '''
backends:
  b: {kind: openai, endpoint: "http://b/v1", model: m, health_check: {enabled: false}}
routes:
  general: {backends: [b]}
default_route: general
'''

async def main():
    app = create_app(Settings(auth_disabled=True), parse_rules(RULES))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        body = {"model": "auto", "messages": [{"role": "user", "content": "sort a list in python"}]}
        await client.post("/admin/route/explain", json=body)
        await client.post("/v1/chat/completions", json=body)
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "skl2onnx")))

asyncio.run(main())
"""
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert found.stdout.strip() == "[]"


def test_benchmarks_import_nothing_from_the_tests() -> None:
    scripts = sorted((ROOT / "bench").glob("*.py"))
    assert scripts
    leaning = [p.name for p in scripts if "tests" in imported_packages(ast.parse(p.read_text()))]
    assert leaning == []


def called_names(tree: ast.AST) -> set[str]:
    return {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }


def test_one_wiring_root_builds_routers_and_opens_backends() -> None:
    """Serving, explaining and dry runs all get their router and backends from ``gateway/snapshot.py``."""
    wiring = {"build_router", "open_backend", "RouteSelector"}
    wiring_modules = sorted(
        str(path.relative_to(ROOT))
        for path in MODULES
        if path.relative_to(ROOT).parts[0] == "gateway" and called_names(ast.parse(path.read_text())) & wiring
    )
    assert wiring_modules == ["gateway/snapshot.py"]


def module_state(tree: ast.Module) -> list[int]:
    """Lines of ``global`` statements and module-level empty containers (a set, dict or list to fill
    at run time): state shared by every app in the process, which belongs to an object instead."""
    empty_calls = {"set", "dict", "list", "defaultdict", "OrderedDict"}
    found = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Global)]
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        is_empty_literal = isinstance(value, ast.Set | ast.Dict | ast.List) and not (
            getattr(value, "elts", None) or getattr(value, "keys", None)
        )
        is_empty_call = (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in empty_calls
            and not value.args
        )
        if is_empty_literal or is_empty_call:
            found.append(node.lineno)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_keeps_mutable_state_of_its_own(path: Path) -> None:
    assert module_state(ast.parse(path.read_text())) == []


def test_the_module_state_check_sees_a_registry_and_a_global() -> None:
    tree = ast.parse("_closing: set[int] = set()\nSEEN = {}\ndef f():\n    global SEEN\nNAMES = ('a',)\n")
    assert module_state(tree) == [4, 1, 2]
