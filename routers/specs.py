"""What the routers are configured with, and what they read of the rules: the rules schema
(``gateway.rules``) composes these specs, and a ``Rules`` satisfies :class:`RoutingTable`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import Field, field_validator

from contracts.strict import NAME, Strict


class RuleMatch(Strict):
    """Conditions of a routing rule; all given ones must hold."""

    headers: dict[str, str] = {}
    """Header name (any case) to exact value."""
    tenants: list[str] | None = None
    models: list[str] | None = None
    """The requested ``model``: ``auto`` or a name that is not a route, e.g. ``gpt-4``."""
    regex: str | None = None
    """Searched in the last user message."""
    min_tokens: int | None = Field(None, ge=0, le=10**9)
    max_tokens: int | None = Field(None, ge=0, le=10**9)
    """Prompt length, estimated as characters / 4 over all messages."""
    has_tools: bool | None = None
    has_images: bool | None = None


class RuleSpec(Strict):
    name: str = Field(pattern=NAME)
    when: RuleMatch
    route: str


DEFAULT_EXAMPLE_THRESHOLD = 0.9
DEFAULT_EXAMPLE_MARGIN = 0.05
MAX_EXAMPLES = 10_000
"""The default bound on examples, inline and from the file together."""


class RouteExample(Strict):
    route: str
    prompt: str = Field(min_length=1, max_length=32_768)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("an example's prompt is empty")
        return prompt


class ClassifierRouterSpec(Strict):
    kind: Literal["classifier"]
    model: Path | None = None
    """A directory from ``turnout router train``; unset: the shipped task classifier."""
    labels: dict[str, str] = {}
    """Label to route, by name. Unlisted labels go to the route of the same name, else the default route."""
    threshold: float = Field(0.5, ge=0, le=1)
    """Below this confidence the request goes to the default route."""
    thresholds: dict[str, float] = {}
    """Per-route thresholds, overriding ``threshold``."""
    reuse: int = Field(4096, ge=0, le=1_000_000)
    """Decisions kept for repeated routing texts, per rules version (least recently used go first); 0: none."""
    examples: list[RouteExample] = []
    """Prompts that must take a route: requests close to one follow it (:mod:`routers.examples`)."""
    examples_file: Path | None = None
    """More examples, one JSON object ``{"route", "prompt"}`` a line; its sha256 is part of the version."""
    example_threshold: float = Field(DEFAULT_EXAMPLE_THRESHOLD, ge=0, le=1)
    """The cosine similarity at or over which the nearest example decides."""
    example_thresholds: dict[str, float] = {}
    """Per-route thresholds for examples of that route, overriding ``example_threshold``."""
    example_margin: float = Field(DEFAULT_EXAMPLE_MARGIN, ge=0, le=2)
    """How much closer the nearest example must be than any example of another route."""
    max_examples: int = Field(MAX_EXAMPLES, ge=0, le=100_000)
    """The most examples, inline and from the file together."""


class LLMRouterSpec(Strict):
    kind: Literal["llm"]
    backend: str
    """The backend asked to choose among the routes by their descriptions."""
    budget_ms: int = Field(1500, ge=10, le=600_000)
    min_confidence: float = Field(0.5, ge=0, le=1)
    fallback: ClassifierRouterSpec | None = None
    """Consulted on timeout, bad output or low confidence; unset: the default route."""


class DefaultRouterSpec(Strict):
    kind: Literal["default"]


RouterSpec = Annotated[ClassifierRouterSpec | LLMRouterSpec | DefaultRouterSpec, Field(discriminator="kind")]


class VariantEntry(Protocol):
    @property
    def backends(self) -> Sequence[str]: ...

    @property
    def weight(self) -> int: ...


class RouteEntry(Protocol):
    @property
    def chain(self) -> Sequence[str]:
        """The backends in order, primary first, before any variant is drawn."""
        ...

    @property
    def description(self) -> str: ...

    @property
    def variants(self) -> Mapping[str, VariantEntry]: ...

    @property
    def sticky(self) -> str: ...


class RoutingTable(Protocol):
    """The routes, the default one, the aliases and the routing rules: what a router decides among."""

    @property
    def routes(self) -> Mapping[str, RouteEntry]: ...

    @property
    def default_route(self) -> str: ...

    @property
    def aliases(self) -> Mapping[str, str]: ...

    @property
    def rules(self) -> Sequence[RuleSpec]: ...

    @property
    def router(self) -> RouterSpec: ...
