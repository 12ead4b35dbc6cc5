"""``turnout router ...`` and ``turnout route explain``: train, measure and explain routing."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from gateway.rules import RulesInvalid, load_rules


def add_commands(commands: Any) -> None:
    router = commands.add_parser("router", help="train and evaluate route classifiers")
    actions = router.add_subparsers(required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a classifier on JSONL rows {prompt, label} or {text, intent}")
    train.add_argument("--data", type=Path, required=True, action="append", help="JSONL file (repeatable)")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--head-tokens", type=int, default=20, help="prompt tokens read from the start")
    train.add_argument("--tail-tokens", type=int, default=19, help="prompt tokens read from the end")
    train.set_defaults(handler=train_command)
    evaluate = actions.add_parser("eval", help="measure a classifier on labelled JSONL")
    evaluate.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    evaluate.add_argument("--data", type=Path, required=True, action="append", help="JSONL file (repeatable)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=eval_command)

    route = commands.add_parser("route", help="ask where a prompt would go").add_subparsers(
        required=True, metavar="ACTION"
    )
    explain = route.add_parser("explain", help="route, score per label, and the rule or model that decided")
    explain.add_argument("--config", type=Path, required=True)
    explain.add_argument("--model", default="auto", help="the request's model (default: auto)")
    explain.add_argument("--tenant", default="anonymous")
    explain.add_argument("prompt")
    explain.set_defaults(handler=explain_command)


def load_all(paths: list[Path]) -> list[Any] | None:
    """Every row of every file, or ``None`` after saying what is wrong."""
    from routers.dataset import DatasetError, load_examples

    try:
        return [e for path in paths for e in load_examples(path)]
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def lacks_train_extra() -> bool:
    """Whether training and evaluation cannot run here, saying so (serving needs neither library)."""
    missing = [name for name in ("sklearn", "skl2onnx") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: {', '.join(missing)} missing: pip install 'turnout[train]'", file=sys.stderr)
    return bool(missing)


def train_command(args: argparse.Namespace) -> int:
    if lacks_train_extra():
        return 1
    from routers.training import train

    examples = load_all(args.data)
    if examples is None:
        return 1
    train(examples, args.out, args.head_tokens, args.tail_tokens)
    manifest = json.loads((args.out / "manifest.json").read_text())
    print(f"trained on {manifest['trained_on']} rows, {len(manifest['labels'])} labels -> {args.out}")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    if lacks_train_extra():
        return 1
    from routers.classifier import SHIPPED_MODEL, TaskClassifier
    from routers.evaluation import evaluate

    examples = load_all(args.data)
    if examples is None:
        return 1
    report = evaluate(TaskClassifier(args.model or SHIPPED_MODEL, threads=1), examples)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"rows {report['rows']}  accuracy {report['accuracy']}  macro_f1 {report['macro_f1']}")
    print(f"latency p50 {report['p50_ms']} ms  p99 {report['p99_ms']} ms (one prompt at a time)")
    for label, row in report["per_label"].items():
        figures = f"precision {row['precision']:.3f}  recall {row['recall']:.3f}  f1 {row['f1']:.3f}"
        print(f"  {label:<24} {figures}  n={row['support']}")
    return 0


def explain_command(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.config)
    except RulesInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    from gateway.admin.explain import explain_offline

    print(json.dumps(asyncio.run(explain_offline(rules, args.prompt, args.model, args.tenant)), indent=2))
    return 0
