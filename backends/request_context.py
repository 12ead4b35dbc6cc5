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
TRACE_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("turnout_trace_headers", default=None)
"""``traceparent`` (and ``tracestate``) of the backend attempt being made, when tracing is on."""


def upstream_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the current request's id, when there is one, the attempt's trace context, and
    what a synthetic request is."""
    request_id, synthetic, trace = REQUEST_ID.get(), SYNTHETIC.get(), TRACE_HEADERS.get()
    if request_id is not None:
        headers = {**headers, REQUEST_ID_HEADER: request_id}
    if trace is not None:
        headers = {**headers, **trace}
    return headers if synthetic is None else {**headers, SYNTHETIC_HEADER: synthetic}
