"""A golden set file: JSON Lines, one row per line.

``{"name": "...", "messages": [...] | "prompt": "...", "expect": {...}, "critical": false}``

Expectations, any number per row, all must hold (:mod:`gateway.golden.expectations`):
``contains`` and ``not_contains`` (a string or a list; ``case_sensitive: false`` by default),
``regex`` (RE2), ``equals`` (after trimming and normalising whitespace and case), ``one_of``,
``json_schema``, ``similar_to`` with ``min_similarity``, ``max_latency_ms``, ``max_output_tokens``.
A row with ``critical: true`` must pass for the set to pass, whatever the ratio. An invalid file is
refused with every problem at its line.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import jsonschema
import orjson
from pydantic import Field, StrictBool, StrictStr, ValidationError, field_validator, model_validator

from contracts.strict import Strict
from routers.patterns import PatternInvalid, compile_pattern

MAX_ROWS = 1000
MAX_FILE_BYTES = 4 * 1024 * 1024
Texts = StrictStr | list[StrictStr]


class Expect(Strict):
    contains: Texts | None = None
    not_contains: Texts | None = None
    case_sensitive: StrictBool = False
    """For ``contains`` and ``not_contains``."""
    regex: StrictStr | None = Field(None, max_length=4096)
    equals: StrictStr | None = None
    one_of: list[StrictStr] | None = Field(None, min_length=1)
    json_schema: dict[str, Any] | None = None
    similar_to: StrictStr | None = None
    min_similarity: float = Field(0.8, gt=0, le=1)
    max_latency_ms: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)

    @field_validator("regex")
    @classmethod
    def re2_can_run_it(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                compile_pattern(pattern)
            except PatternInvalid as exc:
                raise ValueError(f"not a pattern RE2 can run: {exc}") from None
        return pattern

    @field_validator("json_schema")
    @classmethod
    def a_valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
            _check_patterns(schema)
        return schema

    @model_validator(mode="after")
    def expects_something(self) -> Self:
        kinds = ("contains", "not_contains", "regex", "equals", "one_of", "json_schema", "similar_to",
                 "max_latency_ms", "max_output_tokens")  # fmt: skip
        if not any(getattr(self, kind) is not None for kind in kinds):
            raise ValueError(f"expects nothing: give one or more of {', '.join(kinds)}")
        return self


def _check_patterns(node: object) -> None:
    """Every ``pattern`` in a schema compiles under RE2, which answers checks in linear time (the
    jsonschema library would run Python's backtracking ``re``); ``patternProperties`` is refused."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            raise ValueError("json_schema: patternProperties is not supported (use properties)")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            try:
                compile_pattern(pattern)
            except PatternInvalid as exc:
                raise ValueError(f"json_schema pattern {pattern!r} is not one RE2 can run: {exc}") from None
        for value in node.values():
            _check_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _check_patterns(value)


class GoldenRow(Strict):
    name: StrictStr = Field(min_length=1, max_length=200)
    messages: list[dict[str, Any]] | None = Field(None, min_length=1)
    prompt: StrictStr | None = Field(None, min_length=1)
    expect: Expect
    critical: StrictBool = False
    max_tokens: int | None = Field(None, ge=1, le=100_000)
    """Sent as the request's ``max_tokens``; unset: the backend's default."""

    @model_validator(mode="after")
    def one_input(self) -> Self:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError('give exactly one of "messages" or "prompt"')
        return self

    def request_messages(self) -> list[dict[str, Any]]:
        return self.messages if self.messages is not None else [{"role": "user", "content": self.prompt}]


@dataclass(frozen=True)
class GoldenSet:
    path: Path
    rows: tuple[GoldenRow, ...]
    sha256: str


class GoldenInvalid(Exception):
    def __init__(self, path: Path, problems: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(
            "\n".join(f"{path}:{line}: {message}" if line else f"{path}: {message}" for line, message in problems)
        )


def load_set(path: Path) -> GoldenSet:
    """The set in ``path``, or :class:`GoldenInvalid` with every problem at its line. A file is read
    and parsed again only when its size or modification time changed (validation, the gate, drift
    checks, warm-ups and the watch for changed sets all ask for it)."""
    try:
        found = path.stat()
    except OSError as exc:
        raise GoldenInvalid(path, [(None, f"cannot read: {exc.strerror}")]) from None
    return _read_set(path, found.st_mtime_ns, found.st_size)


def file_sha256(path: Path) -> str | None:
    """The sha256 of the file at ``path`` (valid set or not), or ``None`` when it cannot be read."""
    try:
        found = path.stat()
    except OSError:
        return None
    return _read_sha256(path, found.st_mtime_ns, found.st_size)


@functools.lru_cache(maxsize=64)
def _read_set(path: Path, mtime_ns: int, size: int) -> GoldenSet:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GoldenInvalid(path, [(None, f"cannot read: {exc.strerror}")]) from None
    return parse_set(data, path)


@functools.lru_cache(maxsize=64)
def _read_sha256(path: Path, mtime_ns: int, size: int) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def parse_set(data: bytes, path: Path) -> GoldenSet:
    if len(data) > MAX_FILE_BYTES:
        raise GoldenInvalid(path, [(None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")])
    problems: list[tuple[int | None, str]] = []
    rows: list[GoldenRow] = []
    names: dict[str, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = GoldenRow.model_validate(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            problems.append((number, f"not JSON: {exc}"))
            continue
        except ValidationError as exc:
            problems += [(number, _message(err)) for err in exc.errors()]
            continue
        if row.name in names:
            problems.append((number, f"the name {row.name!r} is also on line {names[row.name]}"))
        names.setdefault(row.name, number)
        rows.append(row)
    if not rows and not problems:
        problems.append((None, "no rows"))
    if len(rows) > MAX_ROWS:
        problems.append((None, f"{len(rows)} rows: a set holds at most {MAX_ROWS}"))
    if problems:
        raise GoldenInvalid(path, problems)
    return GoldenSet(path, tuple(rows), hashlib.sha256(data).hexdigest())


def _message(err: Any) -> str:
    where = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key (is it misspelt?)"
    return f"{where}: {message}" if where else message
