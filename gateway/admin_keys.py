"""Admin keys: who may read the rules and reports (viewers) and who may change the rules (editors).

Kept apart from client keys: a client key is a wrong admin key. Keys come from the rules file's
``admin_keys`` (each read from its environment variable when the rules are built) and from
``TURNOUT_ADMIN_KEY``, an editor named ``env``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers

from contracts.errors import AuthenticationFailed, PermissionDenied
from gateway.rules import Rules
from gateway.settings import Settings, is_long_enough_for_admin

Role = Literal["viewer", "editor"]


@dataclass(frozen=True)
class Admin:
    name: str
    role: Role

    def require_editor(self) -> None:
        if self.role != "editor":
            raise PermissionDenied(f"admin key {self.name!r} is a viewer: it may read, not change", code="viewer_key")


class AdminKeys:
    def __init__(self, keys: list[tuple[bytes, Admin]]) -> None:
        self._keys = keys

    @classmethod
    def from_config(cls, rules: Rules, settings: Settings) -> AdminKeys:
        keys = [
            (_digest(value), Admin(spec.name, spec.role))
            for spec in rules.admin_keys
            if is_long_enough_for_admin(value := os.environ.get(spec.key_env, ""))
        ]
        if settings.admin_key is not None:
            keys.append((_digest(settings.admin_key.get_secret_value()), Admin("env", "editor")))
        return cls(keys)

    def authenticate(self, headers: Headers) -> Admin:
        if not self._keys:
            raise PermissionDenied(
                "the admin API is off: set TURNOUT_ADMIN_KEY or admin_keys in the rules", code="admin_disabled"
            )
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not is_long_enough_for_admin(token.strip()):
            raise AuthenticationFailed("missing or wrong admin key", code="invalid_admin_key")
        wanted = _digest(token.strip())
        found: Admin | None = None
        for digest, admin in self._keys:  # every key compared: the time does not tell which matched
            if hmac.compare_digest(digest, wanted):
                found = admin
        if found is None:
            raise AuthenticationFailed("missing or wrong admin key", code="invalid_admin_key")
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
