"""``turnout health``: whether a gateway on this machine is alive (or ready), as an exit status.

For a container's HEALTHCHECK or an exec probe, where neither curl nor a shell may be present.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx


def add_commands(commands: Any) -> None:
    health = commands.add_parser("health", help="exit 0 if the gateway answers /healthz (or /readyz) with 200")
    health.add_argument("--ready", action="store_true", help="ask /readyz: ready to take traffic, not draining")
    health.add_argument(
        "--url",
        default=f"http://127.0.0.1:{os.environ.get('TURNOUT_PORT', '8080')}",
        help="default: http://127.0.0.1:$TURNOUT_PORT (8080)",
    )
    health.add_argument("--timeout", type=float, default=2.0, help="seconds")
    health.set_defaults(handler=health_command)


def health_command(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + ("/readyz" if args.ready else "/healthz")
    try:
        response = httpx.get(url, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"{url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {response.status_code} {response.text}")
    return 0 if response.status_code == 200 else 1
