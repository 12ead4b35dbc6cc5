"""The Responses and Messages APIs against a real llama.cpp server (SmolLM2) through ``model: auto``,
called with the official openai and anthropic SDKs; and count_tokens by llama.cpp's own tokenizer."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.servers import serving

pytestmark = pytest.mark.local_model
KEY = "sk-local-apis"
QUESTION = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def gateway_url(llama_server: str) -> Iterator[str]:
    rules = f"""
backends:
  llama: {{kind: openai, endpoint: "{llama_server}", model: smollm2}}
routes:
  general: {{backends: [llama]}}
  math: {{backends: [llama]}}
default_route: general
api_keys:
  - {{tenant: local, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""
    with serving(create_app(Settings(), parse_rules(rules))) as url:
        yield url


@pytest.fixture
async def clients(gateway_url: str) -> AsyncIterator[tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]]:
    async with (
        openai.AsyncOpenAI(base_url=gateway_url + "/v1", api_key=KEY, max_retries=0) as oai,
        anthropic.AsyncAnthropic(base_url=gateway_url, api_key=KEY, max_retries=0) as claude,
    ):
        yield oai, claude


async def test_responses_through_auto(clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]) -> None:
    oai, _ = clients
    raw = await oai.responses.with_raw_response.create(model="auto", input=QUESTION, max_output_tokens=12)
    response = raw.parse()
    assert response.status in {"completed", "incomplete"}
    assert response.output_text.strip()
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 12
    assert raw.headers["x-turnout-backend"] == "llama"
    assert raw.headers["x-turnout-route"] in {"general", "math"}
    # Long enough to finish: a stream cut at max_output_tokens ends with response.incomplete, as
    # OpenAI's does, which the SDK's helper does not count as a final response.
    async with oai.responses.stream(model="auto", input=QUESTION, max_output_tokens=48, temperature=0) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert final.output_text.strip()


async def test_messages_through_auto(clients: tuple[openai.AsyncOpenAI, anthropic.AsyncAnthropic]) -> None:
    _, claude = clients
    raw = await claude.messages.with_raw_response.create(
        model="auto", max_tokens=12, messages=[{"role": "user", "content": QUESTION}]
    )
    message = await raw.parse()
    assert message.content[0].text.strip()  # type: ignore[union-attr]
    assert message.stop_reason in {"end_turn", "max_tokens"}
    assert message.usage.input_tokens > 0
    assert raw.headers["x-turnout-backend"] == "llama"
    async with claude.messages.stream(
        model="auto", max_tokens=12, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


async def test_count_tokens_uses_llama_cpps_tokenizer(gateway_url: str) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]}
    async with httpx.AsyncClient(base_url=gateway_url, headers={"x-api-key": KEY}) as http:
        counted = await http.post("/v1/messages/count_tokens", json=body)
    assert counted.headers["x-turnout-token-count"] == "backend:llama"
    # SmolLM2's template wraps the message in its default system prompt: 32 tokens in all.
    assert counted.json() == {"input_tokens": 32}
