from __future__ import annotations

import hashlib

import pytest
from starlette.datastructures import Headers

from contracts.errors import AuthenticationFailed, PermissionDenied
from gateway.auth import AuthConfigError, KeyRing
from gateway.rules import parse_rules
from gateway.settings import Settings

RULES = f"""
backends: {{b: {{kind: openai, endpoint: "http://x/v1", model: m}}}}
routes: {{code: {{backends: [b]}}, general: {{backends: [b]}}}}
default_route: general
api_keys:
  - {{tenant: team-a, sha256: "{hashlib.sha256(b"sk-a").hexdigest()}", routes: [code]}}
  - {{tenant: team-b, key_env: TEST_B_KEY}}
"""


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    monkeypatch.setenv("TEST_B_KEY", "sk-b")
    return KeyRing.from_config(parse_rules(RULES), Settings(api_keys={"sk-env": "team-env"}))


def bearer(key: str) -> Headers:
    return Headers({"authorization": f"Bearer {key}"})


def test_keys_map_to_tenants_from_hash_env_var_and_settings(keyring: KeyRing) -> None:
    assert keyring.authenticate(bearer("sk-a")).tenant == "team-a"
    assert keyring.authenticate(bearer("sk-b")).tenant == "team-b"
    assert keyring.authenticate(bearer("sk-env")).tenant == "team-env"
    assert keyring.authenticate(Headers({"x-api-key": "sk-b"})).tenant == "team-b"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer "}, {"authorization": "Basic sk-a"}])
def test_missing_key_is_401(keyring: KeyRing, headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationFailed):
        keyring.authenticate(Headers(headers))


def test_wrong_key_is_401(keyring: KeyRing) -> None:
    with pytest.raises(AuthenticationFailed, match="invalid API key"):
        keyring.authenticate(bearer("sk-A"))


def test_key_limited_to_routes_is_403_elsewhere(keyring: KeyRing) -> None:
    principal = keyring.authenticate(bearer("sk-a"))
    principal.require_route("code")
    with pytest.raises(PermissionDenied):
        principal.require_route("general")


def test_keys_are_kept_only_as_digests(keyring: KeyRing) -> None:
    assert "sk-b" not in repr(vars(keyring))


def test_unset_key_env_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_B_KEY", raising=False)
    with pytest.raises(AuthConfigError, match="TEST_B_KEY"):
        KeyRing.from_config(parse_rules(RULES), Settings())


def test_no_keys_refuses_to_start_unless_auth_is_explicitly_off() -> None:
    rules = parse_rules(RULES.split("api_keys:")[0])
    with pytest.raises(AuthConfigError, match="TURNOUT_AUTH_DISABLED"):
        KeyRing.from_config(rules, Settings())
    assert KeyRing.from_config(rules, Settings(auth_disabled=True)).authenticate(Headers({})).tenant == "anonymous"


def test_auth_is_on_by_default() -> None:
    assert Settings().auth_disabled is False
