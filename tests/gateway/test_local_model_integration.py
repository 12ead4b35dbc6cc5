"""The gateway under uvicorn in front of a real llama.cpp server (SmolLM2), called with the openai SDK."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.servers import serving

pytestmark = pytest.mark.local_model
KEY = "sk-integration"


def rules_for(llama_endpoint: str) -> str:
    return f"""
backends:
  llama: {{kind: openai, endpoint: "{llama_endpoint}", model: smollm2}}
  external: {{kind: litellm, model: openai/smollm2, api_base: "{llama_endpoint}"}}
  embedded: {{kind: local, parallel: 2, context_tokens: 1024}}
  dead: {{kind: openai, endpoint: "http://127.0.0.1:9/v1", model: x, timeout_s: 2}}
routes:
  general: {{backends: [dead, llama]}}
  external: {{backends: [external]}}
  embedded: {{backends: [embedded]}}
  math: {{backends: [llama], description: arithmetic}}
default_route: general
api_keys:
  - {{tenant: it, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""


@pytest.fixture(scope="module")
def gateway_url(llama_server: str) -> Iterator[str]:
    app = create_app(Settings(), parse_rules(rules_for(llama_server)))
    with serving(app) as url:
        yield url


@pytest.fixture
async def client(gateway_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=gateway_url + "/v1", api_key=KEY, max_retries=0) as client:
        yield client


MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.mark.parametrize("model", ["auto", "external", "embedded"])
async def test_chat_completion_through_gateway(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 12
    assert raw.headers["x-turnout-route"] == ("general" if model == "auto" else model)
    expected_backend = {"auto": "llama", "external": "external", "embedded": "embedded"}[model]
    assert raw.headers["x-turnout-backend"] == expected_backend
    assert "timings" not in raw.http_response.json()  # llama.cpp's own field is not passed on


@pytest.mark.parametrize("model", ["auto", "external", "embedded"])
async def test_streamed_chat_completion_through_gateway(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    async for chunk in raw.parse():
        assert "timings" not in (chunk.model_extra or {})
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text
    assert finish in {"stop", "length"}
    assert usage is not None
    assert usage.completion_tokens > 0
    assert raw.headers["x-turnout-backend"] in {"llama", "external", "embedded"}


async def test_auto_is_routed_by_the_shipped_classifier(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "What is 12 times 12?"}],
        max_tokens=8,
    )
    assert raw.headers["x-turnout-route"] == "math"
    assert 0.5 < float(raw.headers["x-turnout-router-score"]) <= 1


async def test_embeddings_through_gateway(client: openai.AsyncOpenAI) -> None:
    result = await client.embeddings.create(model="embedded", input=["hello", "world"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) > 100


async def test_sdk_sees_openai_errors(client: openai.AsyncOpenAI, gateway_url: str) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-17", messages=MESSAGES)  # type: ignore[arg-type]
    async with openai.AsyncOpenAI(base_url=gateway_url + "/v1", api_key="sk-wrong", max_retries=0) as bad_key:
        with pytest.raises(openai.AuthenticationError):
            await bad_key.chat.completions.create(model="auto", messages=MESSAGES)  # type: ignore[arg-type]


async def test_models_lists_routes(client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert ids == ["auto", "general", "external", "embedded", "math"]
