"""A sticky route through each API with its official SDK: chat's and Responses' ``user``, and
Messages' ``metadata.user_id``, keep one caller in one variant; feedback by the answer's id."""

from __future__ import annotations

import httpx

from tests.gateway.api_harness import KEY, RULES, sdk_clients

BY_USER = RULES.replace(
    "  general: {backends: [primary, fallback], description: everything}",
    """  general:
    variants:
      current: {backends: [primary, fallback], weight: 50}
      candidate: {backends: [fallback, primary], weight: 50}
    sticky: user""",
)


async def test_each_api_keeps_a_user_in_one_variant() -> None:
    async with sdk_clients(BY_USER) as clients:
        seen: dict[str, set[str]] = {}
        for n in range(12):
            user = f"user-{n}"
            chat = await clients.openai.chat.completions.with_raw_response.create(
                model="general", messages=[{"role": "user", "content": "hi"}], user=user
            )
            responses = await clients.openai.responses.with_raw_response.create(model="general", input="hi", user=user)
            messages = await clients.anthropic.messages.with_raw_response.create(
                model="general", max_tokens=20, messages=[{"role": "user", "content": "hi"}], metadata={"user_id": user}
            )
            seen[user] = {r.headers["x-turnout-variant"] for r in (chat, responses, messages)}
            request_id = messages.headers["x-request-id"]
        async with httpx.AsyncClient(base_url=clients.url) as client:
            scored = await client.post(
                "/v1/feedback",
                json={"request_id": request_id, "label": "good"},
                headers={"authorization": f"Bearer {KEY}"},
            )
    assert all(len(variants) == 1 for variants in seen.values())
    assert {variant for variants in seen.values() for variant in variants} == {"current", "candidate"}
    assert scored.json()["variant"] == next(iter(seen["user-11"]))
