"""The id of the request being served, for the calls a backend makes on its behalf.

Set once per request by the gateway; a context variable, so hedged attempts (tasks started
inside the request) see it too, and backends need no extra parameter to forward it.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("turnout_request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"
SYNTHETIC: ContextVar[str | None] = ContextVar("turnout_synthetic", default=None)
"""Why the gateway itself is asking (``golden``, ``warmup``): no client's request."""
SYNTHETIC_HEADER = "x-turnout-synthetic"


def upstream_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the current request's id, when there is one, and what a synthetic request is."""
    request_id, synthetic = REQUEST_ID.get(), SYNTHETIC.get()
    if request_id is not None:
        headers = {**headers, REQUEST_ID_HEADER: request_id}
    return headers if synthetic is None else {**headers, SYNTHETIC_HEADER: synthetic}
