"""A stored rules version, and what changed between two of them."""

from __future__ import annotations

import difflib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import yaml

log = logging.getLogger("turnout")

Source = Literal["bootstrap", "api", "file", "rollback"]
SOURCES: tuple[Source, ...] = ("bootstrap", "api", "file", "rollback")


@dataclass(frozen=True)
class RulesVersion:
    version: int
    """Only grows: one more than the newest stored when it was stored."""
    yaml: str
    author: str
    """The admin key's name; ``file`` for the rules file, ``bootstrap`` for the first start."""
    created_at: float
    message: str
    source: Source
    golden: dict[str, str] = field(default_factory=dict)
    """The files the rules read, as they were (sha256): each route's golden set by route name, and the
    router's examples file as ``@examples``. A changed file is a new version."""

    def summary(self) -> dict[str, Any]:
        found = asdict(self)
        del found["yaml"]
        return found

    def document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parsed(cls, text: str | bytes, version: int) -> RulesVersion | None:
        """A stored version, or ``None`` for what is not one (truncated, garbage): logged and skipped."""
        try:
            return cls.from_dict({**json.loads(text), "version": version})
        except (ValueError, TypeError, KeyError) as exc:
            log.warning(
                "rules version %d in the store cannot be read (%s: %s); skipped", version, type(exc).__name__, exc
            )
            return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RulesVersion:
        return cls(
            version=int(data["version"]),
            yaml=str(data["yaml"]),
            author=str(data["author"]),
            created_at=float(data["created_at"]),
            message=str(data["message"]),
            source=data["source"],
            golden={str(route): str(sha) for route, sha in (data.get("golden") or {}).items()},
        )


@dataclass(frozen=True)
class Proposal:
    """A document to store, as the next version."""

    yaml: str
    author: str
    message: str
    source: Source
    force_golden: bool = False
    """Store it even if the golden gate refuses (an editor's call, with the message as the reason)."""
    golden: dict[str, str] = field(default_factory=dict)
    """The golden sets' sha256 by route, as checked: stored with the version."""

    def stored_as(self, version: int) -> RulesVersion:
        return RulesVersion(version, self.yaml, self.author, time.time(), self.message, self.source, self.golden)


@dataclass(frozen=True)
class AuditEntry:
    """One write to the rules, kept whether or not it was stored: applies, rollbacks, rejections."""

    at: float
    author: str
    action: Literal["applied", "rejected", "restored", "golden_forced"]
    source: Source
    message: str
    version: int | None
    """The version it became; for a rejection, the version that kept serving."""
    detail: str
    """For an applied change its diff against the version before; for a rejection, why."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parsed(cls, text: str | bytes) -> AuditEntry | None:
        """An entry as stored, or ``None`` for one that is not (a torn line, garbage): skipped, not fatal."""
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None


def unified_diff(before: RulesVersion, after: RulesVersion) -> str:
    lines = difflib.unified_diff(
        before.yaml.splitlines(keepends=True),
        after.yaml.splitlines(keepends=True),
        fromfile=f"version {before.version}",
        tofile=f"version {after.version}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def changes(before: str, after: str) -> list[dict[str, Any]]:
    """Each leaf that differs, by dotted path (``routes.code.latency_budget_ms``), with both values;
    ``None`` stands for absent."""
    old, new = _leaves(_safe_load(before)), _leaves(_safe_load(after))
    return [
        {"path": path, "before": old.get(path), "after": new.get(path)}
        for path in sorted(old.keys() | new.keys())
        if old.get(path, _ABSENT) != new.get(path, _ABSENT)
    ]


_ABSENT = object()


def _safe_load(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return {"<unparsable>": text}


def _leaves(data: Any, path: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        found: dict[str, Any] = {}
        for key, value in data.items():
            found |= _leaves(value, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(data, list) and data:
        found = {}
        for i, value in enumerate(data):
            found |= _leaves(value, f"{path}[{i}]")
        return found
    return {path: data}
