"""Process settings, read from the environment with the prefix ``TURNOUT_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_ADMIN_KEY_CHARS = 16
"""An admin key can point backends anywhere and read every prompt: a guessable one is no key."""


def is_long_enough_for_admin(key: str) -> bool:
    """Whether ``key`` may be an admin key at all, wherever it comes from (the environment, a rules
    file's ``admin_keys``, a bearer token): an empty or short one never enables or matches anything."""
    return len(key.strip()) >= MIN_ADMIN_KEY_CHARS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TURNOUT_", extra="ignore")

    config: Path = Path("rules.yaml")
    """The rules file (routes, backends, keys)."""
    redis_url: str | None = None
    """Unset: the in-process cache, the embedded default."""
    cache_redis_url: str | None = None
    """A Redis of its own for the response cache and its flights, which may evict (``allkeys-lru``);
    rate limits, reports and rules versions stay on ``redis_url``, which must not. Unset: both on
    ``redis_url``."""
    cache_timeout_ms: int = 50
    """Longest a cache store call may take before the request is served uncached."""
    admin_key: SecretStr | None = None
    """An editor key for the admin API (at least 16 characters). Unset or empty: the API stays off
    unless the rules' ``admin_keys`` name one (Compose's ``${TURNOUT_ADMIN_KEY:-}`` is the empty string)."""
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator("admin_key")
    @classmethod
    def _admin_key_is_long(cls, key: SecretStr | None) -> SecretStr | None:
        if key is None or not key.get_secret_value().strip():
            return None  # empty is unset: the admin API stays off, it never accepts an empty token
        if not is_long_enough_for_admin(key.get_secret_value()):
            raise ValueError(
                f"TURNOUT_ADMIN_KEY is shorter than {MIN_ADMIN_KEY_CHARS} characters: choose a long random "
                "secret (e.g. openssl rand -hex 24), or unset it to leave the admin API off"
            )
        return key

    """``json``: one JSON object a line (the access log's fields as keys), for log pipelines."""
    auth_disabled: bool = False
    """Serve without API keys. Must be set explicitly; auth is on by default."""
    api_keys: dict[str, str] = {}
    """Extra API keys from the environment, as JSON ``{"<key>": "<tenant>"}``; hashed at start-up."""
    max_body_bytes: int = 4 * 1024 * 1024
    state_dir: Path | None = None
    """Where rules versions are kept without Redis, so history survives a restart. Unset: the server
    (``turnout serve``) uses ``$XDG_STATE_HOME/turnout/<rules file>`` (``~/.local/state/...``); an
    app built in code keeps them in memory."""
    rules_poll_s: float = Field(1.0, gt=0)
    """How often a replica compares its rules version with the store's, to catch up on a missed
    announcement; also how often the rules file is checked for changes."""
    dry_run_samples: int = Field(1000, ge=0)
    """Recent requests whose routing inputs a dry run replays, per replica, in memory; 0: none kept."""
    dry_run_ttl_s: float = Field(3600.0, gt=0)
    """How long a sample is kept."""
    dry_run_exclude_tenants: list[str] = []
    """Tenants whose requests are never sampled (JSON list)."""
    responses_ttl_s: int = Field(30 * 24 * 3600, ge=1, le=365 * 24 * 3600)
    """How long a stored Responses API answer (``store: true``) can be retrieved or continued."""
    responses_max_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest stored response, its conversation included; a larger one is answered, not stored."""
    responses_memory_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """Without Redis: the most the in-process store holds; the oldest responses leave first."""
    feedback_ttl_s: int = Field(7 * 24 * 3600, ge=0, le=365 * 24 * 3600)
    """How long a request can be scored through ``POST /v1/feedback``; 0 turns feedback off."""
    feedback_max_ids: int = Field(100_000, ge=1)
    """Without Redis: the most request ids the process remembers for feedback, oldest out first."""
    otel_endpoint: str | None = None
    """Where traces go over OTLP/HTTP (``http://collector:4318``); unset: the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT``; neither: tracing is off. Needs the ``otel`` extra."""
    otel_capture_content: bool = False
    """Record prompts and answers in spans (redacted as logs are, cut to 4,096 characters)."""
    drain_timeout_s: float = 30.0
    """On SIGTERM: longest wait for requests and streams in flight before the server stops."""
    upstream_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """How backends reach their servers: aiohttp (faster, ``bench/results/profile-pinned.txt``), or
    httpx's own pool (HTTP/2 capable)."""
    gc_young_threshold: int = Field(50_000, ge=0)
    """The served process's youngest-generation collection threshold (Python's default: 700), set
    once start-up is done and its objects are frozen out of collection (``gateway/heap.py``); 0
    leaves the collector as Python sets it."""
    router_threads: int = 1
    """ONNX Runtime threads for the classifier, per gateway process."""
    router_max_batch: int | None = None
    """Most prompts scored in one model call; 1 turns micro-batching off. Unset: 16 on a GPU,
    1 on the CPU, where batching measured slower (``bench/results/router-latency.txt``)."""
