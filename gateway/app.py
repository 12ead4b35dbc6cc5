"""The FastAPI application: ``create_app(settings)`` builds it; nothing happens at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from gateway import api, probes
from gateway.access_log import RequestIds, configure_logging
from gateway.admin import api as admin
from gateway.error_handlers import install_error_handlers
from gateway.redaction import RedactingFilter
from gateway.rules import Rules, load_rules
from gateway.settings import Settings
from gateway.signals import ProcessSignals
from gateway.state import SnapshotLeases, open_state

REDACTED_LOGGERS = ("turnout", "uvicorn.error", "LiteLLM")
"""Loggers that may carry an upstream's words."""


def create_app(
    settings: Settings | None = None,
    rules: Rules | None = None,
    http_client: httpx.AsyncClient | None = None,
    handle_signals: bool = False,
) -> FastAPI:
    """Build the app; its lifespan loads ``rules`` (or the file in ``settings.config``) and opens every client.

    ``http_client`` replaces the pooled upstream client (tests inject a fault-injecting transport);
    the app then leaves closing it to the caller. ``handle_signals`` (the server, not tests): SIGHUP
    re-reads the rules file, SIGTERM drains before the server stops.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_state(settings, rules or load_rules(settings.config), http_client)
        app.state.gateway = state
        redacting = RedactingFilter(lambda: state.snapshot.redactor)
        for name in REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(redacting)
        signals = ProcessSignals(state, settings.config if rules is None else None)
        if handle_signals:
            signals.install()
        try:
            yield
        finally:
            await signals.aclose()
            await state.aclose()
            for name in REDACTED_LOGGERS:
                logging.getLogger(name).removeFilter(redacting)

    app = FastAPI(title="Turnout", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(SnapshotLeases)
    app.add_middleware(RequestIds)
    app.include_router(api.router)
    app.include_router(probes.router)
    app.include_router(admin.router)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving: settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, handle_signals=True)
