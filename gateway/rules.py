"""The rules file: a typed model of routes, backends, aliases and API keys.

``load_rules(path)`` returns a :class:`Rules` or raises :class:`RulesInvalid`
carrying every problem found, each with its path in the file (``routes.code.backends[1]``)
and, where the YAML tells it, the line.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from backends.specs import LiteLLMEndpoint, LocalServer, OpenAIEndpoint
from contracts.strict import NAME, SecretEnvName, Strict
from gateway.guardrails.specs import GUARDRAIL_KINDS, AttachedGuardrails, Guardrails, check_guardrails
from gateway.resilience.specs import BreakerSpec, FallbackSpec, HealthCheckSpec, HedgeSpec, RateLimitSpec
from gateway.yaml_source import DocumentRefused, LineIndex, load_yaml
from routers.patterns import MAX_PATTERNS, PatternInvalid, compile_pattern
from routers.specs import ClassifierRouterSpec, LLMRouterSpec, RouterSpec, RuleSpec

RESERVED_MODELS = {"auto"}


class Price(Strict):
    input_per_mtok: float = Field(0.0, ge=0, le=1_000_000)
    output_per_mtok: float = Field(0.0, ge=0, le=1_000_000)


class WarmupSpec(Strict):
    """Synthetic requests (``x-turnout-synthetic: warmup``) that keep a model from meeting a user cold."""

    requests: int = Field(3, ge=1, le=100)
    """Sent when the backend is new or changed in a rules snapshot, before it takes traffic."""
    prompt: str | None = Field(None, min_length=1, max_length=10_000)
    from_golden: bool = False
    """Take the prompts from the golden sets of the routes this backend serves."""
    keep_warm_idle_s: int | None = Field(300, ge=1, le=7 * 24 * 3600)
    """A backend idle this long gets one request; unset: none."""
    timeout_s: float = Field(30.0, gt=0, le=600)
    """For the warm-up before a snapshot is installed, all requests together."""


class BackendPolicy(Strict):
    """What the gateway does around any backend."""

    price: Price = Price()
    timeout_s: float = Field(60.0, ge=0.01, le=3600)
    """Longest a single call may take (for streams: the longest wait for any chunk); each attempt
    also gets no more than what is left of the request's budget."""
    max_in_flight: int | None = Field(None, ge=1, le=1_000_000)
    """Most requests sent to this backend at once; beyond it the route's next backend is tried,
    and 429 with Retry-After when every one is full."""
    breaker: BreakerSpec = BreakerSpec()
    health_check: HealthCheckSpec = HealthCheckSpec()
    warmup: WarmupSpec | None = None
    cold_after_s: int = Field(300, ge=1, le=7 * 24 * 3600)
    """A request after this long without one is counted cold (``turnout_backend_cold_seconds``)."""
    external: bool = False
    """A third party's API: input guardrails with ``applies_to: external`` rewrite what it is sent.
    Every ``kind: litellm`` backend is external whatever this says."""


class OpenAIBackend(OpenAIEndpoint, BackendPolicy):
    """Any OpenAI-compatible server: vLLM, TGI, SGLang, Triton, llama.cpp, Ollama."""


class LiteLLMBackend(LiteLLMEndpoint, BackendPolicy):
    """An external provider through litellm, e.g. ``model: anthropic/claude-sonnet-4``."""


class LocalBackend(LocalServer, BackendPolicy):
    """An embedded llama.cpp server (xllamacpp) serving a GGUF file."""


BackendSpec = Annotated[OpenAIBackend | LiteLLMBackend | LocalBackend, Field(discriminator="kind")]


def backend_identity(spec: OpenAIBackend | LiteLLMBackend | LocalBackend) -> dict[str, object]:
    """What a backend is (kind, endpoint, model, files, key, pool): a change reopens it. The rest is
    :class:`BackendPolicy` (price, timeouts, breaker, checks, in-flight bound), changed in place."""
    return spec.model_dump(exclude=set(BackendPolicy.model_fields))


