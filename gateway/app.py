"""The FastAPI application: ``create_app(settings)`` builds it; nothing happens at import."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import yaml
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from gateway import probes
from gateway.admin import api as admin
from gateway.admin import guardrails_api, rules_api
from gateway.admin.headers import AdminHeaders
from gateway.apis import routes as api
from gateway.error_handlers import install_error_handlers
from gateway.front import Gateway
from gateway.heap import settle_after_start
from gateway.live.coordinator import open_live_rules
from gateway.observe.access_log import configure_logging
from gateway.redaction import RedactingFilter
from gateway.resources import open_resources
from gateway.rules import Rules, read_rules
from gateway.settings import Settings
from gateway.signals import ProcessSignals

REDACTED_LOGGERS = ("turnout", "uvicorn.error", "LiteLLM")
"""Loggers that may carry an upstream's words."""
log = logging.getLogger("turnout")
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(
    settings: Settings | None = None,
    rules: Rules | None = None,
    http_client: httpx.AsyncClient | None = None,
    owns_process: bool = False,
) -> FastAPI:
    """Build the app; its lifespan opens every client and serves the newest stored rules version
    (the first start stores ``rules``, or the file in ``settings.config``, as version 1).

    ``http_client`` replaces the pooled upstream client (tests inject a fault-injecting transport);
    the app then leaves closing it to the caller. ``owns_process`` (the server, not tests nor an
    embedding program): SIGHUP re-reads the rules file, SIGTERM drains before the server stops,
    and the garbage collector is tuned for serving (``gateway/heap.py``).
    """
    settings = settings or Settings()
    rules_file = settings.config if rules is None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if rules is None:
            initial, started_with = await asyncio.to_thread(read_rules, settings.config)
        else:
            initial, started_with = rules, _as_yaml(rules)
        resources = await open_resources(settings, http_client)
        live = await open_live_rules(resources, settings, started_with, initial, rules_file)
        state = app.state.gateway = live.state
        app.state.live_rules = live
        redacting = RedactingFilter(lambda: state.snapshot.redactor)
        for name in REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(redacting)
        signals = ProcessSignals(state, live.reload_file if rules_file is not None else None)
        if owns_process:
            signals.install()
            settle_after_start(settings.gc_young_threshold)
        try:
            yield
        finally:
            await signals.aclose()
            await live.aclose()
            await state.aclose()
            for name in REDACTED_LOGGERS:
                logging.getLogger(name).removeFilter(redacting)

    app = Gateway(
        title="Turnout",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry asks for the tracer provider on every request (7 % of the pinned
        # path's CPU, bench/results/profile-pinned.txt) to find it unconfigured; Turnout's spans
        # are its own.
        telemetry=NO_FRAMEWORK_TELEMETRY,
    )
    install_error_handlers(app)
    app.add_middleware(AdminHeaders)
    app.include_router(api.router)
    app.include_router(probes.router)
    app.include_router(rules_api.router)
    app.include_router(admin.router)
    app.include_router(guardrails_api.router)
    return app


def _as_yaml(rules: Rules) -> str:
    return yaml.safe_dump(rules.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


def default_state_dir(rules_file: Path) -> Path:
    """``$XDG_STATE_HOME/turnout/<name>-<hash of the rules file's path>``: one history per rules file."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    where = str(rules_file.resolve())
    return base / "turnout" / f"{rules_file.stem}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.state_dir is None and settings.redis_url is None:
        settings = settings.model_copy(update={"state_dir": default_state_dir(settings.config)})
    return create_app(settings, owns_process=True)
