"""The OTLP exporter behind a guard: an unreachable or failing collector is logged once per
incident (and once when it answers again), never once per batch, and never reaches a request."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("turnout")
for noisy in ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.sdk.trace.export"):
    logging.getLogger(noisy).setLevel(logging.CRITICAL)  # their per-batch lines; the incident is ours to log


class QuietExporter(SpanExporter):
    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter
        self._is_failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result: SpanExportResult = self._exporter.export(spans)
        except Exception as exc:  # the exporter's own failure: the spans are lost, the gateway is not
            result = SpanExportResult.FAILURE
            reason = f"{type(exc).__name__}: {exc}"
        else:
            reason = "the collector refused or did not answer"
        if result is SpanExportResult.FAILURE and not self._is_failing:
            self._is_failing = True
            log.warning("trace export failed (%s); spans are dropped until the collector answers", reason)
        elif result is SpanExportResult.SUCCESS and self._is_failing:
            self._is_failing = False
            log.warning("trace export works again")
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._exporter.force_flush(timeout_millis))
