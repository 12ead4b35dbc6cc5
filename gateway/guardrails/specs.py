"""The guardrails section of the rules: checks defined once by name, attached per route.

::

    guardrails:
      pii:        {kind: pii, entities: [email, phone], action: redact, applies_to: external}
      moderation: {kind: classifier, model: "builtin:moderation", threshold: 0.5, action: fallback}
    routes:
      general: {backends: [...], guardrails: {input: [pii], output: [moderation]}}
    default_guardrails: {input: [pii]}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from contracts.strict import NAME, Strict
from routers.moderation import WINDOW_CHARS

Action = Literal["block", "redact", "flag", "fallback"]
OnError = Literal["allow", "block"]
Entity = Literal["email", "phone", "credit_card", "iban", "ip", "secret"]
PII_ENTITIES: tuple[Entity, ...] = ("email", "phone", "credit_card", "iban", "ip", "secret")
MAX_PATTERNS_PER_GUARDRAIL = 200
MAX_WORDS = 2_000


class GuardrailBase(Strict):
    action: Action = "block"
    """``block``: refuse the request (input) or withhold the answer (output); ``redact``: rewrite the
    text; ``flag``: change nothing, say so; ``fallback`` (output only): try the route's next backend."""
    applies_to: Literal["all", "external"] = "all"
    """``external``: only on attempts sent to an external backend (``kind: litellm``, or a backend
    with ``external: true``); self-hosted backends see the original text. Input ``redact`` only."""
    mode: Literal["sync", "async"] = "sync"
    """``async``: checked after the answer is sent (streams: after they end); it can only flag."""
    on_error: OnError = "allow"
    """What a check that fails (a judge that times out, a webhook that answers 500) means."""


class PatternGuardrail(GuardrailBase):
    kind: Literal["pattern"]
    patterns: list[Annotated[str, Field(min_length=1, max_length=2000)]] = Field(
        [], max_length=MAX_PATTERNS_PER_GUARDRAIL
    )
    """Regular expressions in RE2's syntax (linear time: no backtracking an operator could trip)."""
    words: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field([], max_length=MAX_WORDS)
    """Whole words or phrases, matched case-insensitively."""


class PiiGuardrail(GuardrailBase):
    kind: Literal["pii"]
    entities: list[Entity] = Field(list(PII_ENTITIES), min_length=1)
    phone_region: str = Field("US", pattern=r"^[A-Z]{2}$")
    """The country whose national format a phone number without ``+`` is read in."""


class ClassifierGuardrail(GuardrailBase):
    kind: Literal["classifier"]
    model: str = Field(min_length=1, max_length=500)
    """``builtin:moderation`` (the shipped model), or a model directory ``turnout router train`` wrote."""
    flag_labels: list[str] = Field(["hate", "offensive"], min_length=1)
    threshold: float | None = Field(None, gt=0, le=1)
    """Fires when the flagged labels' summed probability reaches it; unset: the model's own
    (the shipped model's was chosen on held-out sources)."""
    window_chars: int = Field(WINDOW_CHARS, ge=40, le=4000)
    """A long text is scored in windows this long (a quarter overlapping) and is as bad as its worst:
    shorter windows let a short span weigh more, at more false alarms and more work per text."""


class LlmGuardrail(GuardrailBase):
    kind: Literal["llm"]
    backend: str
    """A backend of the rules (Llama Guard on vLLM, say)."""
    template: str = Field(
        "You are a content safety classifier. Read the text between the markers and decide whether it "
        "is unsafe: hateful, harassing, violent, sexual, about self-harm, or helping a crime.\n"
        "<<<\n{text}\n>>>\nAnswer with one word, safe or unsafe. If unsafe, add a second line naming "
        "the categories, separated by commas.",
        min_length=8,
        max_length=20_000,
    )
    """The judge's prompt; ``{text}`` is replaced by what is checked."""
    budget_ms: int = Field(2000, ge=1, le=120_000)
    max_tokens: int = Field(16, ge=1, le=1000)


class WebhookGuardrail(GuardrailBase):
    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)
    """Sent ``{"stage", "text", "route", "tenant"}``; answers ``{"action": "allow"|"block"|"redact", "text"?}``."""
    timeout_ms: int = Field(1000, ge=1, le=60_000)
    headers_env: dict[str, Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]] = Field({}, max_length=16)
    """Request headers whose values come from environment variables (``Authorization: PRESIDIO_TOKEN``)."""


GuardrailSpec = Annotated[
    PatternGuardrail | PiiGuardrail | ClassifierGuardrail | LlmGuardrail | WebhookGuardrail,
    Field(discriminator="kind"),
]
GUARDRAIL_KINDS = ("pattern", "pii", "webhook")
"""Tags of the union above that the rules' error paths drop (``classifier`` and ``llm`` are there already)."""


class AttachedGuardrails(Strict):
    """Which guardrails a route runs, by name, on what comes in and on what goes out."""

    input: list[Annotated[str, Field(pattern=NAME)]] = Field([], max_length=32)
    output: list[Annotated[str, Field(pattern=NAME)]] = Field([], max_length=32)
    holdback_chars: int = Field(256, ge=0, le=65_536)
    """On a stream, text this close to the end is kept from the client until the checks pass."""


Guardrails = dict[Annotated[str, Field(pattern=NAME)], GuardrailSpec]


def check_guardrails(
    defined: Guardrails,
    attached: dict[str, AttachedGuardrails | None],
    backends: set[str],
) -> list[tuple[str, str]]:
    """Problems no single field shows: unknown names, actions a stage cannot take, unknown judges,
    patterns RE2 refuses, models that are not there. ``attached`` maps a path to what it attaches."""
    from gateway.guardrails.kinds import definition_problems

    problems: list[tuple[str, str]] = []
    for name, spec in defined.items():
        problems += [(f"guardrails.{name}{where}", message) for where, message in definition_problems(spec, backends)]
    for where, attachment in attached.items():
        if attachment is None:
            continue
        for stage in ("input", "output"):
            for i, name in enumerate(getattr(attachment, stage)):
                found = defined.get(name)
                path = f"{where}.{stage}[{i}]"
                if found is None:
                    problems.append((path, f"unknown guardrail {name!r}"))
                    continue
                spec = found
                if stage == "input" and spec.action == "fallback":
                    problems.append((path, f"{name!r} falls back, which only an answer can (use it on output)"))
                elif stage == "output" and spec.applies_to == "external":
                    problems.append((path, f"{name!r} applies_to external, which only input text can"))
                elif spec.applies_to == "external" and spec.action != "redact":
                    problems.append((path, f"{name!r}: applies_to external needs action redact"))
                elif spec.mode == "async" and spec.action != "flag":
                    problems.append((path, f"{name!r}: mode async can only flag (set action: flag)"))
            if len(set(getattr(attachment, stage))) != len(getattr(attachment, stage)):
                problems.append((f"{where}.{stage}", "a guardrail is listed twice"))
    return problems
