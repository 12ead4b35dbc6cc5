"""The exact-cache key: everything that changes the answer, nothing that does not.

The request is canonicalised (sorted keys, no whitespace), so field order and formatting
do not matter, while every field that can change the answer — messages, sampling and output
parameters, tools, response format, and any field unknown to the gateway — does.
"""

from __future__ import annotations

import hashlib

import orjson

from contracts.wire import ChatCompletionRequest

# Fields that never change the answer: how it is delivered, and who asked (the tenant is keyed apart).
DELIVERY_FIELDS = {"model", "stream", "stream_options", "user", "metadata", "store", "service_tier"}


def cache_key(namespace: str, route: str, model_identity: str, request: ChatCompletionRequest) -> str:
    """``namespace`` is the tenant, or ``shared`` for routes whose entries all tenants see."""
    answer_fields = request.model_dump(mode="json", exclude_unset=True, exclude=DELIVERY_FIELDS)
    canonical = orjson.dumps([namespace, route, model_identity, answer_fields], option=orjson.OPT_SORT_KEYS)
    # The digest is the key's hash tag: its single-flight lock (the key plus ``:lock``) lives in the
    # same Redis Cluster slot, so one script can read the one and take the other.
    return "tn:c:{" + hashlib.sha256(canonical).hexdigest() + "}"


def is_deterministic(request: ChatCompletionRequest) -> bool:
    return request.temperature == 0 or request.seed is not None
