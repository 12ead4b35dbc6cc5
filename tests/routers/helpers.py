from __future__ import annotations

from contracts.wire import ChatCompletionRequest
from gateway.rules import Rules, parse_rules

RULES = """
backends:
  small: {kind: openai, endpoint: "http://small/v1", model: s}
  big: {kind: openai, endpoint: "http://big/v1", model: b}
routes:
  general: {backends: [big], description: anything else}
  code: {backends: [small, big], description: programming}
  math: {backends: [small], description: arithmetic}
  vision: {backends: [big]}
default_route: general
router: {kind: default}
aliases: {pinned-big: big}
rules:
  - {name: team-x, when: {headers: {X-Team: search}}, route: math}
  - {name: images, when: {has_images: true}, route: vision}
  - {name: tenant-b, when: {tenants: [b], regex: "(?i)\\\\bsql\\\\b"}, route: code}
  - {name: long, when: {min_tokens: 50}, route: general}
  - {name: legacy-model, when: {models: [gpt-4]}, route: code}
  - {name: tools, when: {has_tools: true, max_tokens: 49}, route: code}
"""


def rules(text: str = RULES) -> Rules:
    return parse_rules(text)


def chat(content: object = "hello", model: str = "auto", **extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    )
