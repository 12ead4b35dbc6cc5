"""Finding personal data and secrets in text: where each one is and what kind it is.

Phone numbers are found by ``phonenumbers`` (Google's libphonenumber: any country's format, valid
numbers only), IBANs checked by ``python-stdnum`` (country format and check digits), payment card
numbers by the Luhn check (``stdnum.luhn``), IP addresses by :mod:`ipaddress`. Candidates are found
by RE2 patterns, so no text can make a search backtrack. Secrets are the shapes providers give
their keys (OpenAI, Anthropic, AWS, Google, GitHub, Slack, Stripe), private-key blocks and JWTs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
import re2
from stdnum import iban, luhn

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "credit_card": "[CREDIT_CARD]",
    "iban": "[IBAN]",
    "ip": "[IP]",
    "secret": "[SECRET]",
}
PRIORITY = ("secret", "email", "iban", "credit_card", "ip", "phone")
_OPTIONS = re2.Options()
_OPTIONS.max_mem = 32 << 20
EMAIL = re2.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}", _OPTIONS)
CARD = re2.compile(r"(?:\d[ \-]?){12,18}\d", _OPTIONS)
IBAN = re2.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", _OPTIONS)
IPV4 = re2.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", _OPTIONS)
IPV6 = re2.compile(r"(?i)\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b", _OPTIONS)
PHONE_RUN = re2.compile(r"\+?\(?\d(?:[\d \t().\-/]{0,30}\d)?", _OPTIONS)
MIN_PHONE_DIGITS = 7
"""The shortest subscriber number libphonenumber finds valid is longer: shorter runs are not read."""
SECRETS = re2.compile(
    "|".join(
        (
            r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[A-Za-z0-9+/=\s]+?-----END [A-Z ]{0,40}PRIVATE KEY-----",
            r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
            r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}",
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
            r"\bAIza[0-9A-Za-z_\-]{35}\b",
            r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b",
            r"\bgithub_pat_[A-Za-z0-9_]{60,255}\b",
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,250}",
            r"\b[rs]k_live_[A-Za-z0-9]{20,250}\b",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        )
    ),
    _OPTIONS,
)


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int
    entity: str


def find(text: str, entities: Iterable[str], phone_region: str = "US") -> list[Span]:
    """Every entity of the given kinds, in order, overlapping spans merged into the first found
    (a secret before a phone number that is part of it, a card before a phone)."""
    wanted = set(entities)
    found: list[Span] = []
    if "secret" in wanted:
        found += [Span(m.start(), m.end(), "secret") for m in SECRETS.finditer(text)]
    if "email" in wanted:
        found += [Span(m.start(), m.end(), "email") for m in EMAIL.finditer(text)]
    if "iban" in wanted:
        found += [Span(m.start(), m.end(), "iban") for m in IBAN.finditer(text) if iban.is_valid(m.group())]
    if "credit_card" in wanted:
        found += [Span(m.start(), m.end(), "credit_card") for m in CARD.finditer(text) if _is_card(m.group())]
    if "ip" in wanted:
        found += [Span(m.start(), m.end(), "ip") for m in IPV4.finditer(text) if _is_ip(m.group())]
        found += [Span(m.start(), m.end(), "ip") for m in IPV6.finditer(text) if ":" in m.group() and _is_ip(m.group())]
    if "phone" in wanted:
        found += _phones(text, phone_region)
    return _without_overlaps(found)


def redact(text: str, spans: list[Span]) -> str:
    """The text with each span replaced by its kind's placeholder (``[EMAIL]``)."""
    return replaced(text, [(s.start, s.end, PLACEHOLDERS[s.entity]) for s in spans])


def replaced(text: str, spans: list[tuple[int, int, str]]) -> str:
    """The text with each ``(start, end, mask)`` span, in order and not overlapping, replaced by its mask."""
    pieces, last = [], 0
    for start, end, mask in spans:
        pieces += [text[last:start], mask]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _phones(text: str, region: str) -> list[Span]:
    """Valid phone numbers: libphonenumber reads each run of digits long enough to be one (RE2 finds
    them), not the whole text, which its own Python patterns would scan."""
    spans = []
    for run in PHONE_RUN.finditer(text):
        if sum(c.isdigit() for c in run.group()) < MIN_PHONE_DIGITS:
            continue
        for match in phonenumbers.PhoneNumberMatcher(run.group(), region, leniency=phonenumbers.Leniency.VALID):
            spans.append(Span(run.start() + match.start, run.start() + match.end, "phone"))
    return spans


def _is_card(candidate: str) -> bool:
    digits = "".join(c for c in candidate if c.isdigit())
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _without_overlaps(spans: list[Span]) -> list[Span]:
    """Spans by start; one overlapping an earlier-kept span is dropped (the kinds are tried in an
    order of confidence: a secret, an email, an IBAN and a card before an IP or a phone)."""
    priority = {kind: i for i, kind in enumerate(PLACEHOLDERS)}
    kept: list[Span] = []
    for span in sorted(
        spans, key=lambda s: (priority["secret"] if s.entity == "secret" else priority[s.entity], s.start)
    ):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept)