class CachePolicy(Strict):
    enabled: bool = True
    ttl_s: int = Field(3600, ge=1, le=366 * 24 * 3600)
    """Entries expire this long after they were written; hits do not refresh it."""
    mode: Literal["deterministic", "always"] = "deterministic"
    """``deterministic``: only requests with temperature 0 or a seed; ``always``: every request."""
    max_entry_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    fallback_fills: bool = False
    """Whether an answer from a fallback backend may be stored for the route."""
    shared: bool = False
    """Tenants share this route's entries (otherwise each tenant has its own)."""
    tool_calls: bool = False
    """Whether answers that call tools may be cached (they often depend on outside state)."""
    single_flight_wait_ms: int = Field(30_000, ge=0, le=600_000)
    """How long an identical request waits for the one already asking the backend (in this replica
    or another) before it asks itself; never longer than its own latency budget. 0: never waits."""
    semantic_threshold: float | None = Field(None, gt=0, le=1)
    """Opt-in semantic cache: a request whose last user message has cosine similarity at least this
    with a cached one (and the same numbers and identifiers, and every other field equal) is a hit.
    Needs Redis 8 (vector sets) or the in-process store."""


class VariantSpec(Strict):
    """One arm of a rollout: a whole backend chain and its share of the route's traffic."""

    backends: list[str] = Field(min_length=1)
    """Primary first, fallbacks after, as a route's."""
    weight: int = Field(ge=0, le=1_000_000)
    """Its share against the other variants' weights; 0 takes it out without deleting it."""


class ShadowSpec(Strict):
    """A candidate backend asked in the background with a sample of the route's requests, its
    answers compared with the client's and never shown to anyone."""

    backend: str
    sample: float = Field(0.05, ge=0, le=1)
    """The share of the route's answered requests copied to it."""
    max_in_flight: int = Field(4, ge=1, le=1000)
    """Shadow calls running at once for this route; a sample beyond it is dropped (and counted)."""
    budget_ms: int = Field(10_000, ge=1, le=600_000)
    """The longest a shadow call may take."""
    agree_at: float = Field(0.85, gt=0, le=1)
    """Two longer answers agree at or above this cosine similarity under the router's encoder."""


class GoldenSpec(Strict):
    """A route's golden set (:mod:`gateway.golden`): run against a changed primary before the change
    is stored, and every ``every_s`` against the live one."""

    set: Path
    """The JSON Lines file (a relative path: from the gateway's working directory)."""
    min_pass_ratio: float = Field(0.95, ge=0, le=1)
    timeout_s: float = Field(120.0, gt=0, le=3600)
    """The whole set's run; rows unanswered by then fail."""
    concurrency: int = Field(4, ge=1, le=64)
    every_s: int | None = Field(None, ge=1, le=30 * 24 * 3600)
    """How often one replica of the fleet runs it against the live primary (drift); unset: never."""


STICKY = r"^(request|user|tenant|header:[A-Za-z0-9-]{1,64})$"
MAX_VARIANTS = 16


class RouteSpec(Strict):
    description: str = ""
    backends: list[str] = []
    """Primary first, fallbacks after, tried in this order. Give this or ``variants``."""
    variants: dict[Annotated[str, Field(pattern=NAME)], VariantSpec] = Field({}, max_length=MAX_VARIANTS)
    """Weighted backend chains (a rollout): each request is given one (:mod:`gateway.rollouts`)."""
    sticky: str = Field("request", pattern=STICKY)
    """What keeps a caller in one variant: ``request`` (each drawn at random), ``user`` (the API's
    user field), ``tenant``, or ``header:<name>``. Without that key, a request is drawn at random."""
    shadow: ShadowSpec | None = None
    golden: GoldenSpec | None = None
    cache: CachePolicy = CachePolicy()
    latency_budget_ms: int = Field(60_000, ge=1, le=3_600_000)
    """The whole request, fallbacks included; a client may tighten it with ``x-turnout-budget-ms``."""
    ttft_budget_ms: int | None = Field(None, ge=1, le=3_600_000)
    """For streams: the longest wait for the first chunk, fallbacks included. Unset: the whole budget."""
    attempt_reserve_ms: int | None = Field(None, ge=0, le=3_600_000)
    """Time kept back for each fallback still to try. Unset: each fallback's recent p95 latency
    once known, an equal share of the budget before."""
    fallback: FallbackSpec = FallbackSpec()
    hedge: HedgeSpec | None = None
    """Unset: no hedging; fallbacks start only when the backend before them has failed."""
    guardrails: AttachedGuardrails | None = None
    """Checks on the request and the answer, by name from the rules' ``guardrails`` (after the
    ``default_guardrails``)."""

    @property
    def chain(self) -> list[str]:
        """The backends in order when no variant has been drawn: ``backends``, or the heaviest variant's."""
        if self.backends or not self.variants:
            return self.backends
        return max(self.variants.values(), key=lambda variant: variant.weight).backends

    def chains(self) -> dict[str, list[str]]:
        """Every backend chain by where it is given (``backends`` or ``variants.<name>.backends``)."""
        if not self.variants:
            return {"backends": self.backends}
        return {f"variants.{name}.backends": variant.backends for name, variant in self.variants.items()}


