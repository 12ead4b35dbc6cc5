"""``turnout rules ...``: the live rules of a running gateway, from the command line.

Each command is one call to the admin API (``--url``, ``--admin-key``; or ``$TURNOUT_URL`` and
``$TURNOUT_ADMIN_KEY``). ``rules validate FILE`` without ``--url`` checks the file offline, even
with ``$TURNOUT_URL`` set: asking a gateway is what ``--url`` says, never a side effect of the shell.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

OFFLINE = "offline"


def add_commands(rules: Any, validate_offline: Any) -> None:
    """Adds the online commands to the ``rules`` sub-commands; ``validate`` goes offline without ``--url``."""

    def online(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = rules.add_parser(name, help=help_text)
        parser.add_argument("--url", default=os.environ.get("TURNOUT_URL"), help="the gateway (default: $TURNOUT_URL)")
        parser.add_argument(
            "--admin-key", default=os.environ.get("TURNOUT_ADMIN_KEY"), help="default: $TURNOUT_ADMIN_KEY"
        )
        return parser

    get = online("get", "print the newest rules version's YAML (or --version N's)")
    get.add_argument("--version", type=int, default=None)
    get.set_defaults(handler=get_command)

    validate = online("validate", "check a rules file: offline, or by the gateway at --url (router, env vars)")
    validate.set_defaults(url=None)  # offline unless --url is given
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=lambda args: validate_command(args, validate_offline))

    dry_run = online("dry-run", "which recent requests would route differently under FILE")
    dry_run.add_argument("file", type=Path)
    dry_run.add_argument("--golden", action="store_true", help="also run the golden sets the change is gated on")
    dry_run.set_defaults(handler=dry_run_command)

    apply = online("apply", "store FILE as the next version and serve it on every replica")
    apply.add_argument("file", type=Path)
    apply.add_argument("--message", "-m", default="")
    apply.add_argument(
        "--if-match", type=int, default=None, help="the version you edited (default: the newest, read first)"
    )
    apply.add_argument(
        "--force-golden", action="store_true", help="store it even if its golden sets fail (-m gives the reason)"
    )
    apply.set_defaults(handler=apply_command)

    history = online("history", "versions, newest first")
    history.add_argument("--limit", type=int, default=20)
    history.set_defaults(handler=history_command)

    diff = online("diff", "what changed between two versions")
    diff.add_argument("before", type=int)
    diff.add_argument("after", type=int)
    diff.set_defaults(handler=diff_command)

    rollback = online("rollback", "serve an earlier version's document again, as a new version")
    rollback.add_argument("version", type=int)
    rollback.add_argument("--message", "-m", default="")
    rollback.set_defaults(handler=rollback_command)

    audit = online("audit", "every write, refused ones too")
    audit.add_argument("--limit", type=int, default=20)
    audit.set_defaults(handler=audit_command)


class Failed(Exception):
    """What the gateway said, for the user; exit status 1."""


class Invalid(Exception):
    """The gateway refused a rules document (422): its problems, for the user; exit status 1."""

    def __init__(self, source: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(source)
        self.source, self.errors = source, errors


def call(args: argparse.Namespace, method: str, path: str, source: str = "", **kwargs: Any) -> httpx.Response:
    """The gateway's answer; raises :class:`Failed` for an error, :class:`Invalid` for a refused
    document (named ``source`` in the problems)."""
    if not args.url:
        raise Failed("give the gateway with --url URL (or $TURNOUT_URL)")
    headers = {"authorization": f"Bearer {args.admin_key or ''}", **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, args.url.rstrip("/") + path, headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise Failed(f"cannot reach {args.url}: {exc}") from None
    if response.status_code == 422 and "errors" in response.json():
        raise Invalid(source, response.json()["errors"])
    if response.status_code == 422 and "golden" in response.json():
        print_golden(response.json()["golden"])
        raise Failed(response.json()["error"]["message"])
    if response.status_code == 412:
        raise Failed(
            f"412: the rules moved on since the version you edited (the newest is "
            f"{response.json().get('error', {}).get('latest_version', 'newer')}): "
            f"turnout rules get > FILE, make your change again, then turnout rules apply FILE"
        )
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise Failed(f"{response.status_code}: {message}")
    return response


def handled(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except Failed as exc:
            print(f"turnout rules: {exc}", file=sys.stderr)
            return 1
        except Invalid as exc:
            print_problems(exc.source, exc.errors)
            return 1

    return run


def print_problems(source: str, errors: list[dict[str, Any]]) -> None:
    for error in errors:
        where = f"{source}:{error['line']}" if error.get("line") else source
        print(f"{where}: {error['path'] or '<root>'}: {error['message']}", file=sys.stderr)
    print(f"{len(errors)} problem(s) in {source}", file=sys.stderr)


def print_golden(results: list[dict[str, Any]]) -> None:
    """Each golden set's verdict, and every failing row with its failures and the answer's start."""
    for result in results:
        verdict = "passed" if result["passed"] else "FAILED"
        print(
            f"golden {result['route']} on {result['backend']}: {verdict}, {result['pass_ratio']:.0%} of "
            f"{result['rows']} rows ({result['min_pass_ratio']:.0%} needed)",
            file=sys.stderr,
        )
        for row in result["failing"]:
            print(f"  {shown(row['name'])}{' (critical)' if row['critical'] else ''}", file=sys.stderr)
            for failure in row["failures"]:
                print(f"      {shown(failure)}", file=sys.stderr)
            print(f"      answer: {shown(row['answer'][:200])}", file=sys.stderr)


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise Failed(f"cannot read {path}: {exc.strerror}") from None


@handled
def get_command(args: argparse.Namespace) -> int:
    path = "/admin/rules" if args.version is None else f"/admin/rules/versions/{args.version}"
    found = call(args, "GET", path).json()
    # The document alone on stdout, so `turnout rules get > rules.yaml` round-trips; who and when on stderr.
    about = f"version {found['version']} by {found['author']} ({found['source']}) at {stamp(found['created_at'])}"
    print(about + (f": {found['message']}" if found["message"] else ""), file=sys.stderr)
    print(found["yaml"], end="" if found["yaml"].endswith("\n") else "\n")
    return 0


def validate_command(args: argparse.Namespace, validate_offline: Any) -> int:
    if not args.url:
        return int(validate_offline(args))
    return int(handled(_validate_online)(args))


def _validate_online(args: argparse.Namespace) -> int:
    call(args, "POST", "/admin/rules/validate", str(args.file), content=read(args.file))
    print(f"{args.file}: valid for {args.url}")
    return 0


@handled
def dry_run_command(args: argparse.Namespace) -> int:
    path = "/admin/rules/dry-run" + ("?golden=true" if args.golden else "")
    result = call(args, "POST", path, str(args.file), content=read(args.file)).json()
    if "golden" in result:
        print_golden(result["golden"])
    print(f"{result['changed']} of {result['sampled']} recent request(s) would route differently")
    for change in result["changes"]:
        before, after = change["from"], change["to"]
        print(
            f"  {change['request_id']}  {change['tenant']}: {before['route']}/{before['backend']} -> "
            f"{after['route']}/{after['backend']}{' (' + after['error'] + ')' if after.get('error') else ''}"
            f"  {json.dumps(change['preview'])}"
        )
    return 0


@handled
def apply_command(args: argparse.Namespace) -> int:
    text = read(args.file)
    expected = args.if_match if args.if_match is not None else call(args, "GET", "/admin/rules").json()["version"]
    headers = {"if-match": f'"{expected}"', "x-turnout-change-message": args.message}
    if args.force_golden:
        headers["x-turnout-force-golden"] = "true"
    answer = call(args, "PUT", "/admin/rules", str(args.file), content=text, headers=headers)
    print(f"rules version {answer.json()['version']} applied (was {expected})")
    return 0


@handled
def history_command(args: argparse.Namespace) -> int:
    for version in call(args, "GET", f"/admin/rules/history?limit={args.limit}").json():
        print(
            f"{version['version']:>6}  {stamp(version['created_at'])}  {version['source']:<9} "
            f"{shown(version['author']):<12} {shown(version['message'])}"
        )
    return 0


@handled
def diff_command(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"/admin/rules/diff?from={args.before}&to={args.after}").json()
    print(found["unified"], end="")
    return 0


@handled
def rollback_command(args: argparse.Namespace) -> int:
    body = {"version": args.version, "message": args.message}
    answer = call(args, "POST", "/admin/rules/rollback", f"version {args.version}", json=body)
    print(f"rules version {answer.json()['version']} applied: the document of version {args.version}")
    return 0


@handled
def audit_command(args: argparse.Namespace) -> int:
    for entry in call(args, "GET", f"/admin/rules/audit?limit={args.limit}").json():
        print(
            f"{stamp(entry['at'])}  {entry['action']:<8} {entry['source']:<9} {shown(entry['author']):<12} "
            f"version {entry['version']}  {shown(entry['message'])}"
        )
        if entry["action"] == "rejected":
            print("    " + "\n    ".join(shown(line) for line in str(entry["detail"]).split("\n")))
    return 0


def shown(text: object) -> str:
    """Text from the store as one line on a terminal: control characters (an escape sequence, a
    carriage return that would forge a line) appear escaped, never acted on."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))
