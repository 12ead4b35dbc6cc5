"""The kinds of check: each reads one text and says whether it fired (and, for those that can,
what the text becomes redacted).

Patterns and PII run in place (RE2 and the PII finders are linear in the text); the classifier
runs in a worker thread; the judge asks a backend of the rules; the webhook asks an operator's
service. A check that cannot answer raises :class:`CheckFailed`, and its ``on_error`` decides.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import httpx

from backends.base import Backend
from contracts.errors import BackendError
from contracts.wire import ChatCompletionRequest
from gateway.guardrails import pii
from gateway.guardrails.specs import (
    ClassifierGuardrail,
    GuardrailSpec,
    LlmGuardrail,
    PatternGuardrail,
    PiiGuardrail,
    WebhookGuardrail,
)
from gateway.observe.tracing import Tracing
from routers.moderation import ModerationModel, model_dir_of
from routers.patterns import PatternInvalid, compile_any_of, compile_pattern

Stage = Literal["input", "output"]
PATTERN_MASK = "[REDACTED]"
MAX_WEBHOOK_ANSWER = 4 << 20
IN_PLACE_CHARS = 16_384
"""Text a pattern or PII check reads on the event loop; longer (in all, for one request) goes to a thread."""


@dataclass(frozen=True)
class Verdict:
    fired: bool
    detail: str = ""
    """What fired, for logs and headers: entity kinds, a label and its score, a judge's categories.
    Never the matched text."""
    text: str | None = None
    """The text redacted, when the check rewrites it and fired."""
    masks: tuple[tuple[int, int, str], ...] = ()
    """Where ``text`` came from: each ``(start, end, mask)`` replaced (patterns and PII), so that a
    stream can release a prefix of the held text redacted without finding them again."""


class CheckFailed(Exception):
    """The check could not give a verdict (timeout, an error answer, an unreadable verdict)."""


@dataclass(frozen=True)
class Asked:
    """What a check is asked about besides the text."""

    stage: Stage
    route: str
    tenant: str
    tracing: Tracing | None = None
    """The request's tracing, when on: each check is an ``apply_guardrail`` span."""