class ApiKeySpec(Strict):
    tenant: str = Field(pattern=NAME)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    key_env: SecretEnvName | None = None
    """Name of an environment variable holding the key; it is hashed at load."""
    routes: list[str] | None = None
    """Routes and aliases this key may use; unset: all."""
    limits: RateLimitSpec | None = None


class AdminKeySpec(Strict):
    """A key for the admin API and console, kept apart from client keys."""

    name: str = Field(pattern=NAME)
    """Who wrote a change: the author in rules history and the audit."""
    key_env: SecretEnvName
    """Name of an environment variable holding the key."""
    role: Literal["viewer", "editor"] = "viewer"
    """A viewer reads; an editor also validates, applies and rolls back."""


MAX_ENTRIES = 1000
"""Backends, routes, aliases, routing rules, admin keys: each at most this many, so that no rules
document makes a build long enough to matter (every build also runs off the event loop)."""
MAX_KEYS = 10_000


class Rules(Strict):
    version: Literal[1] = 1
    backends: dict[Annotated[str, Field(pattern=NAME)], BackendSpec] = Field(min_length=1, max_length=MAX_ENTRIES)
    routes: dict[Annotated[str, Field(pattern=NAME)], RouteSpec] = Field(min_length=1, max_length=MAX_ENTRIES)
    default_route: str
    aliases: dict[Annotated[str, Field(pattern=NAME)], str] = Field({}, max_length=MAX_ENTRIES)
    """Model names that pin one backend: ``gpt-4o-mini: openai-fallback``."""
    api_keys: list[ApiKeySpec] = Field([], max_length=MAX_KEYS)
    admin_keys: list[AdminKeySpec] = Field([], max_length=MAX_ENTRIES)
    """Besides ``TURNOUT_ADMIN_KEY``, an editor named ``env``."""
    router: RouterSpec = ClassifierRouterSpec(kind="classifier")
    """What decides ``auto`` requests after the rules; the shipped classifier unless set."""
    rules: list[RuleSpec] = Field([], max_length=MAX_ENTRIES)
    """Evaluated in order before any model; the first match wins."""
    guardrails: Guardrails = Field({}, max_length=MAX_ENTRIES)
    """Checks defined once by name (:mod:`gateway.guardrails`), attached per route."""
    default_guardrails: AttachedGuardrails | None = None
    """Run on every route (and every pinned backend) before the route's own."""

    def external_backends(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.backends.items() if spec.external or spec.kind == "litellm")

    def environment_names(self) -> list[tuple[str, str]]:
        """``(path, variable)`` for every environment variable the rules name: backends' provider keys,
        client keys and admin keys. What a deployment must set (from its Secrets)."""
        named = [
            (f"backends.{name}.api_key_env", getattr(spec, "api_key_env", None)) for name, spec in self.backends.items()
        ]
        named += [(f"api_keys[{i}].key_env", key.key_env) for i, key in enumerate(self.api_keys)]
        named += [(f"admin_keys[{i}].key_env", admin.key_env) for i, admin in enumerate(self.admin_keys)]
        return [(path, variable) for path, variable in named if variable]


class RuleProblem(BaseModel):
    path: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path or '<root>'}: {self.message}"


class RulesInvalid(Exception):
    def __init__(self, source: str, problems: list[RuleProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.render(source) for p in problems))


def load_rules(path: Path) -> Rules:
    return read_rules(path)[0]


