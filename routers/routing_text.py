"""What a router reads of a request: the last user message, and of a long one only its head and tail.

Every router stage (regex rules, the n-gram stage, the encoder, the LLM router) reads at most
``HEAD_CHARS + TAIL_CHARS`` characters, so the work a prompt costs is bounded whatever its size:
a multi-megabyte prompt must not hold the event loop (or, through the GIL, the loop's thread).
The instruction that says what kind of task a prompt is sits at its start ("Summarize: ...") or
its end ("... TL;DR:") about equally often, so both ends are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the request is only read through its methods: no run-time import of gateway
    from contracts.wire import ChatCompletionRequest

HEAD_CHARS = 4096
TAIL_CHARS = 4096


def bounded(text: str, head_chars: int = HEAD_CHARS, tail_chars: int = TAIL_CHARS) -> str:
    """``text`` itself when short; else its first ``head_chars`` and last ``tail_chars`` characters."""
    if len(text) <= head_chars + tail_chars:
        return text
    return text[:head_chars] + "\n" + (text[-tail_chars:] if tail_chars else "")


def routing_text(request: ChatCompletionRequest) -> str:
    """The last user message (the whole conversation's text if there is none), bounded."""
    text = request.last_user_text() or request.conversation_text()
    return bounded(text)
