"""Request ids on every response, and one access-log line per API request.

The line carries what happened, never what was said: request id, tenant, route, backend, what
decided the route, cache status, HTTP status, latency and tokens; no prompt text, no key.
``TURNOUT_LOG_FORMAT=json`` (or ``turnout serve --log-format json``) writes every log line as
one JSON object, the access line's fields as its own keys.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import time

from starlette.types import Scope

from backends.request_context import REQUEST_ID_HEADER

access_log = logging.getLogger("turnout.access")
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
"""What a caller's id may be; anything else is replaced, so logs and upstream headers stay clean."""
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()


class RequestIdSource:
    """Request ids of 32 hex digits: a random prefix per process and a counter. As unique as a
    uuid4 across replicas and workers (a forked worker draws its own prefix), without a call to the
    system's random source per request (profiled: ``uuid4`` was 2 % of the pinned path)."""

    def __init__(self) -> None:
        self._restart()
        os.register_at_fork(after_in_child=self._restart)

    def _restart(self) -> None:
        self._prefix = secrets.token_hex(10)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


REQUEST_IDS = RequestIdSource()


def request_id_of(scope: Scope) -> str:
    """The caller's ``x-request-id`` when it is a valid one, else a new id."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER_BYTES:
            text: str = value.decode("latin-1")
            if VALID_REQUEST_ID.fullmatch(text):
                return text
    return REQUEST_IDS.next()


def access_logging() -> bool:
    """Whether access lines are written: when not, a request need not even assemble its fields."""
    return access_log.isEnabledFor(logging.INFO)


def log_access(fields: dict[str, object]) -> None:
    """One line: ``key=value`` pairs in text, the fields themselves in JSON."""
    if access_log.isEnabledFor(logging.INFO):
        line = " ".join(f"{key}={value}" for key, value in fields.items())
        access_log.info(line, extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx logs every upstream request at INFO: noise, and a cost on the hot path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
