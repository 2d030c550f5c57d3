"""Tick scheduling in the watcher core (Watcher._on_tick and its helpers).

A tick visits only the groups that are restless or have something due; the claim is that the
visits it skips could not have changed anything. The first test checks that claim directly:
the real Watcher and one that visits every group on every tick (the behaviour before the
schedule) get the same events and must answer with the same actions, batch for batch, through
crashes, hangs, busy replies, contradicting replicas, peers' opinions, failovers and hold.
The others pin down what the schedule is for: a quiet tick visits few groups, and the first
probes of a watcher's start are spread over one ping period.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from haredis.core.actions import Action, Probe, QueryInfo
from haredis.core.events import Tick
from haredis.core.group import Group
from haredis.core.model import Address, DurableState, PrimarySettings, Role, WatcherSettings
from haredis.core.watcher import Watcher

from .helpers import NAME, R1, R2, CheckedWatcher, FakeRedis, P, Rig, primary_info, replica_info

# A second and a third group next to the helpers' NAME (P with replicas R1, R2).
P2, R21 = Address("10.0.1.1", 6379), Address("10.0.1.2", 6379)
P3, R31 = Address("10.0.2.1", 6379), Address("10.0.2.2", 6379)


class EveryGroupEveryTick(CheckedWatcher):
    """The reference: every group is visited on every tick (once its first visit is due,
    which the real watcher waits for too, except in hold and after a reload)."""

    def _groups_to_visit(self, now: float) -> list[Group]:
        every = self.in_hold or not self._schedule.is_current(self.settings)
        super()._groups_to_visit(now)  # keeps the real bookkeeping going; its answer is ignored
        return [g for g in self._groups.values() if every or now >= self._schedule.first_visit_at(g)]


class CountingWatcher(CheckedWatcher):
    """The real watcher, counting the groups each tick visits."""

    def __init__(self, settings: WatcherSettings, durable: DurableState, now: float) -> None:
        super().__init__(settings, durable, now)
        self.visits: list[int] = []

    def _groups_to_visit(self, now: float) -> list[Group]:
        groups = super()._groups_to_visit(now)
        self.visits.append(len(groups))
        return groups


@dataclass
class TwinRig(Rig):
    """A Rig whose watcher is `kind` (restarts keep the kind)."""

    kind: type[CheckedWatcher] = CheckedWatcher

    def __post_init__(self) -> None:
        self.watcher = self.kind(self.settings, self.durable, self.now)

    def restart(self) -> None:
        self._queue.clear()
        self.watcher = self.kind(self.settings, self.watcher.disk, self.now)


def three_groups(electorate: int, *, down_after: float = 1.0) -> WatcherSettings:
    def group(name: str, address: Address) -> PrimarySettings:
        return PrimarySettings(
            name=name,
            address=address,
            quorum=min(2, electorate),
            down_after=down_after,
            min_failover_interval=5.0,
            info_period=1.0,
            convert_after=1.0,
        )

    return WatcherSettings(
        name="w1",
        electorate=electorate,
        primaries=(group(NAME, P), group("second", P2), group("third", P3)),
    )


def three_group_nodes() -> dict[Address, FakeRedis]:
    return {
        P: FakeRedis(primary_info((R1, R2))),
        R1: FakeRedis(replica_info(P, offset=100, run_id="r1")),
        R2: FakeRedis(replica_info(P, offset=90, run_id="r2")),
        P2: FakeRedis(primary_info((R21,))),
        R21: FakeRedis(replica_info(P2, offset=100, run_id="r21")),
        P3: FakeRedis(primary_info((R31,))),
        R31: FakeRedis(replica_info(P3, offset=100, run_id="r31")),
    }


ADDRESSES = (P, R1, R2, P2, R21, P3, R31)
_step = st.one_of(
    st.tuples(st.just("run"), st.floats(0.01, 2.0)),
    st.tuples(
        st.just("mode"),
        st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(["up", "refused", "hang", "busy"])),
    ),
    # A replica of the first group that follows another primary, or claims to be one.
    st.tuples(st.just("stray"), st.sampled_from([R1, R2])),
    st.tuples(st.just("gossip"), st.tuples(st.sampled_from(["w2", "w3"]), st.booleans())),
    st.tuples(st.just("command"), st.none()),
    st.tuples(st.just("jump"), st.floats(2.5, 5.0)),
    st.tuples(st.just("restart"), st.none()),
)


def play(kind: type[CheckedWatcher], electorate: int, steps: list[tuple[str, object]]) -> TwinRig:
    rig = TwinRig(three_groups(electorate), three_group_nodes(), kind=kind)
    rig.run(1.5, step=0.1)
    for name, arg in steps:
        if name == "run":
            assert isinstance(arg, float)
            rig.run(round(arg, 3), step=0.1)
        elif name == "mode":
            assert isinstance(arg, tuple)
            address, mode = arg
            rig.nodes[address].mode = mode
        elif name == "stray":
            assert isinstance(arg, Address)
            node = rig.nodes[arg]
            stray = replica_info(P3) if node.info.role is Role.REPLICA else primary_info(())
            node.info = replace(stray, run_id=node.info.run_id)
        elif name == "gossip":
            assert isinstance(arg, tuple)
            sender, down = arg
            rig.gossip(sender, says_down=down)
        elif name == "command":
            rig.command_failover()
        elif name == "jump":
            assert isinstance(arg, float)
            rig.now += arg
            rig.run(0.1, step=0.1)
        elif name == "restart":
            rig.restart()
    rig.run(3.0, step=0.1)
    return rig


def batches(rig: TwinRig) -> list[list[Action]]:
    return rig.watcher.batches


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_step, max_size=15), electorate=st.sampled_from([1, 3]))
def test_skipping_calm_groups_changes_no_action(steps: list[tuple[str, object]], electorate: int) -> None:
    scheduled = play(CheckedWatcher, electorate, steps)
    reference = play(EveryGroupEveryTick, electorate, steps)
    assert scheduled.published == reference.published
    assert scheduled.sent == reference.sent
    assert scheduled.promotes == reference.promotes
    assert batches(scheduled) == batches(reference)
    for flag, seen in (
        ("sdown", any(c == "+sdown" for _, c, _ in scheduled.published)),
        ("promoted", bool(scheduled.promotes)),
        (
            "converted a stray",
            any(c in ("+convert-to-slave", "+fix-slave-config") for _, c, _ in scheduled.published),
        ),
        ("hold", any(c == "+tilt" for _, c, _ in scheduled.published)),
    ):
        if seen:
            event(flag)


def test_a_whole_failover_acts_the_same_either_way() -> None:
    """One scenario that certainly goes all the way: a crash, a failover, the old primary's
    return as a stray primary and its demotion."""
    steps: list[tuple[str, object]] = [
        ("run", 2.0),
        ("mode", (P, "refused")),
        ("run", 3.0),
        ("mode", (P, "up")),
        ("run", 3.0),
    ]
    scheduled = play(CheckedWatcher, 1, steps)
    reference = play(EveryGroupEveryTick, 1, steps)
    channels = [c for _, c, _ in scheduled.published]
    assert "+switch-master" in channels and "+convert-to-slave" in channels, channels
    assert batches(scheduled) == batches(reference)


def test_a_quiet_tick_visits_only_the_groups_with_something_due() -> None:
    """Ten healthy groups, probed and asked for INFO once a second, ticked ten times a
    second: a tick visits about two groups, not all ten."""
    primaries = tuple(
        PrimarySettings(name=f"g{i}", address=Address(f"10.1.{i}.1", 6379), quorum=1, down_after=10.0)
        for i in range(10)
    )
    nodes = {p.address: FakeRedis(primary_info(())) for p in primaries}
    rig = TwinRig(WatcherSettings(name="w1", electorate=1, primaries=primaries), nodes, kind=CountingWatcher)
    rig.run(3.0, step=0.1)
    watcher = rig.watcher
    assert isinstance(watcher, CountingWatcher)
    watcher.visits.clear()
    rig.run(5.0, step=0.1)
    # Each group is due twice a second: its probes (1 s period, on the tick grid) and its
    # INFO (1 s after the last reply, so one tick later): about 100 visits in 5 s, where
    # visiting every group on every tick would be 500.
    assert sum(watcher.visits) <= 110, watcher.visits
    assert not [c for _, c, _ in rig.published if c in ("+sdown", "+odown")]


def test_a_hang_in_a_calm_group_is_declared_on_the_same_tick_as_before() -> None:
    primaries = tuple(
        PrimarySettings(name=f"g{i}", address=Address(f"10.1.{i}.1", 6379), quorum=1, down_after=5.0)
        for i in range(5)
    )
    for kind in (CheckedWatcher, EveryGroupEveryTick):
        nodes = {p.address: FakeRedis(primary_info(())) for p in primaries}
        rig = TwinRig(WatcherSettings(name="w1", electorate=1, primaries=primaries), nodes, kind=kind)
        rig.run(3.0, step=0.1)
        hung = primaries[3].address
        rig.nodes[hung].mode = "hang"
        rig.run(8.0, step=0.1)
        sdown = [(round(t, 3), m) for t, c, m in rig.published if c == "+sdown"]
        assert len(sdown) == 1 and "10.1.3.1" in sdown[0][1], sdown
        if kind is CheckedWatcher:
            first = sdown
        else:
            assert sdown == first


def test_first_probes_and_info_are_spread_over_one_period_each() -> None:
    """200 primaries probed every second and asked for INFO every 10 s: the first probes
    are spread over the first second, the first INFO over the first 10 s."""
    primaries = tuple(
        PrimarySettings(
            name=f"g{i:03d}",
            address=Address("10.2.0.1", 7000 + i),
            quorum=1,
            down_after=10.0,
            info_period=10.0,
        )
        for i in range(200)
    )
    settings_ = WatcherSettings(name="w1", electorate=1, primaries=primaries)
    start = 100.0
    watcher = Watcher(settings_, DurableState(), start)
    first_probe: dict[Address, float] = {}
    first_info: dict[Address, float] = {}
    now = start
    for _ in range(102):  # ticks 0.0 .. 10.1 s after the start
        for action in watcher.handle(Tick(now=now)):
            if isinstance(action, Probe):
                first_probe.setdefault(action.address, now - start)
            if isinstance(action, QueryInfo):
                first_info.setdefault(action.address, now - start)
        now = round(now + 0.1, 9)
    addresses = {p.address for p in primaries}
    # Every primary is probed within one ping period (1 s), asked for INFO within one INFO
    # period (10 s)...
    assert set(first_probe) == addresses and set(first_info) == addresses
    assert max(first_probe.values()) <= 1.0
    assert max(first_info.values()) <= 10.0
    # ...and not all at once: the ticks of that period each take a share.
    probes_per_tick = [sum(1 for t in first_probe.values() if abs(t - k / 10) < 1e-6) for k in range(11)]
    assert max(probes_per_tick) < 50, probes_per_tick
    assert sum(1 for n in probes_per_tick if n) >= 9, probes_per_tick
    info_per_tick = [sum(1 for t in first_info.values() if abs(t - k / 10) < 1e-6) for k in range(101)]
    assert max(info_per_tick) < 20, info_per_tick
    assert sum(1 for n in info_per_tick if n) >= 60, info_per_tick
    # Deterministic: a second watcher with the same names spreads them the same way.
    again = Watcher(settings_, DurableState(), start)
    assert [a for a in again.handle(Tick(now=start)) if isinstance(a, Probe)] == [
        Probe(p.name, p.address, timeout=p.probe_timeout) for p in primaries if first_probe[p.address] == 0.0
    ]


def test_a_watcher_of_one_primary_starts_at_once() -> None:
    ps = PrimarySettings(
        name="only", address=Address("10.3.0.1", 6379), quorum=1, down_after=10.0, info_period=10.0
    )
    watcher = Watcher(WatcherSettings(name="w1", electorate=1, primaries=(ps,)), DurableState(), 5.0)
    actions = watcher.handle(Tick(now=5.0))
    assert Probe("only", ps.address, timeout=ps.probe_timeout) in actions
    assert any(isinstance(a, QueryInfo) and a.address == ps.address for a in actions)
