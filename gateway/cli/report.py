"""``turnout report cache|variants``: a running gateway's reports, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from gateway.admin.report_format import ARM_COLUMNS, flat, to_table


def add_commands(commands: Any) -> None:
    report = commands.add_parser("report", help="read reports from a running gateway")
    kinds = report.add_subparsers(required=True, metavar="REPORT")
    cache = kinds.add_parser("cache", help="requests, cache hits, tokens and dollars saved")
    cache.add_argument("--by", default="route", help="any of hour,route,backend,tenant,endpoint,variant")
    cache.set_defaults(handler=cache_command)
    variants = kinds.add_parser("variants", help="each route's variants and shadow side by side")
    variants.add_argument("--route", help="one route (default: every route)")
    variants.set_defaults(handler=variants_command)
    for parser in (cache, variants):
        parser.add_argument("--since", default="24h", help="e.g. 90m, 24h, 7d")
        parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
        parser.add_argument("--url", default=os.environ.get("TURNOUT_URL", "http://127.0.0.1:8080"))
        parser.add_argument(
            "--admin-key", default=os.environ.get("TURNOUT_ADMIN_KEY"), help="default: $TURNOUT_ADMIN_KEY"
        )


def cache_command(args: argparse.Namespace) -> int:
    response = _fetch(args, "/admin/reports/cache", {"by": args.by})
    if response is None:
        return 1
    if args.format == "table":
        body = response.json()
        print(to_table(body["rows"], body["by"]))
    return _print_wire(args, response)


def variants_command(args: argparse.Namespace) -> int:
    response = _fetch(args, "/admin/reports/variants", {"route": args.route} if args.route else {})
    if response is None:
        return 1
    if args.format == "table":
        print(to_table(flat(response.json()["routes"]), [], ARM_COLUMNS))
    return _print_wire(args, response)


def _fetch(args: argparse.Namespace, path: str, params: dict[str, str]) -> httpx.Response | None:
    if not args.admin_key:
        print("error: give --admin-key or set TURNOUT_ADMIN_KEY", file=sys.stderr)
        return None
    wire = "csv" if args.format == "csv" else "json"
    try:
        response = httpx.get(
            args.url.rstrip("/") + path,
            params={"since": args.since, "format": wire, **params},
            headers={"authorization": f"Bearer {args.admin_key}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return None
    if response.status_code != 200:
        print(f"error: {response.status_code}: {response.text}", file=sys.stderr)
        return None
    return response


def _print_wire(args: argparse.Namespace, response: httpx.Response) -> int:
    if args.format == "csv":
        print(response.text, end="")
    elif args.format == "json":
        print(json.dumps(response.json()))
    return 0
