"""Prometheus metrics: a collector over the core snapshot plus counters fed by the daemon.

Two kinds of numbers, one private `CollectorRegistry` (``Metrics.registry``):

* **State gauges** are built on every scrape by `StateCollector.collect()` from the snapshot
  provider (the `Snapshot` of the last completed cycle, the same record every other renderer
  reads), the watcher settings and the runtime's cycle counters. Nothing is cached between
  scrapes, so a gauge can never drift from the state.
* **Event counters and histograms** are `prometheus_client` objects fed by the daemon:
  `Metrics.observe_event` for every published Sentinel event, `Metrics.observe_probe` for every
  answered PING (or `Metrics.timed_probe_link` around the probe links).

Names follow Prometheus practice (prefix ``haredis_``, base units, ``_total`` on counters)
and reuse the label names of redis_exporter's Sentinel metrics (``master_name``,
``master_address``, ``master_status``), so a dashboard ports by renaming the prefix
``redis_sentinel_`` to ``haredis_`` (and ``slaves``/``sentinels`` to ``replicas``/``peers``).

State gauges (per primary labels are ``{master_name, master_address}`` unless noted):

    haredis_masters                          primaries monitored
    haredis_tilt                             1 while this watcher is in hold (Sentinel's TILT)
    haredis_master_status{..,master_status}  one series per primary whose master_status label
                                             is "ok", "sdown" or "odown"; the value is 1 when
                                             "ok", else 0 (exactly as redis_exporter)
    haredis_master_replicas                  replicas known
    haredis_master_ok_replicas               replicas not subjectively down
    haredis_master_peers                     other watchers configured (electorate - 1; more
                                             if more names were heard)
    haredis_master_ok_peers                  other watchers heard within opinion_ttl and not in
                                             hold (those whose opinion and vote count now)
    haredis_master_quorum_ok                 1 if the usable watchers (this one unless in hold,
                                             plus the ok peers) reach both the primary's quorum
                                             and a majority of the electorate: a failover could
                                             be authorised now
    haredis_master_config_epoch              epoch of the current topology
    haredis_master_current_epoch             highest election epoch seen
    haredis_master_last_ok_ping_reply_seconds  seconds since the primary last answered a probe
                                             (absent until it has answered once)
    haredis_master_setting_down_after_seconds, _failover_timeout_seconds, _parallel_syncs,
    haredis_master_setting_quorum            the configured settings, in base units
    haredis_master_failover_in_progress      1 while this watcher runs a failover attempt
                                             (from its candidacy on, as Sentinel's flag)
    haredis_replica_offset_lag_bytes{master_name,replica_address}
                                             primary offset minus replica offset, clamped at 0;
                                             only when both INFO replies were read
    haredis_peer_up{peer}                    1 if the peer was heard within 3 gossip periods
                                             (a peer never heard has no series)
    haredis_leader{master_name}              1 while this watcher leads a failover (it won the
                                             election; not while it is only a candidate)
    haredis_last_cycle_timestamp_seconds     wall-clock time of the last completed cycle
                                             (0 before the first one)
    haredis_build_info{version}              always 1
    haredis_cycles_total, haredis_cycle_errors_total, haredis_action_errors_total
                                             the runtime's own counters
    haredis_gossip_rejected_total{reason}    peer messages refused, per reason (from the
                                             peer verifier's counts)

Event metrics:

    haredis_events_total{event}              every published Sentinel event, by channel
    haredis_failovers_total{master_name,result}   failovers this watcher LED (won the
                                             election) that ended: result "ok" (+failover-end,
                                             also +failover-end-for-timeout: the new primary
                                             was committed, only some replicas were not
                                             repointed) or "aborted" (-failover-abort-*)
    haredis_failover_duration_seconds{master_name}        histogram, successful failovers led
    haredis_failover_phase_duration_seconds{master_name,phase}   histogram, same failovers
    haredis_probe_duration_seconds{master_name}           histogram of answered PING round trips

How a led failover is timed. The leader's core publishes ``+failover-summary <name> ...
detect=… agree=… elect=… promote=… reconfigure=… total=…`` right after ``+failover-end``,
measured on the core's own clock; its numbers are what the histograms observe, so /metrics
and ``haredis history`` show the same durations:

    detect       the primary's last good reply -> subjectively down (down_after, or the
                 refused-connection fast path)
    agree        subjectively down -> the winning attempt started (+try-failover): peers'
                 agreement (+odown), earlier lost elections and their backoff
    elect        +try-failover -> +elected-leader (the vote round trip)
    promote      +elected-leader -> +promoted-slave (selection, REPLICAOF NO ONE, ROLE)
    reconfigure  +promoted-slave -> +failover-end (repointing the other replicas)

and ``haredis_failover_duration_seconds`` is detect + agree + total: from the primary's last
good reply to +failover-end, the outage as this watcher saw it. A phase the core reports as
"-" (detect and agree of an operator failover) is not observed.

If no readable summary follows +failover-end (by the next event or scrape), the same phases
are timed from the events' ``now`` instead: agree from the master's +sdown, elect, promote
and reconfigure as above, detect not at all (no event marks the last good reply), and the
duration from +sdown (or the first +try-failover) to +failover-end.

Durations are observed for successful failovers only; an aborted one only counts in
``failovers_total{result="aborted"}``. A watcher that did not win the election counts
nothing here (its lost attempts show as
``haredis_events_total{event="-failover-abort-not-elected"}``).

Secrets never reach a label: labels come from primary names, addresses, peer names, event
channel names and rejection reasons (the last two checked against a token pattern; anything
else is counted as "other"). Event messages, errors and run ids are never exported.
"""

