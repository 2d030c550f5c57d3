"""haredis_probe_duration_seconds is kept as plain counters (metrics.ProbeDurations, cheaper
per PING than prometheus_client's Histogram); a scrape must read exactly as that Histogram
would after the same observations, bucket edges, zero and negative values included."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest

from haredis.metrics import PROBE_BUCKETS, ProbeDurations


def test_the_exposition_is_prometheus_clients_histogram() -> None:
    disable_created_metrics()  # as haredis.metrics.Metrics does
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "haredis_probe_duration_seconds",
        "Round trip of answered PING probes.",
        ["master_name"],
        buckets=PROBE_BUCKETS,
        registry=reference_registry,
    )
    ours_registry = CollectorRegistry()
    ours = ProbeDurations(PROBE_BUCKETS)
    ours_registry.register(ours)
    values = [*PROBE_BUCKETS, 0.0, -0.001, 0.0003, 0.0007, 0.03, 0.7, 2.49, 2.51, 10.0]
    for index, name in enumerate(["mymaster", "other", "idle"]):
        reference.labels(name)
        observe = ours.series(name)
        for value in values[: len(values) * (2 - index) // 2]:  # "idle" observes nothing
            reference.labels(name).observe(max(0.0, value))
            observe(value)
    expected = generate_latest(reference_registry).decode()
    assert 'haredis_probe_duration_seconds_bucket{le="0.0005",master_name="mymaster"} 4.0' in expected
    assert generate_latest(ours_registry).decode() == expected
