"""The gateway's one error tree.

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
    ├── RateLimited                   429 rate_limit_error
    └── BackendError                  502 upstream_error         (a backend failed us)
        ├── BackendBadResponse        502  malformed body, cut stream, 5xx
        ├── BackendUnavailable        503  connection refused or reset
        ├── BackendTimeout            504
        ├── BackendRateLimited        429  the upstream's 429, Retry-After kept
        └── BackendRejected           4xx  the upstream refused the request itself

Errors are raised, never returned. ``is_retryable`` says whether the next backend
of a route may be tried after this one.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status: int = 500
    error_type: str = "api_error"
    default_code: str | None = None
    is_retryable: bool = False

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

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}
        return orjson.dumps({"error": error})


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


class BackendError(GatewayError):
    status = 502
    error_type = "upstream_error"
    is_retryable = True


class BackendBadResponse(BackendError):
    default_code = "bad_upstream_response"


class BackendUnavailable(BackendError):
    status = 503
    default_code = "upstream_unavailable"


class BackendTimeout(BackendError):
    status = 504
    default_code = "upstream_timeout"


class BackendRateLimited(BackendError):
    status = 429
    error_type = "rate_limit_error"
    default_code = "upstream_rate_limited"


class BackendRejected(BackendError):
    """The upstream refused the request itself (a 4xx): another backend would too."""

    error_type = "invalid_request_error"
    is_retryable = False

    def __init__(self, message: str, *, status: int, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
