"""What the gateway observes of its traffic: metrics, the access log, traces, the cost, variant and
traffic reports' tallies, feedback, and the dry run's routing samples. Each is fed from a request's
outcome; nothing here imports the request path, the admin API or the live rules above it.

Outside this package (and the admin API that reads the reports, and the wiring in
``gateway/resources.py``), modules use the names below, never the reports' or samples' modules
themselves (``tests/test_source_rules.py`` holds them to it).
"""

from gateway.observe.feedback import FeedbackBook, Served
from gateway.observe.guardrail_counts import with_guardrails
from gateway.observe.reports import Outcome, ReportBook, deltas_of
from gateway.observe.samples import RoutingSample, RoutingSamples
from gateway.observe.traffic import with_decision
from gateway.observe.variant_report import shadow_labels, similarity_field

__all__ = [
    "FeedbackBook",
    "Outcome",
    "ReportBook",
    "RoutingSample",
    "RoutingSamples",
    "Served",
    "deltas_of",
    "shadow_labels",
    "similarity_field",
    "with_decision",
    "with_guardrails",
]
