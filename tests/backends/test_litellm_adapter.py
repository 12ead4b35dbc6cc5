from __future__ import annotations

import inspect
import logging
import types
import warnings

import httpx
import pytest

from backends.dependency_warnings import dependency_warnings_ignored
from backends.http_transport import HttpClients
from backends.litellm_adapter import LITELLM_ERRORS, LiteLLMBackend, import_litellm, translate
from backends.upstream_http import HttpxUpstream
from contracts.errors import (
    BackendBadResponse,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ResponseTooLarge,
)
from contracts.wire import ChatCompletionRequest
from gateway.resilience.fallback import failure_kind
from gateway.rules import LiteLLMBackend as LiteLLMBackendSpec
from support.ports import free_port


def litellm_exception_classes() -> list[type[BaseException]]:
    exceptions = import_litellm().exceptions
    return [
        cls
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__.startswith("litellm")
    ]


def test_every_litellm_exception_class_has_an_explicit_mapping() -> None:
    classes = litellm_exception_classes()
    assert len(classes) > 20
    assert [cls.__name__ for cls in classes if cls.__name__ not in LITELLM_ERRORS] == []


def make(cls_name: str, **kwargs: object) -> BaseException:
    cls = getattr(import_litellm().exceptions, cls_name)
    return cls(message="m", model="openai/x", llm_provider="openai", **kwargs)  # type: ignore[no-any-return]


def test_translate_maps_rate_limit_timeout_and_connection() -> None:
    assert isinstance(translate("b", make("RateLimitError")), BackendRateLimited)
    assert isinstance(translate("b", make("Timeout")), BackendTimeout)
    assert isinstance(translate("b", make("APIConnectionError")), BackendUnavailable)


def test_translate_keeps_request_errors_as_not_retryable_4xx() -> None:
    error = translate("b", make("ContextWindowExceededError"))
    assert isinstance(error, BackendRejected)
    assert error.status == 400
    assert failure_kind(error) is None  # the request's own fault: no fallback


def chat(**extra: object) -> ChatCompletionRequest:
    body = {"model": "auto", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, **extra}
    return ChatCompletionRequest.model_validate(body)


def spec_for(endpoint: str) -> LiteLLMBackendSpec:
    return LiteLLMBackendSpec(kind="litellm", model="openai/smollm2", api_base=endpoint)


@pytest.mark.local_model
async def test_complete_through_litellm_to_local_openai_server(llama_server: str) -> None:
    backend = await LiteLLMBackend.open("ext", spec_for(llama_server), HttpClients(transport="httpx"))
    answer = await backend.complete(chat(temperature=0), 60)
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0
    assert answer.choices[0].model_extra["message"]["content"]  # type: ignore[index]


@pytest.mark.local_model
async def test_stream_through_litellm_to_local_openai_server(llama_server: str) -> None:
    backend = await LiteLLMBackend.open("ext", spec_for(llama_server), HttpClients(transport="httpx"))
    chunks = [c async for c in backend.stream(chat(), 60)]
    text = "".join((c.choices[0].model_extra or {}).get("delta", {}).get("content") or "" for c in chunks if c.choices)
    assert text
    assert any(c.finish_reason for chunk in chunks for c in chunk.choices)


async def test_unreachable_api_base_is_unavailable() -> None:
    backend = await LiteLLMBackend.open(
        "ext", spec_for(f"http://127.0.0.1:{free_port()}/v1"), HttpClients(transport="httpx")
    )
    with pytest.raises(BackendUnavailable):
        await backend.complete(chat(), 10)


class _Malformed:
    def model_dump(self) -> dict[str, object]:
        return {"id": "x", "choices": []}  # no choice: not a chat completion


async def test_malformed_litellm_answer_is_a_backend_error_not_a_validation_error() -> None:
    async def acompletion(**_: object) -> _Malformed:
        return _Malformed()

    fake = types.SimpleNamespace(acompletion=acompletion)
    spec = LiteLLMBackendSpec(kind="litellm", model="openai/m", api_base="http://127.0.0.1:9/v1")
    async with httpx.AsyncClient() as client:
        backend = LiteLLMBackend("ext", spec, fake, HttpxUpstream(client))  # type: ignore[arg-type]
        with pytest.raises(BackendBadResponse):
            await backend.complete(ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}]), 5)  # type: ignore[list-item]


def warn_as_a_dependency(module: str) -> None:
    """What pydantic does when litellm first builds one of its TypedDicts: a UserWarning from its module."""
    warnings.warn_explicit("Items 'a', 'b' are using the `ReadOnly` qualifier.", UserWarning, "x.py", 1, module=module)


