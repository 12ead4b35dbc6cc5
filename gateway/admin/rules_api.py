"""The live rules API under ``/admin/rules``: read, validate, dry-run, apply, history, diff, rollback.

Viewers read; editors validate, dry-run, apply and roll back. An apply names the version it edited
(``If-Match: "<version>"``): when another write got in first it is 412, never a silent overwrite.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import GatewayError, InvalidRequest, PermissionDenied, RequestError, UnknownModel
from gateway.admin_keys import Admin
from gateway.live.coordinator import LiveRules, VersionNotFound
from gateway.live.dry_run import dry_run
from gateway.live.example_edit import with_example
from gateway.live.gate import GoldenFailed, run_gate
from gateway.live.versions import Proposal, RulesVersion, changes, unified_diff
from gateway.live.weights import with_weights
from gateway.observe.samples import RoutingSample
from gateway.request_body import parse_json, read_body
from gateway.rules import MAX_VARIANTS, RulesInvalid
from gateway.state import gateway_state, request_snapshot
from gateway.yaml_source import MAX_DOCUMENT_BYTES

router = APIRouter(prefix="/admin/rules")
JSON = "application/json"
MESSAGE_HEADER = "x-turnout-change-message"
FORCE_HEADER = "x-turnout-force-golden"
MAX_HISTORY = 1000
MAX_DRY_RUN_PROMPTS = 1000
MAX_MESSAGE_CHARS = 500
VERSION = re.compile(r"[0-9]{1,12}")
"""A version number as it may be asked for: ASCII digits, not thousands of them."""


class PreconditionRequired(GatewayError):
    status = 428
    error_type = "invalid_request_error"
    default_code = "if_match_required"


def live_rules(request: Request) -> LiveRules:
    live: LiveRules = request.app.state.live_rules
    return live


def admin(request: Request) -> Admin:
    return request_snapshot(request).admins.authenticate(request.headers)


async def editor(request: Request) -> Admin:
    """The caller's admin key if it may write; a viewer's attempt is refused and audited."""
    found = admin(request)
    try:
        found.require_editor()
    except PermissionDenied as exc:
        await live_rules(request).refused_write(found.name, f"{request.method} {request.url.path}", exc.message)
        raise
    return found


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def invalid(exc: RulesInvalid) -> Response:
    errors = [problem.model_dump() for problem in exc.problems]
    error = {"message": str(exc), "type": "invalid_request_error", "param": None, "code": "rules_invalid"}
    return json_response({"valid": False, "errors": errors, "error": error}, status=422)


def golden_failed(exc: GoldenFailed) -> Response:
    """422 with every failing row of every set (name, which expectation, the answer's first 500 characters)."""
    error = {"message": str(exc), "type": "invalid_request_error", "param": None, "code": "golden_failed"}
    return json_response({"error": error, "golden": [result.summary() for result in exc.results]}, status=422)


async def yaml_body(request: Request) -> str:
    body = await read_body(request, min(gateway_state(request).settings.max_body_bytes, MAX_DOCUMENT_BYTES))
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise RequestError("the rules document is not UTF-8 text", code="invalid_encoding") from None


def version_document(version: RulesVersion) -> Response:
    return json_response(version.document(), headers={"etag": f'"{version.version}"'})


async def stored(live: LiveRules, version: int) -> RulesVersion:
    found = await live.store.get(version)
    if found is None:
        raise UnknownModel(f"rules version {version} does not exist", code="rules_version_not_found")
    return found


@router.get("")
async def get_rules(request: Request) -> Response:
    admin(request)
    live = live_rules(request)
    newest = await live.restore_if_lost()  # a store that lost its data answers what every replica serves
    return version_document(await stored(live, newest))


@router.post("/validate")
async def validate(request: Request) -> Response:
    await editor(request)
    try:
        await live_rules(request).check(await yaml_body(request))
    except RulesInvalid as exc:
        return invalid(exc)
    return json_response({"valid": True})


@router.put("")
async def apply(request: Request) -> Response:
    who = await editor(request)
    expected = if_match(request.headers.get("if-match"))
    text = await yaml_body(request)
    message = checked_message(request.headers.get(MESSAGE_HEADER, ""))
    force = forced(request.headers.get(FORCE_HEADER), message)
    try:
        version = await live_rules(request).apply(Proposal(text, who.name, message, "api", force), expected)
    except RulesInvalid as exc:
        return invalid(exc)
    except GoldenFailed as exc:
        return golden_failed(exc)
    return json_response({"version": version.version}, headers={"etag": f'"{version.version}"'})


def forced(header: str | None, message: str) -> bool:
    """``x-turnout-force-golden: true`` stores a change the golden gate refuses; the change message
    is its reason, so it must have one."""
    if header is None or header.strip().lower() in ("", "false", "0"):
        return False
    if header.strip().lower() not in ("true", "1"):
        raise InvalidRequest(f"{FORCE_HEADER}: true or false", param=FORCE_HEADER)
    if not message.strip():
        raise InvalidRequest(f"forcing the golden gate needs a reason: {MESSAGE_HEADER}", param=MESSAGE_HEADER)
    return True


@router.post("/weights")
async def propose_weights(request: Request) -> Response:
    """Body ``{"route": ..., "weights": {"<variant>": <int>}}``: the serving rules' text with those
    weights, to validate, dry-run and apply as any edit; nothing is stored."""
    await editor(request)
    payload = parse_json(await read_body(request, MAX_DOCUMENT_BYTES))
    if not isinstance(payload, dict) or not isinstance(payload.get("route"), str):
        raise InvalidRequest('want {"route": "...", "weights": {"<variant>": <weight>}}', param="route")
    weights = payload.get("weights")
    if not isinstance(weights, dict) or not weights or len(weights) > MAX_VARIANTS:
        raise InvalidRequest(f"weights: an object of 1 to {MAX_VARIANTS} variants and weights", param="weights")
    live = live_rules(request)
    serving = await stored(live, await live.restore_if_lost())
    text = await asyncio.to_thread(with_weights, serving.yaml, payload["route"], weights)
    return json_response({"yaml": text, "base_version": serving.version})


@router.post("/examples")
async def propose_example(request: Request) -> Response:
    """Body ``{"route", "prompt" | "request_id", "yaml"?}``: the rules' text (``yaml``, else the serving
    version's) with the prompt, or a sampled request's routing text, added to the router's examples,
    to validate, dry-run and apply as any edit; nothing is stored."""
    await editor(request)
    payload = parse_json(await read_body(request, MAX_DOCUMENT_BYTES * 2))
    if not isinstance(payload, dict) or not isinstance(payload.get("route"), str):
        raise InvalidRequest(
            'want {"route": "...", "prompt": "..."} or {"route": "...", "request_id": "..."}', param="route"
        )
    prompt = payload.get("prompt")
    if isinstance(payload.get("request_id"), str):
        prompt = sampled_text(gateway_state(request).resources.samples.recent(), payload["request_id"])
    if not isinstance(prompt, str):
        raise InvalidRequest("want the example's prompt, or the request_id of a sampled request", param="prompt")
    live = live_rules(request)
    serving = await stored(live, await live.restore_if_lost())
    edited = payload.get("yaml")
    base = edited if isinstance(edited, str) else serving.yaml
    text = await asyncio.to_thread(with_example, base, payload["route"], prompt)
    return json_response({"yaml": text, "base_version": serving.version, "prompt": prompt})


def sampled_text(samples: list[RoutingSample], request_id: str) -> str:
    for sample in samples:
        if sample.request_id == request_id:
            return sample.text
    raise InvalidRequest(f"request {request_id!r} is not among this replica's recent samples", param="request_id")


@router.post("/dry-run")
async def dry_run_rules(request: Request, golden: bool = False) -> Response:
    """Body: the proposed YAML; or JSON ``{"yaml": ..., "prompts": [{"prompt", "tenant"?, "model"?}]}``
    to replay those prompts instead of the recent requests. ``golden=true`` also runs the golden
    sets the change would be gated on (``golden``: each set's result; nothing is refused here)."""
    await editor(request)
    live, state = live_rules(request), gateway_state(request)
    text, prompts = await dry_run_body(request)
    try:
        proposed = await live.check(text)
    except RulesInvalid as exc:
        return invalid(exc)
    samples = prompts if prompts is not None else state.resources.samples.recent()
    result = await dry_run(request_snapshot(request), proposed, samples, state.resources.clients, state.settings)
    if golden:
        result["golden"] = [r.summary() for r in await run_gate(live.state, proposed)]
    return json_response(result)


async def dry_run_body(request: Request) -> tuple[str, list[RoutingSample] | None]:
    if not request.headers.get("content-type", "").startswith(JSON):
        return await yaml_body(request), None
    payload = parse_json(await read_body(request, gateway_state(request).settings.max_body_bytes))
    if not isinstance(payload, dict) or not isinstance(payload.get("yaml"), str):
        raise InvalidRequest('a JSON dry run is {"yaml": "...", "prompts": [...]}', param="yaml")
    given = payload.get("prompts")
    if given is None:
        return payload["yaml"], None
    if not isinstance(given, list) or not all(isinstance(p, dict) and isinstance(p.get("prompt"), str) for p in given):
        raise InvalidRequest(
            '"prompts" is a list of {"prompt": "...", "tenant"?: ..., "model"?: ..., "user"?: ...}', param="prompts"
        )
    if len(given) > MAX_DRY_RUN_PROMPTS:
        raise InvalidRequest(f"{len(given)} prompts: a dry run replays at most {MAX_DRY_RUN_PROMPTS}", param="prompts")
    samples = [
        RoutingSample(
            f"prompt-{i}",
            str(p.get("tenant", "anonymous")),
            str(p.get("model", "auto")),
            {},
            text,
            0.0,
            p["user"] if isinstance(p.get("user"), str) else None,
        )
        for i, p in enumerate(given)
        if isinstance(text := p["prompt"], str)
    ]
    return payload["yaml"], samples


@router.get("/history")
async def history(request: Request, limit: int = Query(20, ge=1, le=MAX_HISTORY)) -> Response:
    admin(request)
    return json_response([v.summary() for v in await live_rules(request).store.history(limit)])


@router.get("/audit")
async def audit(request: Request, limit: int = Query(50, ge=1, le=MAX_HISTORY)) -> Response:
    """Every write, refused ones too: who, when, what changed (the diff) or why it was refused."""
    admin(request)
    return json_response([entry.to_dict() for entry in await live_rules(request).store.audit(limit)])


@router.get("/versions/{version}")
async def get_version(request: Request, version: str) -> Response:
    admin(request)
    if not VERSION.fullmatch(version):
        raise InvalidRequest(f"{version[:20]!r}: give a version number", param="version")
    return version_document(await stored(live_rules(request), int(version)))


@router.get("/diff")
async def diff(request: Request) -> Response:
    admin(request)
    live = live_rules(request)
    before = await stored(live, query_version(request, "from"))
    after = await stored(live, query_version(request, "to"))
    body = await asyncio.to_thread(_diff, before, after)  # a large document's diff must not hold the loop
    return Response(body, media_type=JSON)


def _diff(before: RulesVersion, after: RulesVersion) -> bytes:
    return orjson.dumps({"unified": unified_diff(before, after), "changes": changes(before.yaml, after.yaml)})


@router.post("/rollback")
async def rollback(request: Request) -> Response:
    who = await editor(request)
    payload = parse_json(await read_body(request, gateway_state(request).settings.max_body_bytes))
    if not isinstance(payload, dict):
        raise InvalidRequest('give {"version": <int>, "message": "..."}', param="version")
    target = payload.get("version")
    if type(target) is not int or not 1 <= target < 10**12:  # a bool is an int to isinstance
        raise InvalidRequest('give {"version": <int>, "message": "..."}', param="version")
    message = checked_message(payload.get("message") or "")
    try:
        version = await live_rules(request).rollback(target, who.name, message)
    except VersionNotFound as exc:
        raise UnknownModel(str(exc), code="rules_version_not_found", param="version") from None
    except RulesInvalid as exc:
        return invalid(exc)
    return json_response({"version": version.version}, headers={"etag": f'"{version.version}"'})


def query_version(request: Request, name: str) -> int:
    value = request.query_params.get(name)
    if value is None or not VERSION.fullmatch(value):
        raise InvalidRequest(f"{name}: give a version number", param=name)
    return int(value)


def checked_message(message: object) -> str:
    """A change message as history, the audit and the log show it: one line of printable text."""
    if not isinstance(message, str):
        raise InvalidRequest("the change message is text", param="message")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidRequest(f"the change message is longer than {MAX_MESSAGE_CHARS} characters", param="message")
    if any(not character.isprintable() for character in message):
        raise InvalidRequest("the change message holds control characters: give one line of text", param="message")
    return message


def if_match(value: str | None) -> int:
    if value is None:
        raise PreconditionRequired(
            'PUT /admin/rules needs If-Match: "<version>", the version you edited (GET /admin/rules gives it as ETag)'
        )
    found = re.fullmatch(r'\s*(?:W/)?"?([0-9]{1,12})"?\s*', value)
    if found is None:
        raise InvalidRequest(f'If-Match {value!r}: give "<version>"', param="if-match")
    return int(found.group(1))
