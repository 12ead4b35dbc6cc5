"""Keeping provider credentials inside the gateway.

An upstream may echo what it was sent (an ``Authorization: Bearer <key>`` header in its error
message, say), and the gateway relays upstream messages to callers, writes them into stream error
events and logs them. Every configured provider key is replaced by ``[redacted]`` at each of those
exits: error bodies, stream error events, and log records (tracebacks included).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping

from gateway.rules import Rules

MASK = "[redacted]"
SHORTEST_SECRET = 8
"""Shorter values are not keys, and masking them would garble ordinary text."""


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        kept = sorted({s for s in secrets if len(s) >= SHORTEST_SECRET}, key=len, reverse=True)
        self._text = re.compile("|".join(map(re.escape, kept))) if kept else None
        self._bytes = re.compile(b"|".join(re.escape(s.encode()) for s in kept)) if kept else None

    @classmethod
    def for_rules(cls, rules: Rules, environ: Mapping[str, str] = os.environ) -> Redactor:
        """Every key the rules' backends send upstream (the values of their ``api_key_env``)."""
        names = {getattr(spec, "api_key_env", None) for spec in rules.backends.values()}
        return cls(environ[name] for name in names if name and environ.get(name))

    @property
    def has_secrets(self) -> bool:
        return self._text is not None

    def text(self, text: str) -> str:
        return text if self._text is None else self._text.sub(MASK, text)

    def bytes(self, data: bytes) -> bytes:
        return data if self._bytes is None else self._bytes.sub(MASK.encode(), data)


class RedactingFilter(logging.Filter):
    """Masks the secrets in a record's message and traceback before any handler writes it, with the
    redactor ``current()`` gives (that of the rules serving now)."""

    def __init__(self, current: Callable[[], Redactor]) -> None:
        super().__init__()
        self.current = current

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.current()
        if not redactor.has_secrets:
            return True  # nothing to mask: leave the record (and its traceback) to be formatted lazily
        record.msg, record.args = redactor.text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redactor.text(logging.Formatter().formatException(record.exc_info))
        return True
