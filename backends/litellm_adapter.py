"""External providers (OpenAI, Anthropic, Azure, Bedrock, ...) through litellm.

litellm is imported only when a rules file names a ``litellm`` backend. Every call
carries its own ``api_base``, ``api_key`` and ``timeout``; no ``litellm.*`` global
is ever set, so two backends never leak settings into each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import httpx
import orjson

from backends.base import Health
from backends.dependency_warnings import dependency_warnings_ignored
from backends.http_transport import HttpClients, check_models, error_class_for, too_large
from backends.specs import LiteLLMEndpoint
from backends.upstream_http import UpstreamHttp
from contracts.errors import (
    BackendBadResponse,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
)
from contracts.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)

# litellm exception class name -> our error. Every class in ``litellm.exceptions``
# has an entry (tests/backends/test_litellm_adapter.py checks it).
LITELLM_ERRORS: dict[str, type[BackendError]] = {
    "RateLimitError": BackendRateLimited,
    "CallerCredentialRateLimitError": BackendRateLimited,
    "BudgetExceededError": BackendRateLimited,
    "Timeout": BackendTimeout,
    "APIConnectionError": BackendUnavailable,
    "ServiceUnavailableError": BackendUnavailable,
    "MidStreamFallbackError": BackendBadResponse,
    "BadGatewayError": BackendBadResponse,
    "InternalServerError": BackendBadResponse,
    "APIError": BackendBadResponse,
    "OpenAIError": BackendBadResponse,
    "MockException": BackendBadResponse,
    "APIResponseValidationError": BackendBadResponse,
    "JSONSchemaValidationError": BackendBadResponse,
    # The gateway's own credentials, account or model name are wrong: another backend may do.
    "AuthenticationError": BackendBadResponse,
    "CallerCredentialAuthenticationError": BackendBadResponse,
    "PermissionDeniedError": BackendBadResponse,
    "NotFoundError": BackendBadResponse,
    "PaymentRequiredError": BackendBadResponse,
    "ModelNotMappedError": BackendBadResponse,
    "LiteLLMUnknownProvider": BackendBadResponse,
    # This provider or model does not serve the operation asked for; another backend may.
    "UnsupportedEndpointError": BackendBadResponse,
    "EndpointNotSupportedByModelError": BackendBadResponse,
    # The request itself was refused: the caller must change it.
    "BadRequestError": BackendRejected,
    "InvalidRequestError": BackendRejected,
    "UnprocessableEntityError": BackendRejected,
    "ContextWindowExceededError": BackendRejected,
    "ContentPolicyViolationError": BackendRejected,
    "RejectedRequestError": BackendRejected,
    "UnsupportedParamsError": BackendRejected,
    "MalformedRequestFieldError": BackendRejected,
    "ImageFetchError": BackendRejected,
    "VectorStoreSearchError": BackendRejected,
    "GuardrailRaisedException": BackendRejected,
    "BlockedPiiEntityError": BackendRejected,
    "ModifyResponseException": BackendRejected,
    "SensitiveDataRouteException": BackendRejected,
}


def import_litellm() -> ModuleType:
    # Without this litellm fetches its price map from the internet at import and waits on retries.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with dependency_warnings_ignored():
        import litellm

    _quiet_loggers()
    return litellm


HEALTH_CHECK_CONNECTIONS = 2
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


def _quiet_loggers() -> None:
    """litellm logs two INFO lines per call through a handler of its own (bypassing the gateway's
    format, JSON included). Its records go through the gateway's handlers instead, at WARNING and
    above, unless ``LITELLM_LOG`` asks for more."""
    asked = os.environ.get("LITELLM_LOG")
    level = max(logging.WARNING, logging.getLogger().level) if not asked else logging.getLevelName(asked.upper())
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(level)


def translate(backend: str, exc: BaseException) -> BackendError:
    transport_error = _transport_cause(exc)
    if transport_error is not None:  # litellm reports a refused connection as InternalServerError
        return transport_error(f"backend {backend!r}: {exc}")
    for cls in type(exc).__mro__:
        error = LITELLM_ERRORS.get(cls.__name__) if cls.__module__.startswith("litellm") else None
        if error is None:
            continue
        message = f"backend {backend!r}: {cls.__name__}: {exc}"
        translated = (
            BackendRejected(message, status=_client_status(exc)) if error is BackendRejected else error(message)
        )
        status = getattr(exc, "status_code", None)
        translated.upstream_status = status if isinstance(status, int) else None
        return translated
    return BackendBadResponse(f"backend {backend!r}: {type(exc).__name__}: {exc}")


class LiteLLMBackend:
    def __init__(
        self,
        name: str,
        spec: LiteLLMEndpoint,
        litellm: ModuleType,
        health_checks: UpstreamHttp,
    ) -> None:
        self.name = name
        self._spec = spec
        self._litellm = litellm
        self._health_checks = health_checks
        """Closed with the backend (it leaves a client handed in by the app's caller open)."""
        self._api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if self._api_key is None and spec.api_base is not None:
            # A keyless self-hosted server; litellm's OpenAI client refuses to send no key at all.
            self._api_key = "no-key"

    @classmethod
    async def open(cls, name: str, spec: LiteLLMEndpoint, clients: HttpClients) -> LiteLLMBackend:
        health_checks = clients.upstream(HEALTH_CHECK_CONNECTIONS)  # litellm has clients of its own for calls
        return cls(name, spec, import_litellm(), health_checks)

    async def complete(self, request: ChatCompletionRequest, timeout_s: float) -> ChatCompletion:
        with self._translated():
            response = await self._litellm.acompletion(**self._call(request, timeout_s))
            answer = response.model_dump()
            self._check_size(len(orjson.dumps(answer)))
            return ChatCompletion.model_validate(answer)

    async def stream(self, request: ChatCompletionRequest, timeout_s: float) -> AsyncIterator[ChatCompletionChunk]:
        """The provider's stream, closed on every way out (a lost hedge, a budget cut, a client that
        left, a size over ``max_response_bytes``): its connection is never left open."""
        has_finished, size = False, 0
        with self._translated():
            response = await self._litellm.acompletion(**self._call(request, timeout_s), stream=True)
            try:
                async for part in response:
                    dumped = part.model_dump()
                    size += len(orjson.dumps(dumped))
                    self._check_size(size)
                    chunk = ChatCompletionChunk.model_validate(dumped)
                    has_finished = has_finished or any(c.finish_reason for c in chunk.choices)
                    yield chunk
            finally:
                await _close(response)
        if not has_finished:
            raise BackendBadResponse(f"backend {self.name!r}: the stream ended before the answer was finished")

    async def embed(self, request: EmbeddingRequest, timeout_s: float) -> EmbeddingResponse:
        with self._translated():
            response = await self._litellm.aembedding(
                model=self._spec.model,
                input=request.input,
                api_base=self._spec.api_base,
                api_key=self._api_key,
                timeout=timeout_s,
            )
            return EmbeddingResponse.model_validate(response.model_dump())

    async def count_tokens(self, request: ChatCompletionRequest, timeout_s: float) -> int | None:
        """``None``: a provider's count would cost a paid call, and a local guess is not its count."""
        return None

    async def health(self, timeout_s: float) -> Health:
        """Probes ``api_base`` when set; a paid public API is not called just to check it."""
        if self._spec.api_base is None:
            return Health(is_healthy=True, detail="external API, not probed", is_probed=False)
        try:
            headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            url = self._spec.api_base.rstrip("/") + "/models"
            await check_models(self._health_checks, self.name, url, headers, timeout_s)
        except Exception as exc:  # a health check reports, it never raises
            return Health(is_healthy=False, detail=str(exc))
        return Health(is_healthy=True)

    async def aclose(self) -> None:
        """Closes the health check's pool; litellm keeps no other per-backend resources."""
        await self._health_checks.aclose()

    def _check_size(self, size: int) -> None:
        if size > self._spec.max_response_bytes:
            raise too_large(self.name, self._spec.max_response_bytes)

    def _call(self, request: ChatCompletionRequest, timeout_s: float) -> dict[str, Any]:
        params = request.model_dump(exclude_unset=True, exclude={"model", "messages", "stream"})
        return {
            **params,
            "model": self._spec.model,
            "messages": [m.model_dump(exclude_unset=True) for m in request.messages],
            "api_base": self._spec.api_base,
            "api_key": self._api_key,
            "timeout": timeout_s,
            "num_retries": 0,
        }

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            with dependency_warnings_ignored():
                yield
        except BackendError:
            raise
        except Exception as exc:  # every failure, a malformed answer (ValidationError) included
            raise translate(self.name, exc) from exc


async def _close(response: object) -> None:
    close = getattr(response, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):  # closing reports nothing: the answer is already settled
            await close()


def _transport_cause(exc: BaseException) -> type[BackendError] | None:
    cause = exc.__cause__ or exc.__context__
    for _ in range(16):
        if cause is None:
            return None
        if isinstance(cause, httpx.TransportError):
            return error_class_for(cause)
        cause = cause.__cause__ or cause.__context__
    return None


def _client_status(exc: BaseException) -> int:
    status = getattr(exc, "status_code", 400)
    return status if isinstance(status, int) and 400 <= status < 500 else 400
