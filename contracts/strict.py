"""The base of every rules-file model: unknown keys are errors and values never change."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
"""What a backend, route, alias, tenant or rule may be called."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
RESERVED_PREFIXES = ("TURNOUT_", "REDIS", "LITELLM_", "OTEL_")
"""Variables the gateway or its libraries read for themselves; never a key a rules file may name."""


def check_secret_env_name(name: str) -> str:
    """A rules file names the environment variable that holds a key, and the gateway sends or
    compares its value: so it must be a secret meant for that (upper case, ending in ``_KEY``,
    ``_TOKEN``, ``_SECRET`` or ``_PASSWORD``), never the gateway's own settings (``TURNOUT_*``,
    ``TURNOUT_ADMIN_KEY`` included), Redis, litellm's or OpenTelemetry's, nor a variable that is not a
    secret (``HOME``, ``PATH``): a rule could otherwise send it to any server it names."""
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,127}", name):
        raise ValueError(f"{name!r}: an environment variable name in upper case (A-Z, 0-9, _)")
    if name.startswith(RESERVED_PREFIXES):
        raise ValueError(f"{name}: variables starting {', '.join(RESERVED_PREFIXES)} are the gateway's own")
    if not name.endswith(SECRET_SUFFIXES):
        raise ValueError(f"{name}: a key's variable ends in {', '.join(SECRET_SUFFIXES)} (it must hold a secret)")
    return name


SecretEnvName = Annotated[str, AfterValidator(check_secret_env_name)]


def check_http_url(url: str) -> str:
    """A base URL a backend is reached at: http or https, a host, a port that exists, no spaces or
    control characters (a newline in a URL would split a request line)."""
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("a URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host")
    if port == 0:
        raise ValueError("port 0 is not a port to connect to")
    return url


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
