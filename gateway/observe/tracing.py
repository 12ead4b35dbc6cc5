"""OpenTelemetry traces, following the GenAI semantic conventions (v1.37 of the conventions: the
``gen_ai.provider.name`` generation), exported over OTLP/HTTP. Off unless ``TURNOUT_OTEL_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and the ``otel`` extra is
installed; off, nothing of OpenTelemetry is imported and every call site costs one attribute read.

Each API request is one SERVER span continuing the caller's ``traceparent``/``tracestate``, with
children: ``route`` (route, what decided, score, rule, variant), ``cache lookup`` (status), and one
CLIENT span per backend attempt named ``{operation} {model}`` (hedges and fallbacks are siblings),
whose own ``traceparent`` is sent to the backend so the model server's spans join the trace. A
stream's span ends when the stream does, with a ``gen_ai.first_chunk`` event. Turnout's facts go
under ``turnout.*``. Prompts and answers are recorded only with ``TURNOUT_OTEL_CAPTURE_CONTENT``,
redacted as logs are. Spans leave through a batching processor on its own thread (queue bounded at
2,048 spans; beyond it they are dropped); a collector that does not answer costs requests nothing
and is logged once per incident.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("turnout")
SERVICE_NAME = "turnout"
QUEUE_SIZE = 2048
CONTENT_CHARS = 4096
"""A captured prompt or answer is cut to this many characters."""


class Span:
    """A started span: attributes, events, its end. The off implementation does nothing."""

    def set(self, attributes: Mapping[str, Any]) -> None:
        pass

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def fail(self, error_type: str) -> None:
        pass

    def end(self) -> None:
        pass

    def headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) naming this span as the parent, for the next hop."""
        return {}

    def trace_id(self) -> str | None:
        return None


NO_SPAN = Span()


class Tracing:
    """Off: nothing is recorded. :func:`open_tracing` gives the real one when tracing is configured."""

    is_on = False
    captures_content = False

    def request(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]]) -> tuple[Span, object]:
        """The SERVER span of an API request, current until :meth:`leave` with the token."""
        return NO_SPAN, None

    def leave(self, token: object) -> None:
        pass

    @contextmanager
    def child(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        yield NO_SPAN

    def attempt(self, name: str, attributes: Mapping[str, Any]) -> Span:
        """A CLIENT span for one backend attempt, a child of the current span; its :meth:`Span.headers`
        go upstream with the attempt."""
        return NO_SPAN

    def shutdown(self) -> None:
        pass

    def current_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        """An event on the current span (the request's, outside its children)."""


OFF = Tracing()


class _OtelSpan(Span):
    def __init__(self, span: Any, propagator: Any) -> None:
        self._span = span
        self._propagator = propagator

    def set(self, attributes: Mapping[str, Any]) -> None:
        self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self._span.add_event(name, dict(attributes or {}))

    def fail(self, error_type: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR))

    def end(self) -> None:
        self._span.end()

    def headers(self) -> dict[str, str]:
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(self._span))
        return carrier

    def trace_id(self) -> str:
        return f"{self._span.get_span_context().trace_id:032x}"


class _OtelTracing(Tracing):
    is_on = True

    def __init__(self, provider: Any, captures_content: bool) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer = provider.get_tracer("turnout")
        self._trace = trace
        self._propagator = TraceContextTextMapPropagator()
        self.captures_content = captures_content

    def request(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]]) -> tuple[Span, object]:
        from opentelemetry import context
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
        parent = self._propagator.extract(carrier)
        span = self._tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        token = context.attach(self._trace.set_span_in_context(span, parent))
        return _OtelSpan(span, self._propagator), token

    def leave(self, token: object) -> None:
        from opentelemetry import context

        if token is not None:
            context.detach(token)  # type: ignore[arg-type]

    @contextmanager
    def child(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
        with self._tracer.start_as_current_span(name, attributes=dict(attributes or {}), end_on_exit=True) as span:
            yield _OtelSpan(span, self._propagator)

    def attempt(self, name: str, attributes: Mapping[str, Any]) -> Span:
        from opentelemetry.trace import SpanKind

        clean = {k: v for k, v in attributes.items() if v is not None}
        return _OtelSpan(self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=clean), self._propagator)

    def shutdown(self) -> None:
        self._provider.shutdown()

    def current_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        self._trace.get_current_span().add_event(name, dict(attributes or {}))


def configured_endpoint(turnout_endpoint: str | None) -> str | None:
    """Where traces go: ``TURNOUT_OTEL_ENDPOINT``, else the standard OTLP variables; ``None``: off."""
    return (
        turnout_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def open_tracing(turnout_endpoint: str | None, captures_content: bool) -> Tracing:
    """The tracing the settings and environment ask for; off (and saying why) when they ask for none
    or the ``otel`` extra is missing."""
    endpoint = configured_endpoint(turnout_endpoint)
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        log.info("tracing is off (set TURNOUT_OTEL_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT to export traces)")
        return OFF
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
    except ImportError:
        log.warning(
            "tracing is off: %s is set but the otel extra is not installed (pip install -e '.[otel]')", endpoint
        )
        return OFF
    from gateway.observe.span_export import QuietExporter

    traces_url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else endpoint.rstrip("/") + "/v1/traces"
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentBasedTraceIdRatio(1.0)
    provider = TracerProvider(resource=resource, sampler=sampler) if sampler else TracerProvider(resource=resource)
    exporter = QuietExporter(OTLPSpanExporter(endpoint=traces_url, timeout=5))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=QUEUE_SIZE, schedule_delay_millis=500))
    log.info("tracing on: spans go to %s over OTLP/HTTP", traces_url)
    return _OtelTracing(provider, captures_content)


def captured(tracing: Tracing, text: str, redact: Callable[[str], str]) -> str | None:
    """``text`` as a span may hold it: only when capture is on, redacted as logs are, bounded."""
    return redact(text[:CONTENT_CHARS]) if tracing.captures_content else None