def read_rules(path: Path) -> tuple[Rules, str]:
    """The rules in the file at ``path``, and the file's text."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesInvalid(str(path), [RuleProblem(path="", message=f"cannot read: {exc.strerror}")]) from exc
    return parse_rules(text, source=str(path)), text


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    try:
        data, lines, duplicates = load_yaml(text)
    except DocumentRefused as exc:
        raise RulesInvalid(source, [RuleProblem(path="", message=f"refused before building anything: {exc}")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise RulesInvalid(source, [RuleProblem(path="", message=f"not valid YAML: {exc}", line=line)]) from exc
    problems = [RuleProblem(path=path, message="duplicate key", line=line) for path, line in duplicates]
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        problems += [_problem_from_pydantic(err, lines) for err in exc.errors()]
        partial = _without_invalid_values(data, exc)  # so the cross-checks can speak too, in the same run
        if partial is not None:
            problems += [RuleProblem(path=p, message=m, line=lines.line_of(p)) for p, m in cross_check(partial)]
        raise RulesInvalid(source, problems) from exc
    problems += [RuleProblem(path=p, message=m, line=lines.line_of(p)) for p, m in cross_check(rules)]
    if problems:
        raise RulesInvalid(source, problems)
    return rules


def _without_invalid_values(data: object, exc: ValidationError) -> Rules | None:
    """The document with each invalid value dropped (its default applies), when that validates:
    the cross-checks of a document with schema errors. ``None`` when a required value is wrong."""
    pruned = copy.deepcopy(data)
    for err in exc.errors():
        path = [part for part in err["loc"] if part not in _UNION_TAGS]
        if not path:
            return None  # the document itself is not a mapping: nothing to cross-check
        *parents, last = path
        node = pruned
        for part in parents:
            node = _child(node, part)
        if isinstance(node, dict):
            node.pop(last, None)
    try:
        return Rules.model_validate(pruned)
    except ValidationError:
        return None


def _child(node: object, part: object) -> object:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def cross_check(rules: Rules) -> list[tuple[str, str]]:
    """Problems between sections that no single field can see."""
    problems: list[tuple[str, str]] = []
    for route, spec in rules.routes.items():
        problems += _check_chains(route, spec, rules)
        problems += _check_budgets(route, spec)
    for name, backend_spec in rules.backends.items():
        if backend_spec.breaker.min_calls > backend_spec.breaker.window:
            problems.append((f"backends.{name}.breaker.min_calls", "larger than window: the ratio would never count"))
        problems += _check_warmup(name, backend_spec.warmup, rules)
    if rules.default_route not in rules.routes:
        problems.append(("default_route", f"unknown route {rules.default_route!r}"))
    for alias, backend in rules.aliases.items():
        if backend not in rules.backends:
            problems.append((f"aliases.{alias}", f"unknown backend {backend!r}"))
        if alias in rules.routes:
            problems.append((f"aliases.{alias}", "the same name is a route; a model name must mean one thing"))
    for name in RESERVED_MODELS & (set(rules.routes) | set(rules.aliases)):
        problems.append((f"routes.{name}" if name in rules.routes else f"aliases.{name}", f"{name!r} is reserved"))
    problems += _check_api_keys(rules)
    problems += _check_routing(rules)
    attached = {f"routes.{route}.guardrails": spec.guardrails for route, spec in rules.routes.items()}
    attached["default_guardrails"] = rules.default_guardrails
    problems += check_guardrails(rules.guardrails, attached, set(rules.backends))
    return problems


def _check_chains(route: str, spec: RouteSpec, rules: Rules) -> list[tuple[str, str]]:
    """Backends or variants (one of them), every backend known and listed once per chain, weights
    that send traffic somewhere, and a shadow that is a known backend of its own."""
    if bool(spec.backends) == bool(spec.variants):
        given = "both" if spec.backends else "neither"
        return [(f"routes.{route}", f"give either backends or variants ({given} given)")]
    problems: list[tuple[str, str]] = []
    for where, chain in spec.chains().items():
        for i, backend in enumerate(chain):
            if backend not in rules.backends:
                problems.append((f"routes.{route}.{where}[{i}]", f"unknown backend {backend!r}"))
        if len(set(chain)) != len(chain):
            problems.append((f"routes.{route}.{where}", "a backend is listed twice"))
    if spec.variants and not sum(variant.weight for variant in spec.variants.values()):
        problems.append((f"routes.{route}.variants", "every weight is 0: no variant would get traffic"))
    if not spec.variants and spec.sticky != "request":
        problems.append((f"routes.{route}.sticky", "only a route with variants has something to stick to"))
    if spec.shadow is not None:
        shadow = spec.shadow.backend
        if shadow not in rules.backends:
            problems.append((f"routes.{route}.shadow.backend", f"unknown backend {shadow!r}"))
        elif any(chain and chain[0] == shadow for chain in spec.chains().values()):
            problems.append(
                (
                    f"routes.{route}.shadow.backend",
                    "the shadow is a primary of the route: it would be compared with itself",
                )
            )
    return problems


def _check_warmup(name: str, warmup: WarmupSpec | None, rules: Rules) -> list[tuple[str, str]]:
    if warmup is None:
        return []
    if (warmup.prompt is None) == (not warmup.from_golden):
        return [(f"backends.{name}.warmup", "give either prompt or from_golden: true")]
    serves = [route for route in rules.routes.values() if any(name in c for c in route.chains().values())]
    if warmup.from_golden and not any(route.golden is not None for route in serves):
        return [(f"backends.{name}.warmup.from_golden", "no route this backend serves has a golden set")]
    return []


def _check_budgets(route: str, spec: RouteSpec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if spec.ttft_budget_ms is not None and spec.ttft_budget_ms > spec.latency_budget_ms:
        problems.append((f"routes.{route}.ttft_budget_ms", "longer than latency_budget_ms"))
    if spec.hedge is not None and any(len(chain) < 2 for chain in spec.chains().values()):
        problems.append((f"routes.{route}.hedge", "hedging needs a second backend in every chain of the route"))
    return problems


def _check_routing(rules: Rules) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for i, rule in enumerate(rules.rules):
        if rule.route not in rules.routes:
            problems.append((f"rules[{i}].route", f"unknown route {rule.route!r}"))
        if rule.when.regex is not None:
            try:
                compile_pattern(rule.when.regex)
            except PatternInvalid as exc:
                problems.append((f"rules[{i}].when.regex", f"not a valid regular expression: {exc}"))
    if sum(rule.when.regex is not None for rule in rules.rules) > MAX_PATTERNS:
        problems.append(("rules", f"more than {MAX_PATTERNS} rules with a regex"))
    if len({rule.name for rule in rules.rules}) != len(rules.rules):
        problems.append(("rules", "two rules share a name"))
    classifier: RouterSpec | None = rules.router
    prefix = "router"
    if isinstance(rules.router, LLMRouterSpec):
        if rules.router.backend not in rules.backends:
            problems.append(("router.backend", f"unknown backend {rules.router.backend!r}"))
        classifier, prefix = rules.router.fallback, "router.fallback"
    if isinstance(classifier, ClassifierRouterSpec):
        problems += _check_classifier(classifier, prefix, rules)
    return problems


def _check_classifier(classifier: ClassifierRouterSpec, prefix: str, rules: Rules) -> list[tuple[str, str]]:
    """Labels, thresholds and examples name routes that exist; the inline examples are within bound."""
    problems = [
        (f"{prefix}.labels.{label}", f"unknown route {route!r}")
        for label, route in classifier.labels.items()
        if route not in rules.routes
    ]
    for field, table in (("thresholds", classifier.thresholds), ("example_thresholds", classifier.example_thresholds)):
        problems += [
            (f"{prefix}.{field}.{route}", f"unknown route {route!r}") for route in table if route not in rules.routes
        ]
    problems += [
        (f"{prefix}.examples[{i}].route", f"unknown route {example.route!r}")
        for i, example in enumerate(classifier.examples)
        if example.route not in rules.routes
    ]
    bound = classifier.max_examples
    if len(classifier.examples) > bound:
        problems.append((f"{prefix}.examples[{bound}]", f"one example too many: max_examples is {bound}"))
    return problems


def _check_api_keys(rules: Rules) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for i, key in enumerate(rules.api_keys):
        if (key.sha256 is None) == (key.key_env is None):
            problems.append((f"api_keys[{i}]", "give exactly one of sha256 or key_env"))
        for route in key.routes or []:
            if route not in rules.routes and route not in rules.aliases:
                problems.append((f"api_keys[{i}].routes", f"unknown route {route!r}"))
    hashes = [k.sha256 for k in rules.api_keys if k.sha256]
    if len(set(hashes)) != len(hashes):
        problems.append(("api_keys", "the same key is listed twice"))
    names = [admin.name for admin in rules.admin_keys]
    if len(set(names)) != len(names) or "env" in names:
        problems.append(("admin_keys", "two admin keys share a name (``env`` is TURNOUT_ADMIN_KEY's)"))
    return problems


def _problem_from_pydantic(err: object, lines: LineIndex) -> RuleProblem:
    assert isinstance(err, dict)
    loc = [part for part in err["loc"] if part not in _UNION_TAGS]
    path = _join_path(loc)
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key (is it misspelt?)"
    return RuleProblem(path=path, message=message, line=lines.line_of(path))


_UNION_TAGS = {"openai", "litellm", "local", "classifier", "llm", "default", *GUARDRAIL_KINDS}


def _join_path(loc: list[object]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"\[key\]", part):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path
