from __future__ import annotations

from gateway.observe.metrics import COUNTERS, GAUGES, HISTOGRAMS, Metrics


def test_every_declared_instrument_is_exposed_with_its_help() -> None:
    metrics = Metrics()
    metrics.observe_request("chat", "general", "-", "primary", 200, 0.01)
    exposed = metrics.render().decode()
    for instrument in (*COUNTERS.values(), *HISTOGRAMS.values(), *GAUGES.values()):
        assert f"# HELP {instrument.name}" in exposed
        assert instrument.help in exposed


def test_an_observed_request_counts_once_under_its_labels_and_times_into_the_histogram() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.observe_request("chat", "general", "-", "primary", 200, 0.003)
    metrics.observe_cache("general", "hit", saved_tokens=7, saved_usd=0.5)
    exposed = metrics.render().decode()
    labels = 'backend="primary",endpoint="chat",route="general",status="200",variant="-"'
    assert f"turnout_requests_total{{{labels}}} 3.0" in exposed
    assert (
        'turnout_request_duration_seconds_bucket{backend="primary",endpoint="chat",le="0.005",'
        'route="general",variant="-"} 3.0' in exposed
    )
    assert 'turnout_cache_requests_total{route="general",status="hit"} 1.0' in exposed
    assert 'turnout_cache_saved_tokens_total{route="general"} 7.0' in exposed