from __future__ import annotations

import bisect
import itertools
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from haredis import __version__
from haredis.core.failover import Phase
from haredis.core.model import PrimaryView, Snapshot, WatcherSettings

__all__ = [
    "FAILOVER_BUCKETS",
    "PHASES",
    "PHASE_BUCKETS",
    "PROBE_BUCKETS",
    "CycleStats",
    "Metrics",
    "Pingable",
    "StateCollector",
    "TimedProbeLink",
    "master_status",
    "parse_summary",
]

FAILOVER_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
PHASE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PHASES = ("detect", "agree", "elect", "promote", "reconfigure")
RESULTS = ("ok", "aborted")

PEER_UP_GOSSIP_PERIODS = 3.0  # a peer is up if heard within this many gossip periods

# Label values that come from the network or from the core's free text must look like tokens.
_EVENT_RE = re.compile(r"[+-][a-z][a-z0-9-]{0,47}")
_REASON_RE = re.compile(r"[a-z][a-z0-9_-]{0,47}")
_ELECTION = Phase.ELECTION.value


class CycleStats(Protocol):
    """What the collector reads from the runtime's counters (runtime.Stats fits)."""

    @property
    def cycles(self) -> int: ...
    @property
    def cycle_errors(self) -> int: ...
    @property
    def action_errors(self) -> int: ...
    @property
    def last_cycle_wall(self) -> float: ...


@dataclass(frozen=True, slots=True)
class _NoStats:
    cycles: int = 0
    cycle_errors: int = 0
    action_errors: int = 0
    last_cycle_wall: float = 0.0


def master_status(view: PrimaryView) -> str:
    """Sentinel's status word for a primary: "odown", "sdown" or "ok"."""
    if view.odown:
        return "odown"
    if view.sdown:
        return "sdown"
    return "ok"


def _fresh(last_heard: float | None, now: float, within: float) -> bool:
    return last_heard is not None and now - last_heard <= within


