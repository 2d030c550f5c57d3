"""Metrics.timed_probe_link: the probe histogram series of a primary is resolved once per
link; every answered PING through the link is observed in its own primary's series."""

from __future__ import annotations

from .test_metrics import P1, FakeLink, make_metrics, primary, samples, snapshot, value


async def test_answered_pings_land_in_their_own_primarys_series() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", P1)))
    first = metrics.timed_probe_link("mymaster", FakeLink())
    second = metrics.timed_probe_link("other", FakeLink())
    for _ in range(3):
        assert await first.ping(1.0) == "PONG"
    assert await second.ping(1.0) == "PONG"
    got = samples(metrics)
    assert value(got, "haredis_probe_duration_seconds_count", master_name="mymaster") == 3
    assert value(got, "haredis_probe_duration_seconds_count", master_name="other") == 1
