"""Each kind of check against real inputs: RE2 patterns, the PII finders, the shipped moderation
model through ONNX Runtime, the judge on the real llama.cpp server, a webhook on a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request

from backends.http_transport import HttpClients
from backends.registry import open_backend
from gateway.guardrails import pii
from gateway.guardrails.kinds import (
    Asked,
    CheckFailed,
    ClassifierCheck,
    JudgeCheck,
    PatternCheck,
    PiiCheck,
    WebhookCheck,
    parse_verdict,
)
from gateway.guardrails.specs import (
    ClassifierGuardrail,
    LlmGuardrail,
    PatternGuardrail,
    PiiGuardrail,
    WebhookGuardrail,
)
from gateway.rules import OpenAIBackend
from routers.moderation import SHIPPED_MODERATION, ModerationModel, windows
from tests.servers import serving

ASKED = Asked("output", "general", "t1")


async def test_a_pathological_pattern_runs_in_linear_time_on_a_long_text() -> None:
    check = PatternCheck("p", PatternGuardrail(kind="pattern", patterns=["(a+)+$"]))
    started = time.process_time()
    verdict = await check.inspect("a" * 4096 + "!", ASKED)
    short = time.process_time() - started
    assert not verdict.fired
    started = time.process_time()
    await check.inspect("a" * 65536 + "!", ASKED)
    long = time.process_time() - started
    # Python's backtracking re would take longer than the age of the universe on 4 KB; RE2 is
    # linear: 16x the text costs about 16x the time (generously bounded, never a wall clock).
    assert long < max(short, 1e-4) * 200


async def test_patterns_and_word_lists_match_redact_and_refuse_what_re2_cannot_run() -> None:
    spec = PatternGuardrail(
        kind="pattern", patterns=[r"(?i)as an ai language model"], words=["Acme Corp"], action="redact"
    )
    check = PatternCheck("p", spec)
    verdict = await check.inspect("As an AI language model, I like acme corp but not acme corporation.", ASKED)
    assert verdict.fired
    assert verdict.text == "[REDACTED], I like [REDACTED] but not acme corporation."
    assert not (await check.inspect("nothing here", ASKED)).fired
    from gateway.guardrails.kinds import definition_problems

    refused = PatternGuardrail(kind="pattern", patterns=[r"(\w+) \1", r"(?<=x)y"])
    problems = definition_problems(refused, set())
    assert [where for where, _ in problems] == [".patterns[0]", ".patterns[1]"]
    assert all("RE2" in message for _, message in problems)


@pytest.mark.parametrize(
    ("text", "entity", "redacted"),
    [
        ("write to jane.doe+work@mail.example.co.uk today", "email", "write to [EMAIL] today"),
        ("call (415) 555-2671 now", "phone", "call [PHONE] now"),
        ("ring +44 20 7946 0958 in London", "phone", "ring [PHONE] in London"),
        ("appelez le +33 1 42 68 53 00", "phone", "appelez le [PHONE]"),
        ("card 4111-1111-1111-1111 exp 12/29", "credit_card", "card [CREDIT_CARD] exp 12/29"),
        ("IBAN GB82 WEST 1234 5698 7654 32 please", "iban", "IBAN [IBAN] please"),
        ("from 192.168.10.20 and 2001:db8::ff00:42:8329", "ip", "from [IP] and [IP]"),
        ("key sk-proj-Abcdefghijklmnopqrstuvwx12 here", "secret", "key [SECRET] here"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", "secret", "anthropic [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE id", "secret", "aws [SECRET] id"),
        ("token ghp_0123456789abcdefghijABCDEFGHIJklmnopqr", "secret", "token [SECRET]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
            "secret",
            "jwt [SECRET] ok",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
            "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY----- done",
            "secret",
            "[SECRET] done",
        ),
    ],
)
async def test_each_pii_entity_is_found_and_redacted(text: str, entity: str, redacted: str) -> None:
    check = PiiCheck("pii", PiiGuardrail(kind="pii", action="redact"))
    verdict = await check.inspect(text, ASKED)
    assert verdict.fired
    assert verdict.detail == entity
    assert verdict.text == redacted


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 failed the Luhn check",  # a card number that fails Luhn
        "IBAN GB82 WEST 1234 5698 7654 33 has a wrong check digit",
        "version 1.2.3.4000 and 999.1.1.1 are not addresses",
        "the meeting is at 10:30 in room 12",
        "sk-short is not a key",
    ],
)
async def test_lookalikes_are_left_alone(text: str) -> None:
    check = PiiCheck("pii", PiiGuardrail(kind="pii", action="redact"))
    assert not (await check.inspect(text, ASKED)).fired


def test_pii_finding_stays_linear_on_a_long_hostile_text() -> None:
    hostile = ("a@" * 20_000) + ("1" * 20_000) + ("-----BEGIN PRIVATE KEY-----" + "A" * 20_000)
    assert pii.find(hostile, pii.PLACEHOLDERS) == []


async def test_the_shipped_moderation_model_flags_hate_and_passes_harmless_text_through_onnx() -> None:
    model = ModerationModel(SHIPPED_MODERATION, threads=1)
    try:
        check = ClassifierCheck("moderation", ClassifierGuardrail(kind="classifier", model="builtin:moderation"), model)
        assert check.threshold == model.threshold
        hateful = await check.inspect("Those people are vermin and should all be driven out of our country.", ASKED)
        harmless = await check.inspect("Here is a recipe for banana bread with walnuts.", ASKED)
        assert hateful.fired
        assert "hate+offensive" in hateful.detail
        assert not harmless.fired
        insult = "You are a worthless stupid bitch and everyone here hates you, you fucking idiot."
        long_answer = "A calm, kind paragraph about gardening. " * 60 + insult
        assert len(windows(long_answer)) > 3
        wide = await check.inspect(long_answer, ASKED)  # 320-character windows: the insult is a quarter of one
        narrow_spec = ClassifierGuardrail(kind="classifier", model="builtin:moderation", window_chars=160)
        narrow = await ClassifierCheck("narrow", narrow_spec, model).inspect(long_answer, ASKED)
        assert narrow.fired  # the worst window decides, and a narrower one weighs a short span more
        assert float(narrow.detail.split()[-1]) > float(wide.detail.split()[-1])
    finally:
        model.close()


@pytest.mark.local_model
async def test_the_llm_judge_asks_the_real_llama_cpp_server(llama_server: str) -> None:
    spec = LlmGuardrail(
        kind="llm",
        backend="judge",
        # SmolLM2-135M cannot judge safety; it can repeat a word, which is what this template asks.
        template="Reply with the single word that follows the colon, and nothing else.\nWord: {text}",
        budget_ms=30_000,
        max_tokens=8,
    )
    backend = await open_backend(
        "judge", OpenAIBackend(kind="openai", endpoint=llama_server, model="smollm2"), HttpClients()
    )
    try:
        judge = JudgeCheck("judge", spec, backend)
        assert (await judge.inspect("unsafe", ASKED)).fired
        assert not (await judge.inspect("safe", ASKED)).fired
        hurried = JudgeCheck("judge", spec.model_copy(update={"budget_ms": 1}), backend)
        with pytest.raises(CheckFailed, match="within 1 ms"):
            await hurried.inspect("unsafe", ASKED)
    finally:
        await backend.aclose()


def test_verdicts_read_llama_guard_and_plain_answers() -> None:
    assert parse_verdict("safe").fired is False
    assert parse_verdict("unsafe\nS1,S10").detail == "unsafe: s1,s10"
    assert parse_verdict("This is not safe.").fired is True
    with pytest.raises(CheckFailed):
        parse_verdict("I am not sure")


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    app = FastAPI()

    @app.post("/check")
    async def check(request: Request) -> dict[str, object]:
        body = await request.json()
        assert set(body) == {"stage", "text", "route", "tenant"}
        if "slow" in body["text"]:
            await asyncio.sleep(2)
        if "huge" in body["text"]:
            return {"action": "allow", "padding": "x" * (5 << 20)}
        if "broken" in body["text"]:
            return {"verdict": "?"}
        if "block" in body["text"]:
            return {"action": "block"}
        if "Jane" in body["text"]:
            return {"action": "redact", "text": body["text"].replace("Jane", "<PERSON>")}
        return {"action": "allow"}

    with serving(app) as url:
        yield url + "/check"


async def test_a_webhook_allows_blocks_redacts_times_out_and_is_read_no_further_than_its_bound(webhook: str) -> None:
    import httpx

    spec = WebhookGuardrail(kind="webhook", url=webhook, timeout_ms=300, action="redact")
    async with httpx.AsyncClient() as client:
        check = WebhookCheck("presidio", spec, client)
        assert not (await check.inspect("hello", ASKED)).fired
        assert (await check.inspect("please block this", ASKED)).fired
        assert (await check.inspect("Jane called", ASKED)).text == "<PERSON> called"
        with pytest.raises(CheckFailed, match="within 300 ms"):
            await check.inspect("slow one", ASKED)
        with pytest.raises(CheckFailed, match="not"):
            await check.inspect("broken answer", ASKED)
        with pytest.raises(CheckFailed, match="over 4194304 bytes"):
            await check.inspect("a huge answer", ASKED)
