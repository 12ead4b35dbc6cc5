"""API keys: kept only as SHA-256 digests, each mapped to a tenant and its allowed routes."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from starlette.datastructures import Headers

from contracts.errors import AuthenticationFailed, PermissionDenied
from gateway.resilience.specs import RateLimitSpec
from gateway.rules import Rules
from gateway.settings import Settings


class AuthConfigError(Exception):
    """The keys cannot be set up (a key_env is unset, or no key exists while auth is on)."""


@dataclass(frozen=True)
class Principal:
    tenant: str
    routes: frozenset[str] | None = None
    """``None``: every route."""
    key_id: str = ""
    """A short digest prefix naming the key in counters and logs (never the key itself)."""
    limits: RateLimitSpec | None = None

    def require_route(self, route: str) -> None:
        if self.routes is not None and route not in self.routes:
            raise PermissionDenied(f"this API key may not use route {route!r}", param="model")

    def may_use(self, route: str) -> bool:
        return self.routes is None or route in self.routes


ANONYMOUS = Principal(tenant="anonymous")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: list[tuple[bytes, Principal]], is_enabled: bool = True) -> None:
        self._keys = keys
        self.is_enabled = is_enabled

    @classmethod
    def from_config(cls, rules: Rules, settings: Settings) -> KeyRing:
        if settings.auth_disabled:
            return cls([], is_enabled=False)
        keys: list[tuple[bytes, Principal]] = []
        for entry in rules.api_keys:
            routes = frozenset(entry.routes) if entry.routes is not None else None
            key_digest = _entry_digest(entry.sha256, entry.key_env)
            keys.append((key_digest, Principal(entry.tenant, routes, key_digest.hex()[:16], entry.limits)))
        for key, tenant in settings.api_keys.items():
            keys.append((digest(key), Principal(tenant, key_id=digest(key).hex()[:16])))
        if not keys:
            raise AuthConfigError(
                "no API keys: add api_keys to the rules file or TURNOUT_API_KEYS, "
                "or turn auth off explicitly with TURNOUT_AUTH_DISABLED=true"
            )
        return cls(keys)

    def authenticate(self, headers: Headers) -> Principal:
        if not self.is_enabled:
            return ANONYMOUS
        presented = _presented_key(headers)
        if presented is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        wanted = digest(presented)
        found: Principal | None = None
        for key_digest, principal in self._keys:  # every key compared: the time does not tell which matched
            if hmac.compare_digest(key_digest, wanted):
                found = principal
        if found is None:
            raise AuthenticationFailed("invalid API key")
        return found


def _presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    return headers.get("x-api-key")


def _entry_digest(sha256: str | None, key_env: str | None) -> bytes:
    if sha256 is not None:
        return bytes.fromhex(sha256)
    assert key_env is not None  # the rules schema demands one of the two
    key = os.environ.get(key_env)
    if not key:
        raise AuthConfigError(f"api_keys: environment variable {key_env} is not set")
    return digest(key)
