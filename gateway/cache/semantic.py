"""The opt-in semantic cache: a paraphrase of a cached question gets the cached answer.

Semantic caches are known to serve wrong answers (opposite questions and different order
numbers score 0.83-0.999 similarity), so a semantic hit here needs all of:
- every field but the last user message identical (the search only looks among those entries);
- the same numbers, identifiers and quoted strings in the last user message, exactly;
- cosine similarity of the two messages at least the route's ``semantic_threshold``.
``bench/semantic_false_hits.py`` measures how often it would still be wrong.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contracts.wire import ChatCompletionRequest, ChatMessage
from gateway.cache.key import cache_key
from gateway.cache.response_cache import CacheEntry
from gateway.cache.store import CacheStore
from gateway.store_guard import StoreGuard, StoreUnavailable

IDENTIFIER = re.compile(r"\"[^\"]*\"|'[^']{2,}'|[\w.-]*\d[\w.-]*|\b[A-Z][A-Z_-]+\b")
CANDIDATES = 4
Embed = Callable[[str], Awaitable[NDArray[np.float32]]]


def identifiers_of(text: str) -> str:
    """Numbers, words with digits, quoted strings and upper-case codes, in order and with repeats:
    what must match exactly (as a set, "2 and 2 and 3" would equal "3 and 2 and 3")."""
    return "|".join(match.group(0).lower().strip(".") for match in IDENTIFIER.finditer(text))


def semantic_space(namespace: str, route: str, model_identity: str, request: ChatCompletionRequest) -> str:
    """The key of every field but the last user message: only entries sharing it are searched."""
    messages = list(request.messages)
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            messages[i] = ChatMessage(role="user", content="")
            break
    blanked = request.model_copy(update={"messages": messages})
    return "tn:v:" + cache_key(namespace, route, model_identity, blanked).removeprefix("tn:c:")


@dataclass(frozen=True)
class Probe:
    space: str
    vector: NDArray[np.float32]
    identifiers: str


class SemanticCache:
    def __init__(self, store: CacheStore, guard: StoreGuard, embed: Embed) -> None:
        self._store = store
        self._guard = guard
        self._embed = embed

    async def probe(self, space: str, text: str) -> Probe:
        return Probe(space, await self._embed(text), identifiers_of(text))

    async def lookup(self, probe: Probe, threshold: float) -> tuple[CacheEntry, float] | None:
        """The cached entry of the nearest acceptable neighbour and its similarity; never raises."""
        try:
            neighbours = await self._guard.call(self._store.vsim(probe.space, probe.vector, CANDIDATES))
            for member, similarity, identifiers in neighbours:
                if similarity < threshold:
                    break
                if identifiers != probe.identifiers:
                    continue
                raw = await self._guard.call(self._store.get(member))
                if raw is not None:
                    return CacheEntry.model_validate_json(raw), similarity
        except StoreUnavailable:
            return None
        return None

    async def remember(self, probe: Probe, member: str, ttl_s: int) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._guard.call(self._store.vadd(probe.space, member, probe.vector, probe.identifiers, ttl_s))


SEMANTIC_HEAD_TOKENS, SEMANTIC_TAIL_TOKENS = 64, 62
MAX_TEXT_CHARS = 8192
"""Longer messages skip the semantic cache (the exact cache still serves them): their identifiers
would be compared over the whole text on the event loop, and near-duplicate long documents that
differ somewhere in the middle are exactly the false hits a semantic cache must not serve."""


def open_semantic(
    store: CacheStore, guard: StoreGuard, threads: int | None
) -> tuple[SemanticCache, Callable[[], None]]:
    """The semantic cache over a newly loaded encoder, and its closer."""
    from routers.batcher import MicroBatcher
    from routers.classifier import MODELS_DIR
    from routers.encoder import Encoder

    encoder = Encoder(MODELS_DIR / "minilm-l6", threads, SEMANTIC_HEAD_TOKENS, SEMANTIC_TAIL_TOKENS)
    batcher: MicroBatcher[NDArray[np.float32]] = MicroBatcher(
        encoder.encode, max_batch=16 if encoder.provider == "CUDAExecutionProvider" else 1
    )
    return SemanticCache(store, guard, batcher.score), batcher.close