class StateCollector(Collector):
    """Builds every state gauge from the providers on each scrape."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        settings: Callable[[], WatcherSettings],
        stats: Callable[[], CycleStats],
        rejected: Callable[[], Mapping[str, int]],
        version: str,
        on_primary: Callable[[str], None] = lambda name: None,
        before: Callable[[], None] = lambda: None,
    ) -> None:
        self._snapshot = snapshot
        self._settings = settings
        self._stats = stats
        self._rejected = rejected
        self._version = version
        self._on_primary = on_primary
        self._before = before

    def describe(self) -> Iterable[Metric]:
        # Names only (no providers called): lets the registry detect a clash at register time.
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        self._before()
        snap = self._snapshot()
        settings = self._settings()
        stats = self._stats()
        m = self._families()
        now = snap.now
        m["haredis_masters"].add_metric([], len(snap.primaries))
        m["haredis_tilt"].add_metric([], 1 if snap.in_hold else 0)
        m["haredis_build_info"].add_metric([self._version], 1)
        m["haredis_last_cycle_timestamp_seconds"].add_metric([], stats.last_cycle_wall)
        m["haredis_cycles"].add_metric([], stats.cycles)
        m["haredis_cycle_errors"].add_metric([], stats.cycle_errors)
        m["haredis_action_errors"].add_metric([], stats.action_errors)
        for reason, count in sorted(_sanitized(self._rejected(), _REASON_RE).items()):
            m["haredis_gossip_rejected"].add_metric([reason], count)

        peer_heard: dict[str, float | None] = {}
        for view in snap.primaries:
            self._on_primary(view.name)
            labels = [view.name, str(view.address)]
            status = master_status(view)
            m["haredis_master_status"].add_metric([*labels, status], 1 if status == "ok" else 0)
            m["haredis_master_replicas"].add_metric(labels, len(view.replicas))
            m["haredis_master_ok_replicas"].add_metric(labels, sum(1 for r in view.replicas if not r.sdown))
            ok_peers = sum(
                1 for p in view.peers if not p.in_hold and _fresh(p.last_heard, now, settings.opinion_ttl)
            )
            usable = ok_peers + (0 if snap.in_hold else 1)
            quorum_ok = usable >= view.quorum and usable >= settings.majority
            m["haredis_master_peers"].add_metric(labels, max(settings.electorate - 1, len(view.peers)))
            m["haredis_master_ok_peers"].add_metric(labels, ok_peers)
            m["haredis_master_quorum_ok"].add_metric(labels, 1 if quorum_ok else 0)
            m["haredis_master_config_epoch"].add_metric(labels, view.config_epoch)
            m["haredis_master_current_epoch"].add_metric(labels, view.current_epoch)
            if view.primary.last_ok is not None:
                m["haredis_master_last_ok_ping_reply_seconds"].add_metric(
                    labels, max(0.0, now - view.primary.last_ok)
                )
            s = view.settings
            m["haredis_master_setting_down_after_seconds"].add_metric(labels, s.down_after)
            m["haredis_master_setting_failover_timeout_seconds"].add_metric(labels, s.failover_timeout)
            m["haredis_master_setting_parallel_syncs"].add_metric(labels, s.parallel_syncs)
            m["haredis_master_setting_quorum"].add_metric(labels, view.quorum)
            in_progress = view.failover_state != "none"
            m["haredis_master_failover_in_progress"].add_metric(labels, 1 if in_progress else 0)
            leading = in_progress and view.failover_state != _ELECTION
            m["haredis_leader"].add_metric([view.name], 1 if leading else 0)
            if view.primary.info_age is not None:
                for replica in view.replicas:
                    if replica.info_age is None:
                        continue
                    lag = max(0, view.primary.offset - replica.offset)
                    m["haredis_replica_offset_lag_bytes"].add_metric([view.name, str(replica.address)], lag)
            for peer in view.peers:
                known = peer_heard.get(peer.name)
                if peer.name not in peer_heard or (
                    peer.last_heard is not None and (known is None or peer.last_heard > known)
                ):
                    peer_heard[peer.name] = peer.last_heard
        peer_window = PEER_UP_GOSSIP_PERIODS * settings.gossip_period
        for name, heard in sorted(peer_heard.items()):
            m["haredis_peer_up"].add_metric([name], 1 if _fresh(heard, now, peer_window) else 0)
        return list(m.values())

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        master = ["master_name", "master_address"]

        def gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels or [])

        def counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels or [])

        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            gauge("haredis_masters", "Primaries monitored by this watcher."),
            gauge("haredis_tilt", "1 while this watcher is in hold (Sentinel's TILT): it observes only."),
            gauge("haredis_build_info", "haredis build information (always 1).", ["version"]),
            gauge(
                "haredis_last_cycle_timestamp_seconds",
                "Wall-clock time of the last completed decision cycle (0 before the first).",
            ),
            counter("haredis_cycles", "Decision cycles completed."),
            counter("haredis_cycle_errors", "Events the core failed on (logged; the loop went on)."),
            counter("haredis_action_errors", "Actions that raised (logged; the loop went on)."),
            counter("haredis_gossip_rejected", "Peer messages refused, per reason.", ["reason"]),
            gauge(
                "haredis_master_status",
                "1 if the primary is ok, else 0; the master_status label says ok, sdown or odown.",
                [*master, "master_status"],
            ),
            gauge("haredis_master_replicas", "Replicas known for the primary.", master),
            gauge("haredis_master_ok_replicas", "Replicas not subjectively down.", master),
            gauge("haredis_master_peers", "Other watchers configured.", master),
            gauge(
                "haredis_master_ok_peers", "Other watchers heard within the opinion TTL, not in hold.", master
            ),
            gauge(
                "haredis_master_quorum_ok",
                "1 if the usable watchers reach both the quorum and a majority of the electorate.",
                master,
            ),
            gauge("haredis_master_config_epoch", "Epoch of the current topology.", master),
            gauge("haredis_master_current_epoch", "Highest election epoch seen.", master),
            gauge(
                "haredis_master_last_ok_ping_reply_seconds",
                "Seconds since the primary last answered a probe.",
                master,
            ),
            gauge(
                "haredis_master_setting_down_after_seconds",
                "Seconds without a valid reply before the primary is subjectively down.",
                master,
            ),
            gauge(
                "haredis_master_setting_failover_timeout_seconds",
                "Failover timeout of the primary, seconds.",
                master,
            ),
            gauge("haredis_master_setting_parallel_syncs", "Replicas repointed at a time.", master),
            gauge("haredis_master_setting_quorum", "Watchers that must agree the primary is down.", master),
            gauge(
                "haredis_master_failover_in_progress",
                "1 while this watcher runs a failover attempt for the primary.",
                master,
            ),
            gauge(
                "haredis_replica_offset_lag_bytes",
                "Primary replication offset minus the replica's, bytes.",
                ["master_name", "replica_address"],
            ),
            gauge("haredis_peer_up", "1 if the peer watcher was heard within 3 gossip periods.", ["peer"]),
            gauge("haredis_leader", "1 while this watcher leads a failover of the primary.", ["master_name"]),
        ]
        return {f.name: f for f in families}


def _sanitized(counts: Mapping[str, int], pattern: re.Pattern[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in counts.items():
        label = key if pattern.fullmatch(key) else "other"
        out[label] = out.get(label, 0) + value
    return out


@dataclass(slots=True)
class _Episode:
    """What this watcher saw of one primary's trouble, until it ends (see module docstring)."""

    sdown_at: float | None = None  # the master's +sdown
    first_try_at: float | None = None  # first +try-failover of the episode
    try_at: float | None = None  # +try-failover of the current attempt
    elected_at: float | None = None  # +elected-leader: this watcher leads the attempt
    promoted_at: float | None = None  # +promoted-slave
    ended_at: float | None = None  # +failover-end: waiting for +failover-summary

    def end_attempt(self) -> None:
        self.try_at = self.elected_at = self.promoted_at = None

    def timings(self) -> tuple[float | None, dict[str, float]]:
        """(duration, phases) from the event times: the fallback when no summary came."""
        end = self.ended_at
        assert end is not None
        start = self.sdown_at if self.sdown_at is not None else self.first_try_at
        spans = (
            ("agree", self.sdown_at, self.try_at),
            ("elect", self.try_at, self.elected_at),
            ("promote", self.elected_at, self.promoted_at),
            ("reconfigure", self.promoted_at, end),
        )
        phases = {p: e - b for p, b, e in spans if b is not None and e is not None and e >= b}
        return (end - start if start is not None and end >= start else None), phases


