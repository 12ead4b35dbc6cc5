"""``POST /v1/feedback``: a client scores an answer it was given, by the answer's request id
(``x-request-id``), with its own key. The score lands on the route, variant and backend that
answered, in the variant report."""

from __future__ import annotations

from typing import Literal, Self

import orjson
from pydantic import Field, StrictStr, model_validator
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import GatewayError, InvalidRequest
from contracts.strict import Strict
from gateway.request_body import parse_body, read_body
from gateway.serving.answer import JSON
from gateway.state import gateway_state, request_snapshot

MAX_BODY_BYTES = 16 * 1024
LABEL_SCORES = {"good": 1.0, "bad": 0.0}


class FeedbackRequest(Strict):
    request_id: StrictStr = Field(min_length=1, max_length=256)
    score: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    label: Literal["good", "bad"] | None = None
    comment: StrictStr | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def one_verdict(self) -> Self:
        if (self.score is None) == (self.label is None):
            raise ValueError('give exactly one of "score" (0 to 1) or "label" ("good" or "bad")')
        return self

    @property
    def value(self) -> float:
        return self.score if self.score is not None else LABEL_SCORES[self.label or "bad"]


class RequestNotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "request_not_found"


async def feedback(request: Request) -> Response:
    resources = gateway_state(request).resources
    principal = request_snapshot(request).keyring.authenticate(request.headers)
    await resources.limits.admit(principal)
    if not resources.feedback.is_on:
        raise InvalidRequest("feedback is off here (TURNOUT_FEEDBACK_TTL_S=0)", code="feedback_off")
    asked = parse_body(FeedbackRequest, await read_body(request, MAX_BODY_BYTES))
    scored = await resources.feedback.score(principal.tenant, asked.request_id, asked.value, asked.comment)
    if scored is None:
        raise RequestNotFound(
            f"no answered request {asked.request_id!r} to score (unknown, expired, or another key's)",
            param="request_id",
        )
    served, replaced = scored
    body = {
        "object": "feedback",
        "request_id": asked.request_id,
        "score": asked.value,
        "replaced": replaced,
        "route": served.route,
        "variant": None if served.variant == "-" else served.variant,
    }
    return Response(orjson.dumps(body), media_type=JSON)
