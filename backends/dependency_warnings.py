"""Warnings a dependency emits while it serves a request are never the request's failure.

A process that turns warnings into errors (``python -W error``, ``PYTHONWARNINGS=error``, or a
test run with ``filterwarnings = error``) would otherwise fail a call the moment litellm, or
pydantic building one of litellm's types on first use, warns about its own internals: a
``UserWarning`` raised in the middle of ``acompletion`` becomes a 502. While at least one call is
inside :func:`dependency_warnings_ignored`, warnings attributed to the named packages are ignored;
the gateway's own warnings keep whatever the process says.

``warnings.catch_warnings`` cannot do this: it saves and restores the whole filter list, so two
calls overlapping on one event loop would restore each other's state out of order. Here one
filter entry is shared by every overlapping call, added by the first and removed by the last.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

DEPENDENCIES = ("litellm", "pydantic", "openai", "httpx", "aiohttp", "tokenizers", "tiktoken")
_FILTER = ("ignore", None, Warning, re.compile(r"(?:" + "|".join(DEPENDENCIES) + r")(?:\.|$)"), 0)
_active = [0]
"""How many calls are inside the scope (a list: mutated in place, never rebound)."""


@contextmanager
def dependency_warnings_ignored() -> Iterator[None]:
    """A scope (sync or across awaits) in which the dependencies' own warnings are ignored."""
    if _active[0] == 0:
        _add_filter()
    _active[0] += 1
    try:
        yield
    finally:
        _active[0] -= 1
        if _active[0] == 0:
            _remove_filter()


def _filters() -> list[Any]:
    return cast(list[Any], warnings.filters)  # a list; typeshed calls it a Sequence


def _add_filter() -> None:
    if _FILTER not in _filters():
        _filters().insert(0, _FILTER)
        _filters_changed()


def _remove_filter() -> None:
    # The list may have been swapped meanwhile (a catch_warnings scope elsewhere): remove what is ours.
    while _FILTER in _filters():
        _filters().remove(_FILTER)
    _filters_changed()


def _filters_changed() -> None:
    """Invalidate the per-module caches of earlier decisions, as ``warnings.filterwarnings`` does."""
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()
