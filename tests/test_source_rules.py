"""Rules about the source itself, checked over every module of the three packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MODULES = sorted(p for package in ("gateway", "routers", "backends") for p in (ROOT / package).rglob("*.py"))


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