def parse_summary(message: str) -> tuple[str, float | None, dict[str, float]] | None:
    """Read the core's ``+failover-summary``: ``<name> key=value ...`` with the phases in
    seconds ("-" when unknown). Returns (name, duration, phases), or None if unreadable.
    The duration is detect + agree + total: from the primary's last good reply to the end."""
    words = message.split()
    if not words or "=" in words[0]:
        return None
    fields: dict[str, float] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or value == "-":
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if number >= 0 and number != float("inf"):
            fields[key] = number
    if "total" not in fields:
        return None
    phases = {p: fields[p] for p in PHASES if p in fields}
    duration = fields["total"] + fields.get("agree", 0.0) + fields.get("detect", 0.0)
    return words[0], duration, phases


class Metrics:
    """The metrics of one watcher: a private registry, the state collector, event metrics.

    ``snapshot``  returns the Snapshot of the last completed cycle (Runtime.snapshot)
    ``settings``  returns the current WatcherSettings (electorate, opinion_ttl, gossip_period)
    ``stats``     returns the runtime's counters (Runtime.stats); omitted: zeros
    ``rejected``  returns the peer verifier's per-reason rejection counts; omitted: none
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        settings: Callable[[], WatcherSettings],
        *,
        stats: Callable[[], CycleStats] | None = None,
        rejected: Callable[[], Mapping[str, int]] | None = None,
        version: str = __version__,
    ) -> None:
        # No *_created series: they double the series count and nothing here reads them.
        # (A process-wide switch in prometheus_client; haredis has no other metrics.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        no_stats = _NoStats()
        self._episodes: dict[str, _Episode] = {}
        # Registered first: its collect() creates the zero failovers_total series (see
        # _ensure_primary) before the counters are collected in the same scrape.
        self.collector = StateCollector(
            snapshot,
            settings,
            stats or (lambda: no_stats),
            rejected or dict,
            version,
            on_primary=self._ensure_primary,
            before=self.flush,
        )
        self.registry.register(self.collector)
        self.events = Counter(
            "haredis_events",
            "Sentinel events published by this watcher, by channel.",
            ["event"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "haredis_failovers",
            "Failovers led by this watcher that ended, by result (ok or aborted).",
            ["master_name", "result"],
            registry=self.registry,
        )
        self.failover_duration = Histogram(
            "haredis_failover_duration_seconds",
            "Successful failovers led by this watcher: the primary's last good reply to +failover-end.",
            ["master_name"],
            buckets=FAILOVER_BUCKETS,
            registry=self.registry,
        )
        self.phase_duration = Histogram(
            "haredis_failover_phase_duration_seconds",
            "Phases of the successful failovers led by this watcher.",
            ["master_name", "phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.probe_duration = ProbeDurations(PROBE_BUCKETS)
        self.registry.register(self.probe_duration)

    # ------------------------------------------------------------------ rendering

    def exposition(self) -> bytes:
        """The Prometheus text exposition of everything (what GET /metrics returns)."""
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ feeding

    def observe_probe(self, primary: str, seconds: float) -> None:
        """One answered PING to an instance of `primary` took `seconds` (failed ones: skip)."""
        self.probe_duration.series(primary)(seconds)

    def timed_probe_link(self, primary: str, link: Pingable) -> TimedProbeLink:
        """Wrap a probe link so each answered PING is observed (for the daemon's link factory).
        The histogram's series is looked up once here, not on every PING."""
        return TimedProbeLink(link, self.probe_duration.series(primary))

    def observe_event(self, channel: str, message: str, now: float) -> None:
        """Count one published event and follow the failover it belongs to (module docstring).

        `now` is the monotonic time of publication (the loop's clock); only differences matter.
        Call it for every event, in the order they are published.
        """
        self.events.labels(channel if _EVENT_RE.fullmatch(channel) else "other").inc()
        if channel == "+failover-summary":
            summary = parse_summary(message)
            if summary is not None:
                name, duration, phases = summary
                self._episodes.pop(name, None)
                self._observe_timings(name, duration, phases)
            self.flush()
            return
        self.flush()  # the summary comes right after +failover-end, or not at all
        words = message.split()
        if channel == "+switch-master" and words:
            # "<name> <oldip> <oldport> <newip> <newport>": if another watcher led it, the
            # episode is over for us; if we lead, +failover-end follows.
            known = self._episodes.get(words[0])
            if known is not None and known.elected_at is None:
                del self._episodes[words[0]]
            return
        if channel == "+promoted-slave":
            # "slave <ip:port> <ip> <port> @ <name> <mip> <mport>"
            promoted = self._episodes.get(_name_after_at(words) or "")
            if promoted is not None and promoted.elected_at is not None:
                promoted.promoted_at = now
            return
        if len(words) < 2 or words[0] != "master":
            return  # replica events, or ones that name no primary
        name = words[1]
        if channel == "+sdown":
            ep = self._episode(name)
            if ep.sdown_at is None:
                ep.sdown_at = now
        elif channel == "-sdown":
            ep = self._episode(name)
            if ep.elected_at is None:
                ep.sdown_at = None
        elif channel == "+try-failover":
            ep = self._episode(name)
            ep.end_attempt()
            ep.try_at = now
            if ep.first_try_at is None:
                ep.first_try_at = now
        elif channel == "+elected-leader":
            ep = self._episode(name)
            if ep.try_at is None:
                ep.try_at = now
            ep.elected_at = now
        elif channel in ("+failover-end", "+failover-end-for-timeout"):
            ep = self._episode(name)
            if ep.elected_at is None:
                # Only a leader publishes these; we missed its start (a lost event): count it.
                ep.elected_at = ep.try_at = now
            self.failovers.labels(name, "ok").inc()
            ep.ended_at = now  # durations wait for the +failover-summary that follows
        elif channel.startswith("-failover-abort"):
            ep = self._episode(name)
            if ep.elected_at is not None:
                self.failovers.labels(name, "aborted").inc()
            ep.end_attempt()  # the episode goes on: another attempt may follow

    def flush(self) -> None:
        """Observe the event-timed durations of failovers whose +failover-summary did not
        come (called by observe_event and before each scrape; cheap when nothing waits)."""
        for name in [n for n, ep in self._episodes.items() if ep.ended_at is not None]:
            duration, phases = self._episodes.pop(name).timings()
            self._observe_timings(name, duration, phases)

    # ------------------------------------------------------------------ internals

    def _observe_timings(self, name: str, duration: float | None, phases: Mapping[str, float]) -> None:
        if duration is not None:
            self.failover_duration.labels(name).observe(duration)
        for phase in PHASES:
            if phase in phases:
                self.phase_duration.labels(name, phase).observe(phases[phase])

    def _ensure_primary(self, name: str) -> None:
        # failovers_total{result=ok|aborted} exist at 0 from the first scrape, so that
        # increase() sees the first failover.
        for result in RESULTS:
            self.failovers.labels(name, result)

    def _episode(self, name: str) -> _Episode:
        ep = self._episodes.get(name)
        if ep is None:
            ep = self._episodes[name] = _Episode()
        return ep


def _name_after_at(words: list[str]) -> str | None:
    try:
        i = words.index("@")
    except ValueError:
        return None
    return words[i + 1] if i + 1 < len(words) else None


class ProbeDurations(Collector):
    """``haredis_probe_duration_seconds{master_name}``, a histogram kept as plain counters:
    observing is a bisect and three additions. (prometheus_client's Histogram takes a lock
    for the sum and for the bucket on every observation, ~2.7 us, and the probes observe one
    for every answered PING: 2000 a second with a thousand primaries.) Only the event loop
    observes; a scrape from another thread reads counters that are at worst one PING old."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self._bounds = tuple(buckets)
        le: Callable[[float], str] = floatToGoString  # as prometheus_client's Histogram
        self._le = [le(bound) for bound in self._bounds] + ["+Inf"]
        self._series: dict[str, _ProbeSeries] = {}

    def series(self, primary: str) -> Callable[[float], None]:
        """The observer of one primary's series (created, at zero, on first use)."""
        series = self._series.get(primary)
        if series is None:
            series = self._series[primary] = _ProbeSeries(len(self._bounds) + 1)
        bounds = self._bounds

        def observe(seconds: float) -> None:
            seconds = max(0.0, seconds)
            series.counts[bisect.bisect_left(bounds, seconds)] += 1  # le: bound >= seconds
            series.total += seconds

        return observe

    def describe(self) -> Iterable[Metric]:
        return []  # the registry must not call collect() to learn the names at register time

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(
            "haredis_probe_duration_seconds", "Round trip of answered PING probes.", labels=["master_name"]
        )
        for name, series in self._series.items():
            cumulative = list(itertools.accumulate(series.counts))
            family.add_metric([name], list(zip(self._le, cumulative, strict=True)), series.total)
        yield family


class _ProbeSeries:
    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0


class Pingable(Protocol):
    async def ping(self, timeout: float) -> str: ...


class TimedProbeLink:
    """Wraps a probe link: reports the round trip of each answered PING; everything else
    (info, promote, close, ...) is the wrapped link's own attribute, so it satisfies the
    runtime's RedisPort whatever that protocol grows. A failed PING is not observed."""

    def __init__(
        self,
        link: Pingable,
        observe: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        self._observe = observe
        self._clock = clock

    async def ping(self, timeout: float) -> str:
        start = self._clock()
        reply = await self._link.ping(timeout)
        self._observe(self._clock() - start)
        return reply

    def answered_in(self, seconds: float) -> None:
        """The prober's report of an answered PING (haredis.prober: probes that do not go
        through `ping`)."""
        self._observe(max(0.0, seconds))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)