class Check(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> GuardrailSpec: ...

    @property
    def rewrites(self) -> bool:
        """Whether its verdict can carry a redacted text."""
        ...

    async def inspect(self, text: str, asked: Asked) -> Verdict: ...


class PatternCheck:
    rewrites = True

    def __init__(self, name: str, spec: PatternGuardrail) -> None:
        self.name, self.spec = name, spec
        self._pattern = compile_any_of(spec.patterns, spec.words)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [(m.start(), m.end()) for m in self._pattern.finditer(text) if m.end() > m.start()]

    async def inspect(self, text: str, asked: Asked) -> Verdict:
        return self.verdict(text)

    def verdict(self, text: str) -> Verdict:
        """:meth:`inspect` without the event loop (RE2 is linear: in place unless the text is long)."""
        spans = self.spans(text)
        if not spans:
            return Verdict(False)
        detail = f"{len(spans)} match{'es' if len(spans) > 1 else ''}"
        if self.spec.action != "redact":
            return Verdict(True, detail)
        masks = tuple((s, e, PATTERN_MASK) for s, e in spans)
        return Verdict(True, detail, pii.replaced(text, list(masks)), masks)


class PiiCheck:
    rewrites = True

    def __init__(self, name: str, spec: PiiGuardrail) -> None:
        self.name, self.spec = name, spec

    def spans(self, text: str) -> list[pii.Span]:
        return pii.find(text, self.spec.entities, self.spec.phone_region)

    async def inspect(self, text: str, asked: Asked) -> Verdict:
        return self.verdict(text) if len(text) < IN_PLACE_CHARS else await asyncio.to_thread(self.verdict, text)

    def verdict(self, text: str) -> Verdict:
        spans = self.spans(text)
        if not spans:
            return Verdict(False)
        kinds = ",".join(sorted({s.entity for s in spans}))
        if self.spec.action != "redact":
            return Verdict(True, kinds)
        masks = tuple((s.start, s.end, pii.PLACEHOLDERS[s.entity]) for s in spans)
        return Verdict(True, kinds, pii.replaced(text, list(masks)), masks)


class ClassifierCheck:
    rewrites = False

    def __init__(self, name: str, spec: ClassifierGuardrail, model: ModerationModel) -> None:
        self.name, self.spec, self.model = name, spec, model
        self._columns = model.columns(spec.flag_labels)
        self.threshold = spec.threshold or float(model.threshold or 0.5)

    async def inspect(self, text: str, asked: Asked) -> Verdict:
        (score,) = await self.model.score([text], self._columns, self.spec.window_chars)
        return Verdict(score >= self.threshold, f"{'+'.join(self.spec.flag_labels)} {score:.2f}")


class JudgeCheck:
    rewrites = False

    def __init__(self, name: str, spec: LlmGuardrail, backend: Backend) -> None:
        self.name, self.spec, self.backend = name, spec, backend

    async def inspect(self, text: str, asked: Asked) -> Verdict:
        prompt = self.spec.template.replace("{text}", text)
        request = ChatCompletionRequest.model_validate(
            {
                "model": "judge",
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "max_tokens": self.spec.max_tokens,
            }
        )
        timeout_s = self.spec.budget_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                completion = await self.backend.complete(request, timeout_s)
        except TimeoutError:
            raise CheckFailed(f"the judge gave no verdict within {self.spec.budget_ms} ms") from None
        except BackendError as exc:
            raise CheckFailed(f"the judge failed: {exc.code or type(exc).__name__}") from None
        message = (completion.choices[0].model_extra or {}).get("message") or {}
        return parse_verdict(str(message.get("content") or ""))


VERDICT = re.compile(r"\b(unsafe|not safe|safe)\b", re.IGNORECASE)
CATEGORIES = re.compile(r"[A-Za-z][A-Za-z0-9_\- ]{0,40}")


def parse_verdict(answer: str) -> Verdict:
    """The judge's first ``safe`` / ``unsafe`` (``not safe`` is unsafe) and, after ``unsafe``, the
    categories on its line or the next (Llama Guard answers ``unsafe\nS1,S10``); else CheckFailed."""
    found = VERDICT.search(answer)
    if found is None:
        raise CheckFailed(f"the judge's answer holds no verdict ({len(answer)} characters)")
    if found.group(1).lower() == "safe":
        return Verdict(False)
    after = answer[found.end() :].strip().lstrip(":,.-").strip()
    line = after.split("\n", 1)[0].strip()
    categories = [c.strip().lower() for c in CATEGORIES.findall(line)][:8]
    return Verdict(True, "unsafe: " + ",".join(categories) if categories else "unsafe")


class WebhookCheck:
    rewrites = True

    def __init__(self, name: str, spec: WebhookGuardrail, client: httpx.AsyncClient) -> None:
        self.name, self.spec, self.client = name, spec, client
        self._headers = {header: os.environ.get(env, "") for header, env in spec.headers_env.items()}

    async def inspect(self, text: str, asked: Asked) -> Verdict:
        body = {"stage": asked.stage, "text": text, "route": asked.route, "tenant": asked.tenant}
        timeout_s = self.spec.timeout_ms / 1000
        try:
            async with asyncio.timeout(timeout_s):
                raw = await self._answer(body, timeout_s)
        except TimeoutError:
            raise CheckFailed(f"the webhook did not answer within {self.spec.timeout_ms} ms") from None
        except httpx.HTTPError as exc:
            raise CheckFailed(f"the webhook failed: {type(exc).__name__}") from None
        try:
            answer = json.loads(raw)
            action = answer["action"]
        except (ValueError, KeyError, TypeError):
            raise CheckFailed("the webhook's answer is not {action, text?}") from None
        if action == "allow":
            return Verdict(False)
        if action == "block":
            return Verdict(True, "block")
        if action == "redact" and isinstance(answer.get("text"), str):
            return Verdict(True, "redact", answer["text"])
        raise CheckFailed(f"the webhook's action {str(action)[:20]!r} is not allow, block or redact")

    async def _answer(self, body: dict[str, str], timeout_s: float) -> bytes:
        """The answer's body, read no further than :data:`MAX_WEBHOOK_ANSWER` (a 200 only)."""
        request = self.client.build_request("POST", self.spec.url, json=body, headers=self._headers, timeout=timeout_s)
        response = await self.client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise CheckFailed(f"the webhook answered {response.status_code}")
            raw = bytearray()
            async for piece in response.aiter_bytes():
                raw += piece
                if len(raw) > MAX_WEBHOOK_ANSWER:
                    raise CheckFailed(f"the webhook's answer is over {MAX_WEBHOOK_ANSWER} bytes")
            return bytes(raw)
        finally:
            await response.aclose()


def build_check(
    name: str,
    spec: GuardrailSpec,
    backends: Mapping[str, Backend],
    models: Mapping[Path, ModerationModel],
    client: httpx.AsyncClient | None,
) -> Check:
    if isinstance(spec, PatternGuardrail):
        return PatternCheck(name, spec)
    if isinstance(spec, PiiGuardrail):
        return PiiCheck(name, spec)
    if isinstance(spec, ClassifierGuardrail):
        return ClassifierCheck(name, spec, models[model_dir_of(spec.model)])
    if isinstance(spec, LlmGuardrail):
        return JudgeCheck(name, spec, backends[spec.backend])
    assert client is not None
    return WebhookCheck(name, spec, client)


def definition_problems(spec: GuardrailSpec, backends: set[str]) -> list[tuple[str, str]]:
    """What is wrong with one guardrail's definition, by the path under it."""
    problems: list[tuple[str, str]] = []
    if isinstance(spec, PatternGuardrail):
        if not spec.patterns and not spec.words:
            problems.append(("", "give patterns or words"))
        for i, pattern in enumerate(spec.patterns):
            try:
                compile_pattern(pattern)
            except PatternInvalid as exc:
                problems.append((f".patterns[{i}]", f"not a pattern RE2 can run: {exc}"))
        if not problems:
            try:
                compile_any_of(spec.patterns, spec.words)
            except PatternInvalid as exc:
                problems.append((".patterns", str(exc)))
    elif isinstance(spec, ClassifierGuardrail):
        model_dir = model_dir_of(spec.model)
        if not (model_dir / "manifest.json").is_file() or not (model_dir / "head.onnx").is_file():
            problems.append((".model", f"no model at {spec.model!r} (a directory with manifest.json and head.onnx)"))
    elif isinstance(spec, LlmGuardrail):
        if spec.backend not in backends:
            problems.append((".backend", f"unknown backend {spec.backend!r}"))
        if "{text}" not in spec.template:
            problems.append((".template", "the template must hold {text}, where the checked text goes"))
    if spec.action == "redact" and isinstance(spec, ClassifierGuardrail | LlmGuardrail):
        problems.append((".action", f"a {spec.kind} check cannot redact: it says yes or no, not where"))
    return problems
