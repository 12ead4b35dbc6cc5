"""Regular expressions that operators supply (routing rules' ``when.regex``), compiled with RE2.

RE2 (Google's engine, PyPI ``google-re2``) matches in time linear in the text whatever the
pattern, so a pattern like ``(a+)+$`` cannot freeze the gateway on a long prompt, as Python's
backtracking ``re`` does. Its syntax is Perl's without backreferences and lookaround; a pattern
using them is refused at validation with RE2's own message. Its compiled program is bounded in
memory too, so a pattern that would explode (``((a{100}){100}){100}``) is refused as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import re2

MAX_PROGRAM_BYTES = 2 * 1024 * 1024
"""RE2's memory for one pattern, its compiled program and its match-time cache together (past it,
RE2 matches more slowly, never with more memory)."""
MAX_PATTERN_CHARS = 4096
MAX_PATTERNS = 100
"""Patterns in one rules document: with :data:`MAX_PROGRAM_BYTES` each, at most 200 MiB in all."""


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


class PatternInvalid(ValueError):
    """An operator's pattern that RE2 refuses, with its reason."""


def compile_pattern(pattern: str) -> Pattern:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternInvalid(f"longer than {MAX_PATTERN_CHARS} characters")
    options = re2.Options()
    options.log_errors = False  # the refusal is the caller's to report, not RE2's to print
    options.max_mem = MAX_PROGRAM_BYTES
    try:
        compiled: Pattern = re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternInvalid(f"RE2 refuses it: {reason}") from None
    return compiled


class Match(Protocol):
    def start(self) -> int: ...

    def end(self) -> int: ...


class FindingPattern(Protocol):
    def search(self, text: str) -> object | None: ...

    def finditer(self, text: str) -> Iterator[Match]: ...


MAX_SET_PROGRAM_BYTES = 16 * 1024 * 1024


def compile_any_of(patterns: list[str], words: list[str]) -> FindingPattern:
    """One RE2 program matching any of ``patterns`` (each checked alone first, for its own error) or
    any of ``words`` as a whole word, case-insensitively: one pass over a text, however many."""
    for pattern in patterns:
        compile_pattern(pattern)
    alternatives = [f"(?:{p})" for p in patterns]
    if words:
        escaped = "|".join(re2.escape(w) for w in words)
        alternatives.append(rf"(?i)\b(?:{escaped})\b")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_SET_PROGRAM_BYTES
    try:
        compiled: FindingPattern = re2.compile("|".join(alternatives), options=options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternInvalid(f"RE2 refuses them together: {reason}") from None
    return compiled
