"""Backend kinds by name, imported only when a rules file asks for them."""

from __future__ import annotations

import importlib
from typing import Any

from backends.base import Backend
from backends.http_transport import HttpClients
from backends.specs import EndpointSpec

KINDS: dict[str, str] = {
    "openai": "backends.openai_compat:OpenAICompatBackend",
    "litellm": "backends.litellm_adapter:LiteLLMBackend",
    "local": "backends.local:LocalBackend",
}


def backend_class(kind: str) -> Any:
    module_name, _, class_name = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


async def open_backend(name: str, spec: EndpointSpec, clients: HttpClients) -> Backend:
    backend: Backend = await backend_class(spec.kind).open(name, spec, clients)
    return backend
