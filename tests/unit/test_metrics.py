"""haredis.metrics: the state collector over hand-built snapshots, the event-fed failover
metrics, the exposition format (promtool when installed), the alert rules and the dashboard."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from haredis import __version__
from haredis.core.events import Tick
from haredis.core.model import (
    Address,
    DurableState,
    InstanceView,
    PeerView,
    PrimarySettings,
    PrimaryView,
    Role,
    Snapshot,
    WatcherSettings,
)
from haredis.core.watcher import Watcher
from haredis.metrics import PHASES, Metrics, TimedProbeLink, parse_summary

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "config" / "grafana-dashboard.json"
SECRET = "hunter2-s3cret"

NOW = 1000.0
P1 = Address("10.0.0.10", 6379)
R1 = Address("10.0.0.11", 6379)
R2 = Address("10.0.0.12", 6379)
P2 = Address("10.0.1.10", 6380)


# ------------------------------------------------------------------ building snapshots


def _filled(cls: type[T], **given: Any) -> T:
    """Build a frozen record, giving neutral values to fields the test does not care about
    (so a field added to the model later does not break these tests)."""
    kwargs = dict(given)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in kwargs or f.default is not dataclasses.MISSING:
            continue
        if f.default_factory is not dataclasses.MISSING:
            continue
        t = str(f.type)
        if "None" in t:
            kwargs[f.name] = None
        elif t == "str":
            kwargs[f.name] = ""
        elif t == "bool":
            kwargs[f.name] = False
        elif t == "int":
            kwargs[f.name] = 0
        elif t == "float":
            kwargs[f.name] = 0.0
        elif t.startswith("tuple"):
            kwargs[f.name] = ()
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no neutral value for {t}")
    return cls(**kwargs)


def inst(address: Address, **kw: Any) -> InstanceView:
    base: dict[str, Any] = {
        "address": address,
        "role": Role.REPLICA,
        "run_id": SECRET,  # never exported
        "sdown": False,
        "last_ok": NOW - 0.1,
        "last_error": f"AUTH failed for password {SECRET}",  # never exported
        "info_age": 0.5,
        "offset": 1000,
        "priority": 100,
        "link_up": True,
        "announced": True,
    }
    base.update(kw)
    return _filled(InstanceView, **base)


def peer(name: str, last_heard: float | None, **kw: Any) -> PeerView:
    return _filled(PeerView, name=name, last_heard=last_heard, **kw)


def primary(name: str, address: Address, **kw: Any) -> PrimaryView:
    quorum = kw.pop("quorum", 2)
    settings = kw.pop(
        "settings",
        PrimarySettings(
            name=name, address=address, quorum=quorum, down_after=5.0, failover_timeout=60.0, parallel_syncs=1
        ),
    )
    base: dict[str, Any] = {
        "name": name,
        "address": address,
        "config_epoch": 3,
        "current_epoch": 4,
        "primary": inst(address, role=Role.PRIMARY, offset=5000),
        "replicas": (),
        "peers": (),
        "sdown": False,
        "odown": False,
        "odown_votes": 0,
        "quorum": quorum,
        "failover_state": "none",
        "failover_epoch": 0,
        "leader": "",
        "settings": settings,
    }
    base.update(kw)
    return _filled(PrimaryView, **base)


def snapshot(*primaries: PrimaryView, in_hold: bool = False, watcher: str = "w1") -> Snapshot:
    return Snapshot(
        watcher=watcher,
        now=NOW,
        in_hold=in_hold,
        hold_until=NOW + 5 if in_hold else None,
        primaries=primaries,
    )


def wsettings(electorate: int = 3, **kw: Any) -> WatcherSettings:
    return WatcherSettings(name="w1", electorate=electorate, primaries=(), **kw)


@dataclasses.dataclass
class FakeStats:
    cycles: int = 42
    cycle_errors: int = 1
    action_errors: int = 2
    last_cycle_wall: float = 1_700_000_000.5


def rich_snapshot() -> Snapshot:
    healthy = primary(
        "mymaster",
        P1,
        replicas=(
            inst(R1, offset=4000),
            inst(R2, offset=5200, sdown=True, link_up=False),
        ),
        peers=(
            peer("w2", NOW - 0.3, says_down=False),
            peer("w3", NOW - 30.0, says_down=False),
        ),
    )
    failing = primary(
        "other",
        P2,
        sdown=True,
        odown=True,
        odown_votes=2,
        failover_state="send_slaveof_noone",
        failover_epoch=5,
        leader="w1",
        primary=inst(P2, role=Role.PRIMARY, sdown=True, last_ok=NOW - 7.5, info_age=None),
        replicas=(inst(Address("10.0.1.11", 6380), offset=10),),
        peers=(peer("w2", NOW - 0.1, says_down=True), peer("w3", None)),
    )
    return snapshot(healthy, failing)


def make_metrics(
    snap: Snapshot,
    settings: WatcherSettings | None = None,
    rejected: Mapping[str, int] | None = None,
) -> Metrics:
    ws = settings or wsettings()
    return Metrics(
        lambda: snap,
        lambda: ws,
        stats=FakeStats,
        rejected=lambda: rejected or {},
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: Metrics) -> Samples:
    text = metrics.exposition().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float:
    return got[(name, frozenset(labels.items()))]


def names_of(got: Samples) -> set[str]:
    return {name for name, _ in got}


def series(got: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for n, labels in got if n == name]


# ------------------------------------------------------------------ state gauges


def test_global_gauges_and_build_info() -> None:
    got = samples(make_metrics(rich_snapshot(), rejected={"bad-mac": 3, "replay": 1}))
    assert value(got, "haredis_masters") == 2
    assert value(got, "haredis_tilt") == 0
    assert value(got, "haredis_build_info", version=__version__) == 1
    assert value(got, "haredis_last_cycle_timestamp_seconds") == 1_700_000_000.5
    assert value(got, "haredis_cycles_total") == 42
    assert value(got, "haredis_cycle_errors_total") == 1
    assert value(got, "haredis_action_errors_total") == 2
    assert value(got, "haredis_gossip_rejected_total", reason="bad-mac") == 3
    assert value(got, "haredis_gossip_rejected_total", reason="replay") == 1


def test_per_master_gauges_mirror_redis_exporter_labels() -> None:
    got = samples(make_metrics(rich_snapshot()))
    m1 = {"master_name": "mymaster", "master_address": "10.0.0.10:6379"}
    m2 = {"master_name": "other", "master_address": "10.0.1.10:6380"}
    # One status series per primary; 1 only when ok (as redis_exporter's sentinel_master_status).
    assert series(got, "haredis_master_status") == [
        {**m1, "master_status": "ok"},
        {**m2, "master_status": "odown"},
    ]
    assert value(got, "haredis_master_status", **m1, master_status="ok") == 1
    assert value(got, "haredis_master_status", **m2, master_status="odown") == 0
    assert value(got, "haredis_master_replicas", **m1) == 2
    assert value(got, "haredis_master_ok_replicas", **m1) == 1
    assert value(got, "haredis_master_replicas", **m2) == 1
    assert value(got, "haredis_master_peers", **m1) == 2
    assert value(got, "haredis_master_ok_peers", **m1) == 1  # w3 last heard 30 s ago
    assert value(got, "haredis_master_config_epoch", **m1) == 3
    assert value(got, "haredis_master_current_epoch", **m1) == 4
    assert value(got, "haredis_master_last_ok_ping_reply_seconds", **m1) == pytest.approx(0.1)
    assert value(got, "haredis_master_last_ok_ping_reply_seconds", **m2) == pytest.approx(7.5)
    assert value(got, "haredis_master_setting_down_after_seconds", **m1) == 5.0
    assert value(got, "haredis_master_setting_failover_timeout_seconds", **m1) == 60.0
    assert value(got, "haredis_master_setting_parallel_syncs", **m1) == 1
    assert value(got, "haredis_master_setting_quorum", **m1) == 2
    assert value(got, "haredis_master_failover_in_progress", **m1) == 0
    assert value(got, "haredis_master_failover_in_progress", **m2) == 1
    assert value(got, "haredis_leader", master_name="mymaster") == 0
    assert value(got, "haredis_leader", master_name="other") == 1


def test_master_status_words() -> None:
    views = (
        primary("a", P1),
        primary("b", P2, sdown=True),
        primary("c", R1, sdown=True, odown=True),
    )
    got = samples(make_metrics(snapshot(*views)))
    statuses = {s["master_name"]: s["master_status"] for s in series(got, "haredis_master_status")}
    assert statuses == {"a": "ok", "b": "sdown", "c": "odown"}
    assert (
        value(got, "haredis_master_status", master_name="b", master_address=str(P2), master_status="sdown")
        == 0
    )


def test_replica_lag_needs_both_info_replies_and_is_clamped() -> None:
    got = samples(make_metrics(rich_snapshot()))
    assert (
        value(got, "haredis_replica_offset_lag_bytes", master_name="mymaster", replica_address=str(R1))
        == 1000
    )
    # A replica ahead of the primary's last INFO reads 0, not a negative lag.
    assert (
        value(got, "haredis_replica_offset_lag_bytes", master_name="mymaster", replica_address=str(R2)) == 0
    )
    # "other": the primary's INFO was never read, so no lag is claimed.
    assert all(s["master_name"] != "other" for s in series(got, "haredis_replica_offset_lag_bytes"))

    unread = primary("mymaster", P1, replicas=(inst(R1, info_age=None),))
    got = samples(make_metrics(snapshot(unread)))
    assert series(got, "haredis_replica_offset_lag_bytes") == []


def test_last_ok_ping_absent_until_the_primary_answered() -> None:
    view = primary("mymaster", P1, primary=inst(P1, role=Role.UNKNOWN, last_ok=None, info_age=None))
    got = samples(make_metrics(snapshot(view)))
    assert series(got, "haredis_master_last_ok_ping_reply_seconds") == []
    assert series(got, "haredis_master_config_epoch") != []


def test_peer_up_takes_the_freshest_sighting_over_primaries() -> None:
    got = samples(make_metrics(rich_snapshot(), wsettings(gossip_period=0.5)))
    assert value(got, "haredis_peer_up", peer="w2") == 1
    assert value(got, "haredis_peer_up", peer="w3") == 0  # 30 s ago on one primary, never on the other
    window = primary("x", P1, peers=(peer("w2", NOW - 1.4),))
    got = samples(make_metrics(snapshot(window), wsettings(gossip_period=0.5)))
    assert value(got, "haredis_peer_up", peer="w2") == 1  # within 3 gossip periods
    got = samples(make_metrics(snapshot(window), wsettings(gossip_period=0.4)))
    assert value(got, "haredis_peer_up", peer="w2") == 0


@pytest.mark.parametrize(
    ("electorate", "quorum", "peers", "in_hold", "expected"),
    [
        (3, 2, [("w2", 0.5, False)], False, 1),  # self + one fresh peer: 2 >= quorum and majority
        (3, 2, [("w2", 5.0, False), ("w3", 9.0, False)], False, 0),  # peers older than opinion_ttl
        (3, 2, [("w2", 0.5, True)], False, 0),  # a peer in hold gives no opinion
        (3, 2, [("w2", 0.5, False)], True, 0),  # neither do we, in hold
        (3, 2, [("w2", 0.5, False), ("w3", 0.5, False)], True, 1),
        (5, 2, [("w2", 0.5, False)], False, 0),  # quorum reached, majority of 5 is not
        (5, 2, [("w2", 0.5, False), ("w3", 0.5, False)], False, 1),
        (1, 1, [], False, 1),  # a lone watcher
    ],
)
def test_quorum_ok(
    electorate: int, quorum: int, peers: list[tuple[str, float, bool]], in_hold: bool, expected: int
) -> None:
    view = primary(
        "mymaster",
        P1,
        quorum=quorum,
        peers=tuple(peer(name, NOW - ago, in_hold=hold) for name, ago, hold in peers),
    )
    got = samples(make_metrics(snapshot(view, in_hold=in_hold), wsettings(electorate, opinion_ttl=2.0)))
    labels = {"master_name": "mymaster", "master_address": str(P1)}
    assert value(got, "haredis_master_quorum_ok", **labels) == expected
    assert value(got, "haredis_master_peers", **labels) == electorate - 1
    assert value(got, "haredis_tilt") == (1 if in_hold else 0)


def test_leader_only_once_elected() -> None:
    labels = {"master_name": "mymaster"}
    candidate = primary("mymaster", P1, failover_state="wait_start", failover_epoch=5, leader="w1")
    got = samples(make_metrics(snapshot(candidate)))
    assert value(got, "haredis_leader", **labels) == 0
    assert value(got, "haredis_master_failover_in_progress", **labels, master_address=str(P1)) == 1
    for state in ("select_slave", "send_slaveof_noone", "wait_promotion", "reconf_slaves"):
        leading = primary("mymaster", P1, failover_state=state, failover_epoch=5, leader="w1")
        assert value(samples(make_metrics(snapshot(leading))), "haredis_leader", **labels) == 1


def test_gauges_follow_the_snapshot_on_every_scrape() -> None:
    current = [snapshot(primary("mymaster", P1))]
    metrics = Metrics(lambda: current[0], wsettings)
    assert (
        value(samples(metrics), "haredis_master_config_epoch", master_name="mymaster", master_address=str(P1))
        == 3
    )
    current[0] = snapshot(primary("mymaster", R1, config_epoch=9))
    got = samples(metrics)
    assert series(got, "haredis_master_config_epoch") == [
        {"master_name": "mymaster", "master_address": str(R1)}
    ]
    assert value(got, "haredis_master_config_epoch", master_name="mymaster", master_address=str(R1)) == 9
    # Without a stats provider the runtime counters read 0.
    assert value(got, "haredis_last_cycle_timestamp_seconds") == 0


def test_failovers_total_exists_at_zero_from_the_first_scrape() -> None:
    got = samples(make_metrics(rich_snapshot()))
    for name in ("mymaster", "other"):
        for result in ("ok", "aborted"):
            assert value(got, "haredis_failovers_total", master_name=name, result=result) == 0


def test_construction_does_not_call_the_providers() -> None:
    def boom() -> Any:
        raise AssertionError("provider called at construction")

    Metrics(boom, boom, stats=boom, rejected=boom)


def test_collects_a_real_watcher_snapshot() -> None:
    ps = PrimarySettings(name="mymaster", address=P1, quorum=2)
    ws = WatcherSettings(name="w1", electorate=3, primaries=(ps,))
    watcher = Watcher(ws, DurableState(), 10.0)
    watcher.handle(Tick(now=10.1))
    metrics = Metrics(watcher.snapshot, lambda: watcher.settings)
    got = samples(metrics)
    labels = {"master_name": "mymaster", "master_address": str(P1)}
    assert value(got, "haredis_masters") == 1
    assert value(got, "haredis_master_status", **labels, master_status="ok") == 1
    assert value(got, "haredis_master_quorum_ok", **labels) == 0  # no peer heard yet
    assert value(got, "haredis_leader", master_name="mymaster") == 0


# ------------------------------------------------------------------ secrets and label hygiene


def test_secrets_never_reach_the_exposition() -> None:
    metrics = make_metrics(rich_snapshot(), rejected={f"password={SECRET}": 2})
    metrics.observe_event(f"+x password={SECRET}", f"master mymaster {SECRET} 1", NOW)
    metrics.observe_event("+sdown", f"master mymaster 10.0.0.10 6379 {SECRET}", NOW)
    text = metrics.exposition().decode()
    assert SECRET not in text
    assert "hunter2" not in text
    got = samples(metrics)
    assert value(got, "haredis_gossip_rejected_total", reason="other") == 2
    assert value(got, "haredis_events_total", event="other") == 1
    assert value(got, "haredis_events_total", event="+sdown") == 1


# ------------------------------------------------------------------ events and failovers

MASTER = "master mymaster 10.0.0.10 6379"
NEW_MASTER = "master mymaster 10.0.0.11 6379"
PROMOTED = "slave 10.0.0.11:6379 10.0.0.11 6379 @ mymaster 10.0.0.10 6379"
SWITCH = "mymaster 10.0.0.10 6379 10.0.0.11 6379"
SUMMARY = (
    "mymaster epoch=5 old=10.0.0.10:6379 new=10.0.0.11:6379 reason=odown detect=0.260"
    " agree=0.040 elect=0.020 promote=0.150 reconfigure=0.300 total=0.470 lost_bytes=0"
)


def led_failover(t0: float = 100.0, *, summary: str | None = SUMMARY) -> list[tuple[str, str, float]]:
    """The events a leader publishes, in order, for one clean failover (times made up)."""
    events = [
        ("+sdown", MASTER, t0),
        ("+odown", f"{MASTER} #quorum 2/2", t0 + 0.01),
        ("+new-epoch", "5", t0 + 0.04),
        ("+try-failover", MASTER, t0 + 0.04),
        ("+vote-for-leader", "w1 5", t0 + 0.04),
        ("+elected-leader", MASTER, t0 + 0.06),
        ("+failover-state-select-slave", MASTER, t0 + 0.06),
        ("+selected-slave", PROMOTED, t0 + 0.10),
        ("+failover-state-send-slaveof-noone", MASTER, t0 + 0.10),
        ("+promoted-slave", PROMOTED, t0 + 0.21),
        ("+switch-master", SWITCH, t0 + 0.21),
        ("+failover-state-reconf-slaves", NEW_MASTER, t0 + 0.21),
        ("+slave-reconf-sent", "slave 10.0.0.12:6379 10.0.0.12 6379 @ mymaster 10.0.0.11 6379", t0 + 0.21),
        ("+slave-reconf-done", "slave 10.0.0.12:6379 10.0.0.12 6379 @ mymaster 10.0.0.11 6379", t0 + 0.51),
        ("+failover-end", NEW_MASTER, t0 + 0.51),
    ]
    if summary is not None:
        events.append(("+failover-summary", summary, t0 + 0.51))
    return events


def feed(metrics: Metrics, events: list[tuple[str, str, float]]) -> None:
    for channel, message, now in events:
        metrics.observe_event(channel, message, now)


def hist(got: Samples, name: str, **labels: str) -> tuple[float, float]:
    """(count, sum) of one histogram series."""
    return value(got, f"{name}_count", **labels), value(got, f"{name}_sum", **labels)


def assert_observed_once(got: Samples, name: str, seconds: float, **labels: str) -> None:
    count, total = hist(got, name, **labels)
    assert count == 1, (name, labels)
    assert total == pytest.approx(seconds), (name, labels)


def test_led_failover_uses_the_cores_summary() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(metrics, led_failover())
    got = samples(metrics)
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="ok") == 1
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="aborted") == 0
    expected = {"detect": 0.26, "agree": 0.04, "elect": 0.02, "promote": 0.15, "reconfigure": 0.3}
    for phase, seconds in expected.items():
        assert_observed_once(
            got, "haredis_failover_phase_duration_seconds", seconds, master_name="mymaster", phase=phase
        )
    # detect + agree + total: from the last good reply to the end.
    assert_observed_once(got, "haredis_failover_duration_seconds", 0.26 + 0.04 + 0.47, master_name="mymaster")
    assert value(got, "haredis_failover_duration_seconds_bucket", master_name="mymaster", le="0.75") == 0
    assert value(got, "haredis_failover_duration_seconds_bucket", master_name="mymaster", le="1.0") == 1
    assert value(got, "haredis_events_total", event="+failover-end") == 1
    assert value(got, "haredis_events_total", event="+failover-summary") == 1
    assert value(got, "haredis_events_total", event="+switch-master") == 1
    assert value(got, "haredis_events_total", event="+new-epoch") == 1


def test_without_a_summary_the_events_time_the_failover() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(metrics, led_failover(summary=None))
    got = samples(metrics)  # the scrape flushes what waited for a summary
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="ok") == 1
    expected = {"agree": 0.04, "elect": 0.02, "promote": 0.15, "reconfigure": 0.30}
    for phase, seconds in expected.items():
        assert_observed_once(
            got, "haredis_failover_phase_duration_seconds", seconds, master_name="mymaster", phase=phase
        )
    # No event marks the last good reply: detect is not observed from events.
    assert (
        "haredis_failover_phase_duration_seconds_count",
        frozenset({("master_name", "mymaster"), ("phase", "detect")}),
    ) not in got
    assert_observed_once(got, "haredis_failover_duration_seconds", 0.51, master_name="mymaster")


def test_the_next_event_flushes_a_failover_without_summary() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(metrics, led_failover(summary=None))
    metrics.observe_event("+slave", "slave 10.0.0.10:6379 10.0.0.10 6379 @ mymaster 10.0.0.11 6379", 101.0)
    # Nothing is observed twice: the scrape finds nothing left to flush.
    got = samples(metrics)
    assert hist(got, "haredis_failover_duration_seconds", master_name="mymaster")[0] == 1


def test_an_unreadable_summary_falls_back_to_event_times() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(metrics, led_failover(summary="mymaster epoch=5 nonsense"))
    got = samples(metrics)
    assert_observed_once(got, "haredis_failover_duration_seconds", 0.51, master_name="mymaster")


def test_a_watcher_that_did_not_lead_counts_nothing() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(
        metrics,
        [
            ("+sdown", MASTER, 10.0),
            ("+odown", f"{MASTER} #quorum 2/2", 10.1),
            ("+try-failover", MASTER, 10.1),
            ("-failover-abort-not-elected", MASTER, 10.8),
            ("+config-update-from", "sentinel w2 @ mymaster 5", 11.0),
            ("+switch-master", SWITCH, 11.0),
        ],
    )
    got = samples(metrics)
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="ok") == 0
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="aborted") == 0
    assert value(got, "haredis_events_total", event="-failover-abort-not-elected") == 1
    assert series(got, "haredis_failover_duration_seconds_count") == []
    # The episode ended with the other watcher's switch: a later failover we lead is timed
    # from its own +sdown, not from the old one.
    feed(metrics, led_failover(t0=500.0, summary=None))
    assert_observed_once(samples(metrics), "haredis_failover_duration_seconds", 0.51, master_name="mymaster")


def test_an_abort_after_winning_counts_and_a_retry_is_timed_from_the_first_sdown() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(
        metrics,
        [
            ("+sdown", MASTER, 10.0),
            ("+odown", MASTER, 10.0),
            ("+try-failover", MASTER, 10.2),
            ("+elected-leader", MASTER, 10.3),
            ("-failover-abort-no-good-slave", MASTER, 12.3),
        ],
    )
    got = samples(metrics)
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="aborted") == 1
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="ok") == 0
    assert series(got, "haredis_failover_duration_seconds_count") == []  # aborts are not timed
    feed(
        metrics,
        [
            ("+try-failover", MASTER, 13.0),
            ("+elected-leader", MASTER, 13.1),
            ("+promoted-slave", PROMOTED, 13.5),
            ("+switch-master", SWITCH, 13.5),
            ("+failover-end", NEW_MASTER, 14.0),
        ],
    )
    got = samples(metrics)
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="ok") == 1
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="aborted") == 1
    assert_observed_once(got, "haredis_failover_duration_seconds", 4.0, master_name="mymaster")
    phases = {
        phase: hist(got, "haredis_failover_phase_duration_seconds", master_name="mymaster", phase=phase)[1]
        for phase in ("agree", "elect", "promote", "reconfigure")
    }
    assert phases == {
        "agree": pytest.approx(3.0),  # +sdown -> the winning attempt, lost time included
        "elect": pytest.approx(0.1),
        "promote": pytest.approx(0.4),
        "reconfigure": pytest.approx(0.5),
    }


def test_a_recovered_primary_starts_a_new_episode() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    feed(
        metrics,
        [
            ("+sdown", MASTER, 10.0),
            ("-sdown", MASTER, 11.0),
            ("+sdown", MASTER, 50.0),
            ("+odown", MASTER, 50.1),
            ("+try-failover", MASTER, 50.1),
            ("+elected-leader", MASTER, 50.2),
            ("+promoted-slave", PROMOTED, 50.5),
            ("+failover-end", NEW_MASTER, 51.0),
        ],
    )
    assert_observed_once(samples(metrics), "haredis_failover_duration_seconds", 1.0, master_name="mymaster")


def test_an_operator_failover_has_no_detect_or_agree() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    summary = (
        "mymaster epoch=6 old=10.0.0.10:6379 new=10.0.0.11:6379 reason=forced detect=- agree=-"
        " elect=0.010 promote=0.200 reconfigure=0.100 total=0.310 lost_bytes=-"
    )
    feed(
        metrics,
        [
            ("+try-failover", MASTER, 5.0),
            ("+elected-leader", MASTER, 5.01),
            ("+promoted-slave", PROMOTED, 5.21),
            ("+failover-end", NEW_MASTER, 5.31),
            ("+failover-summary", summary, 5.31),
        ],
    )
    got = samples(metrics)
    observed = {s["phase"] for s in series(got, "haredis_failover_phase_duration_seconds_count")}
    assert observed == {"elect", "promote", "reconfigure"}
    assert_observed_once(got, "haredis_failover_duration_seconds", 0.31, master_name="mymaster")


def test_failovers_of_two_primaries_are_kept_apart() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1), primary("other", P2)))
    other = "master other 10.0.1.10 6380"
    feed(metrics, [("+sdown", other, 1.0), ("+try-failover", other, 1.5), ("+elected-leader", other, 1.6)])
    feed(metrics, led_failover(t0=2.0))
    metrics.observe_event("-failover-abort-no-good-slave", other, 3.0)
    got = samples(metrics)
    assert value(got, "haredis_failovers_total", master_name="mymaster", result="ok") == 1
    assert value(got, "haredis_failovers_total", master_name="other", result="aborted") == 1
    assert value(got, "haredis_failovers_total", master_name="other", result="ok") == 0


def test_end_for_timeout_is_a_successful_failover() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", R1)))
    events = [e for e in led_failover(summary=None) if e[0] != "+failover-end"]
    events.append(("+failover-end-for-timeout", NEW_MASTER, 170.0))
    feed(metrics, events)
    assert value(samples(metrics), "haredis_failovers_total", master_name="mymaster", result="ok") == 1


@pytest.mark.parametrize(
    "message",
    [
        "",
        "epoch=5 total=1.0",
        "mymaster epoch=5",
        "mymaster total=-1",
        "mymaster total=abc",
        "mymaster total=inf",
    ],
)
def test_parse_summary_refuses_what_it_cannot_read(message: str) -> None:
    assert parse_summary(message) is None


def test_parse_summary() -> None:
    parsed = parse_summary(SUMMARY)
    assert parsed is not None
    name, duration, phases = parsed
    assert name == "mymaster"
    assert duration == pytest.approx(0.77)
    assert set(phases) == set(PHASES)


# ------------------------------------------------------------------ probes


class FakeLink:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.closed = False

    async def ping(self, timeout: float) -> str:
        if self.fail:
            raise ConnectionRefusedError("refused")
        return "PONG"

    async def close(self) -> None:
        self.closed = True


async def test_timed_probe_link_observes_answered_pings_only() -> None:
    metrics = make_metrics(snapshot(primary("mymaster", P1)))
    ticks = iter([1.0, 1.004])
    link = TimedProbeLink(
        FakeLink(), lambda s: metrics.observe_probe("mymaster", s), clock=lambda: next(ticks)
    )
    assert await link.ping(1.0) == "PONG"
    failing = metrics.timed_probe_link("mymaster", FakeLink(fail=True))
    with pytest.raises(ConnectionRefusedError):
        await failing.ping(1.0)
    inner = FakeLink()
    wrapped = metrics.timed_probe_link("mymaster", inner)
    await wrapped.close()  # everything but ping is the wrapped link's own
    assert inner.closed
    got = samples(metrics)
    assert_observed_once(got, "haredis_probe_duration_seconds", 0.004, master_name="mymaster")
    assert value(got, "haredis_probe_duration_seconds_bucket", master_name="mymaster", le="0.0025") == 0
    assert value(got, "haredis_probe_duration_seconds_bucket", master_name="mymaster", le="0.005") == 1


# ------------------------------------------------------------------ promtool, alerts, dashboard


def full_exposition() -> Metrics:
    """Metrics with every family populated (for the lint and the dashboard check)."""
    metrics = make_metrics(rich_snapshot(), rejected={"bad-mac": 1})
    feed(metrics, led_failover())
    metrics.observe_probe("mymaster", 0.001)
    return metrics


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus`); CI installs it")
    return path


def test_promtool_check_metrics() -> None:
    promtool = _promtool()
    text = full_exposition().exposition()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_promtool_check_rules() -> None:
    promtool = _promtool()
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


_METRIC_RE = re.compile(r"\bharedis_[a-z0-9_]+")


def test_alert_rules_use_only_exported_metrics() -> None:
    exported = names_of(samples(full_exposition()))
    used = set(_METRIC_RE.findall(ALERTS.read_text()))
    assert used, "no haredis metric in the alert rules"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    for alert in (
        "Down",
        "MasterDown",
        "QuorumLost",
        "NoOkReplicas",
        "TiltMode",
        "FailoverHappened",
        "GossipRejected",
        "CycleStale",
    ):
        assert f"alert: Haredis{alert}\n" in ALERTS.read_text()


def _expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        for child in node.values():
            found += _expressions(child)
        return found
    if isinstance(node, list):
        return [e for child in node for e in _expressions(child)]
    return []


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"]
    assert dashboard["panels"], "no panels"
    exprs = _expressions(dashboard["panels"])
    assert len(exprs) >= 4
    exported = names_of(samples(full_exposition()))
    used = {name for expr in exprs for name in _METRIC_RE.findall(expr)}
    used |= set(_METRIC_RE.findall(DASHBOARD.read_text()))  # template variables too
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