@pytest.mark.local_model
async def test_a_dependency_warning_mid_call_does_not_fail_the_call(llama_server: str) -> None:
    litellm = import_litellm()

    async def acompletion(**kwargs: object) -> object:
        warn_as_a_dependency("pydantic._internal._generate_schema")
        return await litellm.acompletion(**kwargs)

    backend = await LiteLLMBackend.open("ext", spec_for(llama_server), HttpClients(transport="httpx"))
    backend._litellm = types.SimpleNamespace(acompletion=acompletion)  # type: ignore[assignment]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as `python -W error`, and as this suite runs
        answer = await backend.complete(chat(temperature=0), 60)
    assert answer.choices


def test_dependency_warnings_are_ignored_only_inside_the_scope_and_only_for_dependencies() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = list(warnings.filters)
        outer = dependency_warnings_ignored()
        inner = dependency_warnings_ignored()
        outer.__enter__()
        inner.__enter__()  # two calls overlapping on one loop
        warn_as_a_dependency("litellm.llms.github_copilot")
        with pytest.raises(UserWarning):
            warn_as_a_dependency("gateway.chat")  # the gateway's own stay errors
        outer.__exit__(None, None, None)  # the first to start ends first: the other is still inside
        warn_as_a_dependency("pydantic._internal._generate_schema")
        inner.__exit__(None, None, None)
        assert warnings.filters == before
        with pytest.raises(UserWarning):
            warn_as_a_dependency("pydantic._internal._generate_schema")


@pytest.mark.local_model
async def test_a_litellm_call_logs_nothing_below_warning_through_litellms_own_handler(
    llama_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await LiteLLMBackend.open("ext", spec_for(llama_server), HttpClients(transport="httpx"))
    with caplog.at_level(logging.INFO):
        await backend.complete(chat(temperature=0), 60)
    quiet = [r.getMessage() for r in caplog.records if r.name.startswith("LiteLLM") and r.levelno < logging.WARNING]
    assert quiet == []
    assert all(not logging.getLogger(name).handlers for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"))


class _Part:
    def __init__(self, body: dict[str, object]) -> None:
        self._body = body

    def model_dump(self) -> dict[str, object]:
        return self._body


class _ProviderStream:
    """litellm's stream wrapper as the adapter sees it: iterable, and ``aclose`` closes the connection."""

    def __init__(self, content: str, count: int) -> None:
        self.is_closed = False
        self._parts = [
            _Part({"id": "c", "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"content": content}, "finish_reason": "stop" if n == count - 1 else None}
            ]})
            for n in range(count)
        ]  # fmt: skip

    def __aiter__(self) -> _ProviderStream:
        return self

    async def __anext__(self) -> _Part:
        if not self._parts:
            raise StopAsyncIteration
        return self._parts.pop(0)

    async def aclose(self) -> None:
        self.is_closed = True


def backend_over(fake: object, max_response_bytes: int = 1024 * 1024) -> LiteLLMBackend:
    spec = LiteLLMBackendSpec(
        kind="litellm", model="openai/m", api_base="http://127.0.0.1:9/v1", max_response_bytes=max_response_bytes
    )
    return LiteLLMBackend("ext", spec, fake, None)  # type: ignore[arg-type]


async def test_a_litellm_answer_over_max_response_bytes_is_refused() -> None:
    async def acompletion(**_: object) -> _Part:
        message = {"role": "assistant", "content": "x" * 5000}
        return _Part({"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": message}]})

    with pytest.raises(ResponseTooLarge):
        await backend_over(types.SimpleNamespace(acompletion=acompletion), 2048).complete(chat(), 5)


@pytest.mark.parametrize("ending", ["left early", "too large", "whole"])
async def test_a_litellm_stream_is_closed_on_every_way_out(ending: str) -> None:
    provider = _ProviderStream("y" * 300, 10)

    async def acompletion(**_: object) -> _ProviderStream:
        return provider

    backend = backend_over(types.SimpleNamespace(acompletion=acompletion), 2048 if ending == "too large" else 10**6)
    chunks = backend.stream(chat(), 5)
    if ending == "left early":
        await anext(chunks)
        await chunks.aclose()  # type: ignore[attr-defined]
    elif ending == "too large":
        with pytest.raises(ResponseTooLarge):
            _ = [c async for c in chunks]
    else:
        assert len([c async for c in chunks]) == 10
    assert provider.is_closed
