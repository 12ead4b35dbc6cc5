"""The dry-run sample is bounded by size, age and tenant, and keeps no secrets."""

from __future__ import annotations

import time

import pytest
from starlette.datastructures import Headers

from contracts.wire import ChatCompletionRequest
from gateway.observe.samples import RoutingSamples
from routers.routing_text import HEAD_CHARS, TAIL_CHARS


def chat(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": text}]})


HEADERS = Headers({"authorization": "Bearer sk-secret", "x-api-key": "sk-2", "cookie": "c", "x-team": "search"})


def test_the_ring_keeps_the_newest_requests_up_to_its_size() -> None:
    samples = RoutingSamples(size=3, ttl_s=60)
    for i in range(5):
        samples.add(f"r{i}", "t1", chat(f"prompt {i}"), HEADERS)
    assert [s.request_id for s in samples.recent()] == ["r2", "r3", "r4"]


def test_old_samples_expire_and_excluded_tenants_are_never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = RoutingSamples(size=10, ttl_s=60, excluded_tenants=frozenset({"bank"}))
    samples.add("old", "t1", chat("a"), HEADERS)
    samples.add("private", "bank", chat("b"), HEADERS)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 61)
    samples.add("new", "t1", chat("c"), HEADERS)
    assert [s.request_id for s in samples.recent()] == ["new"]


def test_only_routing_inputs_are_kept_and_no_keys() -> None:
    samples = RoutingSamples(size=10, ttl_s=60)
    samples.add("r", "t1", chat("x" * 100_000), HEADERS)
    kept = samples.recent()[0]
    assert kept.headers == {"x-team": "search"}
    assert len(kept.text) <= HEAD_CHARS + TAIL_CHARS + 1


def test_size_zero_turns_sampling_off() -> None:
    samples = RoutingSamples(size=0, ttl_s=60)
    samples.add("r", "t1", chat("hi"), HEADERS)
    assert samples.recent() == []
