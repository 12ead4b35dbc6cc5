"""``turnout golden validate|run``: check a golden set file, or run it against a running gateway's
route (``--url``, ``--route``) or straight against one backend of a rules file (``--config``,
``--backend``). Prints each row and the summary; exits 1 below the bar (or for an invalid file)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from contracts.errors import BackendBadResponse, BackendError
from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.rules import GoldenSpec, RulesInvalid, load_rules

if TYPE_CHECKING:  # the runner loads numpy and ONNX Runtime: only for the commands that run a set
    from gateway.golden.runner import SetResult
    from gateway.golden.sets import GoldenSet


def add_commands(commands: Any) -> None:
    golden = commands.add_parser("golden", help="golden sets: validate a file, or run one")
    actions = golden.add_subparsers(required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check a golden set file; each problem at its line")
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=validate_command)
    run = actions.add_parser("run", help="run a set against a gateway's route or a rules file's backend")
    run.add_argument("--set", dest="golden", type=Path, required=True)
    run.add_argument("--url", help="a running gateway (with --route)")
    run.add_argument("--route", help="the route (the model name) to ask at --url")
    run.add_argument("--api-key", default=os.environ.get("TURNOUT_API_KEY"), help="default: $TURNOUT_API_KEY")
    run.add_argument("--config", type=Path, help="a rules file (with --backend)")
    run.add_argument("--backend", help="the backend of --config to ask directly")
    run.add_argument("--min-pass-ratio", type=float, default=0.95)
    run.add_argument("--concurrency", type=int, default=4)
    run.add_argument("--timeout-s", type=float, default=120.0)
    run.add_argument("--json", action="store_true", help="the summary as JSON")
    run.set_defaults(handler=run_command)


def validate_command(args: argparse.Namespace) -> int:
    from gateway.golden.sets import GoldenInvalid, load_set

    try:
        golden = load_set(args.file)
    except GoldenInvalid as exc:
        print(exc, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {args.file}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok ({len(golden.rows)} rows, {sum(r.critical for r in golden.rows)} critical)")
    return 0


def run_command(args: argparse.Namespace) -> int:
    from gateway.golden.sets import GoldenInvalid, load_set

    by_url, by_config = bool(args.url and args.route), bool(args.config and args.backend)
    if by_url == by_config:
        print("error: give --url URL --route R, or --config FILE --backend B", file=sys.stderr)
        return 2
    try:
        golden = load_set(args.golden)
        spec = GoldenSpec(
            set=args.golden, min_pass_ratio=args.min_pass_ratio, timeout_s=args.timeout_s, concurrency=args.concurrency
        )
        result = asyncio.run(_run(args, golden, spec))
    except (GoldenInvalid, RulesInvalid) as exc:
        print(exc, file=sys.stderr)
        return 1
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    _print(result, args.json)
    return 0 if result.passed else 1


async def _run(args: argparse.Namespace, golden: GoldenSet, spec: GoldenSpec) -> SetResult:
    from gateway.golden.runner import run_set
    from gateway.rollouts.agreement import Agreement

    similarity = Agreement().similarity
    if args.url:
        async with httpx.AsyncClient(base_url=args.url.rstrip("/"), timeout=spec.timeout_s) as client:
            route = GatewayRoute(client, args.route, args.api_key)
            return await run_set(golden, route, spec, similarity, args.route)
    from backends.http_transport import HttpClients
    from gateway.snapshot import backend_of

    rules = load_rules(args.config)
    if args.backend not in rules.backends:
        raise LookupError(f"{args.config} has no backend {args.backend!r}")
    async with backend_of(rules, args.backend, HttpClients()) as backend:
        return await run_set(golden, backend, spec, similarity, args.backend)


class GatewayRoute:
    """A running gateway's route, asked as a client would (marked ``x-turnout-synthetic: golden``)."""

    def __init__(self, client: httpx.AsyncClient, route: str, api_key: str | None) -> None:
        self.name = route
        self._client = client
        self._headers = {"x-turnout-synthetic": "golden"} | ({"authorization": f"Bearer {api_key}"} if api_key else {})

    async def complete(self, request: ChatCompletionRequest, timeout_s: float) -> ChatCompletion:
        body = request.model_dump(exclude_unset=True) | {"model": self.name}
        try:
            answer = await self._client.post(
                "/v1/chat/completions", json=body, headers=self._headers, timeout=timeout_s
            )
        except httpx.HTTPError as exc:
            raise BackendError(f"the gateway did not answer: {exc}") from None
        if answer.status_code != 200:
            raise BackendError(f"the gateway answered {answer.status_code}: {answer.text[:300]}")
        try:
            return ChatCompletion.model_validate_json(answer.content)
        except ValueError:
            raise BackendBadResponse("the gateway's answer is not a chat completion") from None


def _print(result: SetResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.summary() | {"at": time.time()}))
        return
    for row in result.rows:
        mark = "pass" if row.passed else "FAIL"
        print(f"{mark}  {row.name}{' (critical)' if row.critical else ''}  {row.latency_ms:.0f} ms")
        for failure in row.failures:
            print(f"      {failure}")
    verdict = "passed" if result.passed else "FAILED"
    critical = f"; critical rows failed: {', '.join(result.critical_failed)}" if result.critical_failed else ""
    print(
        f"{verdict}: {result.pass_ratio:.0%} of {len(result.rows)} rows, {result.min_pass_ratio:.0%} needed{critical}"
    )
