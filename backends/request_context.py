"""The id of the request being served, for the calls a backend makes on its behalf.

Set once per request by the gateway; a context variable, so hedged attempts (tasks started
inside the request) see it too, and backends need no extra parameter to forward it.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("turnout_request_id", default=None)
REQUEST_ID_HEADER = "x-request-id"


def upstream_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` plus the current request's id, when there is one."""
    request_id = REQUEST_ID.get()
    return headers if request_id is None else {**headers, REQUEST_ID_HEADER: request_id}
