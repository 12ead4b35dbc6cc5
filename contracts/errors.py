"""The one error tree, shared by every layer.

Every error carries its HTTP status and OpenAI error ``type`` and renders as an
OpenAI-style body: ``{"error": {"message", "type", "param", "code"}}``.

    GatewayError                      500 api_error
    ├── RequestError                  400 invalid_request_error  (the caller's mistake)
    │   ├── MalformedJSON             400
    │   ├── BodyTooLarge              413
    │   ├── InvalidRequest            422  names the offending field in ``param``
    │   └── UnknownModel              404  code=model_not_found
    ├── AuthenticationFailed          401 authentication_error
    ├── PermissionDenied              403 permission_error
    ├── RateLimited                   429 rate_limit_error       (a per-key limit, Retry-After set)
    ├── ClientClosedRequest           499  the client left; its work was cancelled
    └── BackendError                  502 upstream_error         (a backend failed us)
        ├── BackendBadResponse        502  malformed body, cut stream, 5xx
        │   └── ResponseTooLarge      502  code=upstream_response_too_large
        ├── BackendUnavailable        503  connection refused or reset
        │   └── NoBackendAvailable    503  every backend of the route skipped (breakers open)
        ├── BackendTimeout            504
        │   └── BudgetExceeded        504  the request's latency budget ran out
        ├── BackendRateLimited        429  the upstream's 429, Retry-After kept
        ├── BackendsBusy              429  every backend at its in-flight bound, Retry-After set
        └── BackendRejected           4xx  the upstream refused the request itself

Errors are raised, never returned. ``details`` adds fields to the error object: when a
route's backends are exhausted it names the route, the budget and every attempt.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status: int = 500
    error_type: str = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}
        self.details: dict[str, object] = {}

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}
        return orjson.dumps({"error": {**error, **self.details}})


class RequestError(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class MalformedJSON(RequestError):
    default_code = "invalid_json"


class BodyTooLarge(RequestError):
    status = 413
    default_code = "request_too_large"


class InvalidRequest(RequestError):
    status = 422
    default_code = "invalid_value"


class ContentBlocked(RequestError):
    """An input guardrail whose action is ``block`` fired on the request."""

    default_code = "content_blocked"


class UnknownModel(RequestError):
    status = 404
    default_code = "model_not_found"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    error_type = "permission_error"
    default_code = "route_not_allowed"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class ClientClosedRequest(GatewayError):
    status = 499  # nginx's status for a request its client abandoned: logged and counted, seen by nobody
    default_code = "client_closed_request"


class StateStoreUnavailable(GatewayError):
    """The shared state store (Redis) did not answer a call that cannot be served without it."""

    status = 503
    default_code = "state_store_unavailable"


class BackendError(GatewayError):
    status = 502
    error_type = "upstream_error"
    upstream_status: int | None = None
    """The status the backend answered with, when it answered."""


class BackendBadResponse(BackendError):
    default_code = "bad_upstream_response"


class ResponseTooLarge(BackendBadResponse):
    default_code = "upstream_response_too_large"


class BackendUnavailable(BackendError):
    status = 503
    default_code = "upstream_unavailable"


class NoBackendAvailable(BackendUnavailable):
    default_code = "no_backend_available"


class BackendTimeout(BackendError):
    status = 504
    default_code = "upstream_timeout"


class BudgetExceeded(BackendTimeout):
    default_code = "budget_exceeded"


class BackendRateLimited(BackendError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "upstream_rate_limited"


class BackendsBusy(BackendError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "backends_busy"


class AnswerRejected(BackendError):
    """A backend's answer failed an output guardrail whose action is ``fallback``: the route's next
    backend is tried, whatever the route's fallback policy; nothing is held against the backend."""

    default_code = "guardrail_fallback"

    def __init__(self, message: str, *, guardrail: str, backend: str, answer: object) -> None:
        super().__init__(message)
        self.guardrail = guardrail
        self.backend = backend
        self.answer = answer
        """The rejected answer (a ``ChatCompletion``): what the withheld answer is made from."""


class ExternalRedactionFailed(BackendError):
    """An ``applies_to: external`` check could not redact the request (its ``on_error: block``):
    it is not sent to the external backend; the route's next backend is tried."""

    default_code = "external_redaction_failed"


class BackendRejected(BackendError):
    """The upstream refused the request itself (a 4xx): another backend would too."""

    error_type = "invalid_request_error"

    def __init__(self, message: str, *, status: int, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status


ANTHROPIC_ERRORS = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    413: (413, "request_too_large"),
    422: (400, "invalid_request_error"),
    429: (429, "rate_limit_error"),
    499: (499, "invalid_request_error"),
    502: (500, "api_error"),
    503: (529, "overloaded_error"),
    504: (504, "timeout_error"),
}
"""Our status to Anthropic's status and error type: Anthropic answers a wrong value with 400 (not
422), an upstream failure with 500, and being out of capacity with 529, which its SDK retries."""


def anthropic_error(error: GatewayError) -> tuple[int, bytes]:
    """The error as Anthropic's API writes it: ``{"type": "error", "error": {"type", "message"}}``."""
    status, kind = ANTHROPIC_ERRORS.get(error.status, (error.status, kind_of(error)))
    return status, orjson.dumps({"type": "error", "error": {"type": kind, "message": error.message}})


def kind_of(error: GatewayError) -> str:
    return "invalid_request_error" if error.status < 500 else "api_error"
