"""What the serving process does on signals: SIGHUP re-reads the rules file; SIGTERM drains.

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
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.rules import RulesInvalid, load_rules
from gateway.state import GatewayState

log = logging.getLogger("turnout")


class ProcessSignals:
    def __init__(self, state: GatewayState, rules_file: Path | None) -> None:
        self._state = state
        self._rules_file = rules_file
        self._tasks: set[asyncio.Task[None]] = set()
        self._previous_term: Any = None
        self._installed = False

    def install(self) -> None:
        """Only from the main thread (where signals are delivered); elsewhere it does nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        if self._rules_file is not None:
            self._loop.add_signal_handler(signal.SIGHUP, self._start, self.reload)
        self._previous_term = signal.signal(signal.SIGTERM, self._on_term)
        self._installed = True

    async def reload(self) -> None:
        """Re-reads the rules file and swaps to it; an invalid file or a failed build changes nothing."""
        assert self._rules_file is not None
        version = self._state.snapshot.version
        try:
            rules = await asyncio.to_thread(load_rules, self._rules_file)
            snapshot = await self._state.apply(rules)
        except RulesInvalid as exc:
            log.error("SIGHUP: %s is invalid; rules version %d keeps serving\n%s", self._rules_file, version, exc)
            return
        except Exception:
            log.exception(
                "SIGHUP: the rules in %s failed to build; version %d keeps serving", self._rules_file, version
            )
            return
        log.info("SIGHUP: rules version %d from %s serving", snapshot.version, self._rules_file)

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
            if self._rules_file is not None:
                self._loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGTERM, self._previous_term)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
