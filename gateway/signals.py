"""What the serving process does on signals: SIGHUP re-reads the rules file now; SIGTERM drains.

On SIGTERM ``/readyz`` answers 503 at once, so a load balancer stops sending; requests and streams
in flight finish, up to ``TURNOUT_DRAIN_TIMEOUT_S``; then the server's own shutdown runs (it
stops listening and the lifespan closes everything). A second SIGTERM stops without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from gateway.state import GatewayState

log = logging.getLogger("turnout")


class ProcessSignals:
    def __init__(self, state: GatewayState, reload: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
        """``reload``: what SIGHUP does (re-read the rules file); ``None``: SIGHUP is not handled."""
        self._state = state
        self._reload = reload
        self._tasks: set[asyncio.Task[None]] = set()
        self._previous_term: Any = None
        self._installed = False

    def install(self) -> None:
        """Only from the main thread (where signals are delivered); elsewhere it does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        if self._reload is not None:
            self._loop.add_signal_handler(signal.SIGHUP, self._start, self._reload)
        self._previous_term = signal.signal(signal.SIGTERM, self._on_term)
        self._installed = True

    async def drain(self, signum: int, frame: FrameType | None) -> None:
        timeout_s = self._state.settings.drain_timeout_s
        log.info("draining: /readyz is 503; waiting up to %.0f s for %d request(s)", timeout_s, self._state.in_flight)
        if not await self._state.drained(timeout_s):
            log.warning("drain timeout: %d request(s) still in flight are cut", self._state.in_flight)
        self._stop_server(signum, frame)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self._state.draining:  # a second SIGTERM: stop now
            self._stop_server(signum, frame)
            return
        self._state.draining = True
        self._loop.call_soon_threadsafe(self._start, lambda: self.drain(signum, frame))

    def _stop_server(self, signum: int, frame: FrameType | None) -> None:
        if callable(self._previous_term):
            self._previous_term(signum, frame)  # the server's handler: it stops and runs the lifespan's end
        else:
            signal.raise_signal(signum)

    def _start(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = self._loop.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._installed:
            if self._reload is not None:
                self._loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGTERM, self._previous_term)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
