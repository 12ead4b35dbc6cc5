"""Whether one answer meets one row's expectations: every failed one named, with why."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson

from gateway.golden.sets import Expect
from routers.patterns import compile_pattern

Similarity = Callable[[str, str], Awaitable[float]]
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Answered:
    text: str
    latency_ms: float
    output_tokens: int | None


def normalised(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


async def failures(expect: Expect, answer: Answered, similarity: Similarity) -> list[str]:
    """Each expectation ``answer`` fails, as ``kind: why``; empty when it meets them all."""
    failed: list[str] = []
    text = answer.text
    seen = text if expect.case_sensitive else text.lower()
    for needle in _listed(expect.contains):
        if (needle if expect.case_sensitive else needle.lower()) not in seen:
            failed.append(f"contains: {needle!r} is not in the answer")
    for needle in _listed(expect.not_contains):
        if (needle if expect.case_sensitive else needle.lower()) in seen:
            failed.append(f"not_contains: {needle!r} is in the answer")
    if expect.regex is not None and compile_pattern(expect.regex).search(text) is None:
        failed.append(f"regex: {expect.regex!r} does not match")
    if expect.equals is not None and normalised(text) != normalised(expect.equals):
        failed.append(f"equals: not {expect.equals!r}")
    if expect.one_of is not None and normalised(text) not in {normalised(o) for o in expect.one_of}:
        failed.append(f"one_of: not one of {expect.one_of!r}")
    if expect.json_schema is not None:
        failed += _schema_failures(expect.json_schema, text)
    if expect.similar_to is not None:
        score = await similarity(expect.similar_to, text)
        if score < expect.min_similarity:
            failed.append(f"similar_to: similarity {score:.3f} is under {expect.min_similarity}")
    if expect.max_latency_ms is not None and answer.latency_ms > expect.max_latency_ms:
        failed.append(f"max_latency_ms: took {answer.latency_ms:.0f} ms, over {expect.max_latency_ms}")
    if expect.max_output_tokens is not None:
        if answer.output_tokens is None:
            failed.append("max_output_tokens: the backend did not say how many tokens it generated")
        elif answer.output_tokens > expect.max_output_tokens:
            failed.append(f"max_output_tokens: {answer.output_tokens}, over {expect.max_output_tokens}")
    return failed


def _listed(texts: str | list[str] | None) -> list[str]:
    if texts is None:
        return []
    return [texts] if isinstance(texts, str) else texts


def _schema_failures(schema: dict[str, object], text: str) -> list[str]:
    try:
        value = orjson.loads(text.strip())
    except orjson.JSONDecodeError:
        return ["json_schema: the answer is not JSON"]
    validator = _with_re2_patterns(jsonschema.validators.validator_for(schema))(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    return [] if error is None else [f"json_schema: {error.message}"]


def _re2_pattern(validator: Any, pattern: str, instance: object, schema: object) -> Iterator[Any]:
    """``pattern`` under RE2 (linear time), for answers a backend wrote."""
    if isinstance(instance, str) and compile_pattern(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _with_re2_patterns(validator_class: Any) -> Any:
    return jsonschema.validators.extend(validator_class, {"pattern": _re2_pattern})
