"""The ``turnout`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.cli.golden import add_commands as add_golden_commands
from gateway.cli.health import add_commands as add_health_commands
from gateway.cli.report import add_commands as add_report_commands
from gateway.cli.router import add_commands as add_router_commands
from gateway.cli.rules import add_commands as add_rules_commands
from gateway.rules import RulesInvalid, load_rules


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()  # here, where a closed pipe can be handled, not at interpreter exit
        return status
    except BrokenPipeError:  # `turnout ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not raise again
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="turnout", description="An OpenAI-compatible LLM router gateway.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", type=Path, default=None, help="rules file (default: $TURNOUT_CONFIG)")
    # A string default goes through type=int only for `serve`, so a stray TURNOUT_PORT (a Kubernetes
    # service link sets it to tcp://HOST:PORT for a Service named turnout) fails there, saying so.
    host, port = os.environ.get("TURNOUT_HOST", "127.0.0.1"), os.environ.get("TURNOUT_PORT", "8080")
    serve.add_argument("--host", default=host, help="default: $TURNOUT_HOST, else 127.0.0.1")
    serve.add_argument("--port", type=int, default=port, help="default: $TURNOUT_PORT, else 8080")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--log-format", choices=["text", "json"], default=None, help="default: $TURNOUT_LOG_FORMAT or text"
    )
    serve.set_defaults(handler=serve_command)

    rules = commands.add_parser("rules", help="rules files, and the live rules of a running gateway")
    add_rules_commands(rules.add_subparsers(required=True, metavar="ACTION"), validate_command)
    add_router_commands(commands)
    add_report_commands(commands)
    add_health_commands(commands)
    add_golden_commands(commands)
    return parser


def validate_command(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
        from gateway.live.gate import golden_problems  # loads the serving stack: only when validating

        if problems := golden_problems(rules):
            raise RulesInvalid(str(args.file), problems)
    except RulesInvalid as exc:
        print(exc, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {exc.source}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(rules.routes)} routes, {len(rules.backends)} backends)")
    return 0


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from gateway.settings import Settings

    if args.config is not None:
        os.environ["TURNOUT_CONFIG"] = str(args.config)
    if args.log_format is not None:
        os.environ["TURNOUT_LOG_FORMAT"] = args.log_format
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            print(f"turnout serve: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    if not settings.config.exists():
        source = "--config" if args.config else "TURNOUT_CONFIG, default rules.yaml"
        print(
            f"no rules file at {settings.config.resolve()} (from {source}); "
            "pass --config FILE, e.g. --config deploy/rules.local.yaml",
            file=sys.stderr,
        )
        return 1
    try:
        load_rules(settings.config)
    except RulesInvalid as exc:
        print(exc, file=sys.stderr)
        return 1
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
    )
    return 0
