"""``turnout report cache``: the cost report of a running gateway, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from gateway.admin.report_format import to_table


def add_commands(commands: Any) -> None:
    report = commands.add_parser("report", help="read reports from a running gateway")
    kinds = report.add_subparsers(required=True, metavar="REPORT")
    cache = kinds.add_parser("cache", help="requests, cache hits, tokens and dollars saved")
    cache.add_argument("--since", default="24h", help="e.g. 90m, 24h, 7d")
    cache.add_argument("--by", default="route", help="any of hour,route,backend,tenant (comma-separated)")
    cache.add_argument("--format", choices=["table", "json", "csv"], default="table")
    cache.add_argument("--url", default=os.environ.get("TURNOUT_URL", "http://127.0.0.1:8080"))
    cache.add_argument("--admin-key", default=os.environ.get("TURNOUT_ADMIN_KEY"), help="default: $TURNOUT_ADMIN_KEY")
    cache.set_defaults(handler=cache_command)


def cache_command(args: argparse.Namespace) -> int:
    if not args.admin_key:
        print("error: give --admin-key or set TURNOUT_ADMIN_KEY", file=sys.stderr)
        return 1
    wire = "csv" if args.format == "csv" else "json"
    params = {"since": args.since, "by": args.by, "format": wire}
    try:
        response = httpx.get(
            args.url.rstrip("/") + "/admin/reports/cache",
            params=params,
            headers={"authorization": f"Bearer {args.admin_key}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"error: {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    if args.format == "csv":
        print(response.text, end="")
    elif args.format == "json":
        print(json.dumps(response.json()))
    else:
        body = response.json()
        print(to_table(body["rows"], body["by"]))
    return 0
