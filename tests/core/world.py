"""A tiny, instant world for scenario tests of the core: perfect network, fake Redis nodes.

The deterministic simulator (tests/sim) is the hostile world; this one is the friendly one,
small enough to read in a test failure. Every action is answered in the same step except
probes and INFO to a paused node, which time out after their timeout.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from haredis.core.actions import (
    FREEZE_TARGET,
    Action,
    Fence,
    PersistState,
    Probe,
    Promote,
    Publish,
    QueryInfo,
    ReplicaOf,
    RequestVotes,
    SendGossip,
    SendVoteReply,
    Switchover,
    Unfreeze,
)
from haredis.core.events import (
    Event,
    FailureKind,
    GossipReceived,
    InfoFailed,
    InfoReply,
    ProbeFailed,
    ProbeReply,
    PromoteDone,
    ReplicaOfDone,
    SwitchoverDone,
    Tick,
    VoteReplied,
    VoteRequested,
)
from haredis.core.model import (
    Address,
    DurableState,
    InstanceInfo,
    PrimarySettings,
    ReplicaLink,
    Role,
    WatcherSettings,
)
from haredis.core.watcher import Watcher


@dataclass
class Node:
    address: Address
    role: Role
    master: Address | None = None
    offset: int = 0
    replid: str = "history-1"
    replid2: str = ""
    priority: int = 100
    alive: bool = True
    paused: bool = False
    # min-replicas-to-write / min-replicas-max-lag once a Fence reached it (a restart clears it).
    fence: tuple[int, int] | None = None
    paused_since: float | None = None
    writes_paused: bool = False  # CLIENT PAUSE WRITE in effect
    keys: int = 10
    second_repl_offset: int = -1  # as Redis: the first offset not shared with replid2


@dataclass
class World:
    nodes: dict[Address, Node]
    settings: list[WatcherSettings]
    now: float = 0.0
    watchers: dict[str, Watcher] = field(default_factory=dict)
    disks: dict[str, DurableState] = field(default_factory=dict)
    down_watchers: set[str] = field(default_factory=set)
    # Watchers whose process is stopped (SIGSTOP): what reaches them waits, in order.
    stalled: dict[str, list[Event]] = field(default_factory=dict)
    published: list[tuple[float, str, str, str]] = field(default_factory=list)
    promotions: list[tuple[float, str, Address, int]] = field(default_factory=list)
    fences: list[tuple[float, str, Address]] = field(default_factory=list)
    fenced_old: list[tuple[float, str, Address, bool]] = field(default_factory=list)
    # Nodes the watchers cannot reach although they are up and their replicas hear them.
    cut_from_watchers: set[Address] = field(default_factory=set)
    # (watcher, node) pairs cut apart: a partition between some watchers and a node.
    cut_pairs: set[tuple[str, Address]] = field(default_factory=set)
    freezes: list[tuple[float, str, Address]] = field(default_factory=list)
    # Pairs of watchers that cannot hear each other (gossip and votes are dropped both ways).
    watcher_cuts: set[frozenset[str]] = field(default_factory=set)
    # The highest offset of each history that a replica acknowledged (what WAIT 1 confirmed),
    # and the offset each promoted replica's new history forked from its old one.
    acked: dict[str, int] = field(default_factory=dict)
    fork_offsets: dict[Address, int] = field(default_factory=dict)
    # A client writing (with WAIT 1) to a primary: bytes per tick, written before every tick.
    streams: dict[Address, int] = field(default_factory=dict)
    # REPLICAOF takes effect this long after it is sent (the network, parallel_syncs' queue):
    # until then the replica still follows, and acknowledges, its old primary.
    replicaof_delay: float = 0.0
    # The next this-many REPLICAOFs sent to a node fail without effect (a link the server
    # closed while it sat idle: another client's CLIENT KILL).
    replicaof_failures: dict[Address, int] = field(default_factory=dict)
    replicaofs: list[tuple[float, str, Address, Address, bool]] = field(default_factory=list)
    _effects: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    _queue: list[tuple[float, int, str, Event]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        for ws in self.settings:
            self.disks[ws.name] = DurableState()
            self.watchers[ws.name] = Watcher(ws, DurableState(), self.now)

    # -- faults
    def kill(self, address: Address) -> None:
        self.nodes[address].alive = False
        self.nodes[address].paused_since = self.now

    def pause(self, address: Address) -> None:
        """SIGSTOP: nothing answers, and replicas stop hearing from it from now on."""
        self.nodes[address].paused = True
        self.nodes[address].paused_since = self.now

    def resume(self, address: Address) -> None:
        self.nodes[address].paused = False
        self.nodes[address].paused_since = None

    def restart(self, address: Address, *, empty: bool = False) -> None:
        """The process comes back (as it was, minus every CONFIG SET). `empty`: without
        persistence, so with no keys and a new replication history. Replicas here never
        resync on their own, so they keep the old data until someone repoints them."""
        node = self.nodes[address]
        node.alive, node.paused, node.paused_since, node.fence = True, False, None, None
        if empty:
            node.keys, node.offset = 0, 0
            node.replid, node.replid2 = f"history-{address.host}-restart-{self.now}", ""

    def write(self, primary: Address, size: int) -> None:
        """A client writes `size` bytes to `primary` and waits for one replica (WAIT 1):
        every replica that follows it (a frozen one follows nothing) applies and acknowledges
        them."""
        node = self.nodes[primary]
        if not node.alive or node.paused or node.writes_paused or node.role is not Role.PRIMARY:
            return
        node.offset += size
        for replica in self.nodes.values():
            following = replica.role is Role.REPLICA and replica.master == primary
            if following and replica.alive and not replica.paused:
                replica.offset = node.offset
                self.acked[node.replid] = max(self.acked.get(node.replid, 0), node.offset)

    def split_watchers(self, side: set[str]) -> None:
        """Cut the watchers in `side` off from all the others (each side still talks within)."""
        self.watcher_cuts = {frozenset((a, b)) for a in side for b in self.watchers if b not in side}

    def heal_watchers(self) -> None:
        self.watcher_cuts = set()

    def _hears(self, sender: str, receiver: str) -> bool:
        return frozenset((sender, receiver)) not in self.watcher_cuts

    def stop_watcher(self, name: str) -> None:
        self.down_watchers.add(name)

    def restart_watcher(self, name: str) -> None:
        self.down_watchers.discard(name)
        ws = next(s for s in self.settings if s.name == name)
        self.watchers[name] = Watcher(ws, self.disks[name], self.now)

    def stall_watcher(self, name: str) -> None:
        """SIGSTOP the watcher's process: no tick runs, what reaches it waits in its socket
        buffers."""
        self.stalled[name] = []

    def resume_watcher(self, name: str) -> None:
        """SIGCONT: its loop wakes up and reads everything that waited, in arrival order,
        all at once (each stamped now, as the runtime stamps on arrival)."""
        for event in self.stalled.pop(name):
            self._deliver(name, event)

    # -- running
    def run(self, seconds: float, tick: float = 0.05) -> None:
        end = self.now + seconds
        next_tick = self.now
        while self.now < end:
            while self._queue and self._queue[0][0] <= next_tick:
                at, _, name, event = heapq.heappop(self._queue)
                self.now = max(self.now, at)
                self._deliver(name, event)
            self.now = next_tick
            while self._effects and self._effects[0][0] <= self.now:
                heapq.heappop(self._effects)[2]()
            for primary, size in self.streams.items():
                self.write(primary, size)
            for name in sorted(self.watchers):
                self._deliver(name, Tick(now=self.now))
            next_tick = round(next_tick + tick, 9)

    def _later(self, delay: float, name: str, event: Event) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), name, event))

    def _deliver(self, name: str, event: Event) -> None:
        if name in self.down_watchers:
            return
        held = self.stalled.get(name)
        if held is not None:
            if not isinstance(event, Tick):  # a stopped loop does not tick
                held.append(event)
            return
        event = dataclasses.replace(event, now=self.now)  # stamped on arrival, as the runtime does
        for action in self.watchers[name].handle(event):
            self._execute(name, action)

    def _execute(self, name: str, action: Action) -> None:
        now = self.now
        match action:
            case PersistState(state):
                self.disks[name] = state
            case Probe(primary, address, timeout):
                node = self.nodes.get(address)
                if node is None or not node.alive:
                    self._later(
                        0.001,
                        name,
                        ProbeFailed(now=now, primary=primary, address=address, kind=FailureKind.REFUSED),
                    )
                elif node.paused or address in self.cut_from_watchers or (name, address) in self.cut_pairs:
                    self._later(
                        timeout,
                        name,
                        ProbeFailed(
                            now=now + timeout, primary=primary, address=address, kind=FailureKind.TIMEOUT
                        ),
                    )
                else:
                    self._later(
                        0.001, name, ProbeReply(now=now, primary=primary, address=address, reply="PONG")
                    )
            case QueryInfo(primary, address, timeout, freeze):
                node = self.nodes.get(address)
                cut = address in self.cut_from_watchers or (name, address) in self.cut_pairs
                if node is None or not node.alive or node.paused or cut:
                    self._later(
                        0.001 if node is None or not node.alive else timeout,
                        name,
                        InfoFailed(now=now, primary=primary, address=address),
                    )
                elif freeze:
                    # Detached as the runtime does it: INFO, REPLICAOF FREEZE_TARGET, INFO
                    # (a node that is not a replica is left alone).
                    before = self.info(node)
                    if node.role is Role.REPLICA:
                        node.master = FREEZE_TARGET
                        self.freezes.append((now, name, address))
                    info = self.info(node)
                    self._later(
                        0.001,
                        name,
                        InfoReply(now=now, primary=primary, address=address, info=info, before_freeze=before),
                    )
                else:
                    self._later(
                        0.001,
                        name,
                        InfoReply(now=now, primary=primary, address=address, info=self.info(node)),
                    )
            case SendGossip(gossip, to):
                for other in self.watchers:
                    if other != name and (to is None or to == other) and self._hears(name, other):
                        self._later(0.001, other, GossipReceived(now=now, gossip=gossip))
            case RequestVotes(request):
                for other in self.watchers:
                    if other != name and self._hears(name, other):
                        self._later(0.001, other, VoteRequested(now=now, request=request))
            case SendVoteReply(to, reply):
                if self._hears(name, to):
                    self._later(0.001, to, VoteReplied(now=now, reply=reply))
            case Promote(primary, address, epoch, _, fence_old, _):
                node = self.nodes[address]
                ok = node.alive and not node.paused
                old = self.nodes.get(fence_old) if fence_old is not None else None
                fenced = old is not None and old.alive and not old.paused
                if fenced:
                    assert old is not None
                    old.writes_paused = True
                if ok:
                    # As Redis: a new history starts; the old one is remembered as replid2.
                    self.fork_offsets[address] = node.offset
                    node.second_repl_offset = node.offset + 1
                    node.role, node.master = Role.PRIMARY, None
                    node.replid2, node.replid = node.replid, f"history-{address.host}-{epoch}"
                    self.promotions.append((now, name, address, epoch))
                if fenced:
                    assert old is not None
                    if ok:  # demoted before the promotion is answered, then unpaused
                        old.role, old.master = Role.REPLICA, address
                    old.writes_paused = False
                    self.fenced_old.append((now, name, old.address, ok))
                self._later(
                    0.001,
                    name,
                    PromoteDone(now=now, primary=primary, address=address, epoch=epoch, role_ok=ok),
                )
            case ReplicaOf(primary, address, target, epoch, _):
                node = self.nodes[address]
                ok = node.alive and not node.paused
                if ok and self.replicaof_failures.get(address, 0) > 0:
                    self.replicaof_failures[address] -= 1
                    ok = False
                self.replicaofs.append((now, name, address, target, ok))

                def repoint(node: Node = node, target: Address = target) -> None:
                    node.role, node.master = Role.REPLICA, target
                    new_replid = self.nodes[target].replid
                    if new_replid != node.replid:
                        node.replid2, node.replid = node.replid, new_replid

                if ok and self.replicaof_delay > 0:
                    heapq.heappush(self._effects, (now + self.replicaof_delay, next(self._seq), repoint))
                elif ok:
                    repoint()
                self._later(
                    0.001,
                    name,
                    ReplicaOfDone(
                        now=now, primary=primary, address=address, target=target, epoch=epoch, ok=ok
                    ),
                )
            case Switchover(primary, old, target, epoch, _):
                old_node, new_node = self.nodes[old], self.nodes[target]
                ok = old_node.alive and new_node.alive and not old_node.paused and not new_node.paused
                if ok:
                    # Redis's FAILOVER TO: writes paused until the target caught up, then roles swap.
                    new_node.offset = old_node.offset
                    new_node.role, new_node.master = Role.PRIMARY, None
                    new_node.replid2, new_node.replid = new_node.replid, f"history-{target.host}-{epoch}"
                    old_node.role, old_node.master = Role.REPLICA, target
                    old_node.replid2, old_node.replid = old_node.replid, new_node.replid
                    self.promotions.append((now, name, target, epoch))
                self._later(
                    0.3,
                    name,
                    SwitchoverDone(now=now, primary=primary, address=target, epoch=epoch, role_ok=ok),
                )
            case Unfreeze(_, address, target):
                node = self.nodes[address]
                if node.role is Role.REPLICA and node.master == FREEZE_TARGET:  # still detached
                    node.master = target
            case Publish(channel, message):
                self.published.append((now, name, channel, message))
            case Fence(_, address, min_replicas, max_lag):
                node = self.nodes[address]
                if node.alive and not node.paused:
                    node.fence = (min_replicas, max_lag)
                self.fences.append((now, name, address))

    def info(self, node: Node) -> InstanceInfo:
        if node.role is Role.PRIMARY:
            links = tuple(
                ReplicaLink(n.address, n.offset, True)
                for n in self.nodes.values()
                if n.role is Role.REPLICA and n.master == node.address and n.alive
            )
            return InstanceInfo(
                role=Role.PRIMARY,
                run_id=f"run{node.address.port}",
                replid=node.replid,
                replid2=node.replid2,
                offset=node.offset,
                second_repl_offset=node.second_repl_offset,
                replicas=links,
                fence_configured=node.fence is not None,
                keys=node.keys,
            )
        master = self.nodes.get(node.master) if node.master else None
        link_up = bool(master and master.alive and not master.paused)
        # As Redis: whole seconds. A stopped primary leaves the link "up" with a growing
        # last-io (a silent partition); a dead one drops the link at once.
        last_io = link_down = 0.0
        if master is not None and master.paused_since is not None:
            gone = float(int(self.now - master.paused_since))
            if master.alive:
                link_up, last_io = True, gone
            else:
                link_down = max(gone, 1.0)
        return InstanceInfo(
            role=Role.REPLICA,
            run_id=f"run{node.address.port}",
            replid=node.replid,
            replid2=node.replid2,
            offset=node.offset,
            master=node.master,
            link_up=link_up,
            link_down_seconds=link_down,
            last_io_seconds=last_io,
            priority=node.priority,
            fence_configured=node.fence is not None,
            keys=node.keys,
        )

    # -- observations
    def events(self, channel: str) -> list[tuple[float, str, str, str]]:
        return [p for p in self.published if p[2] == channel]

    def primaries(self) -> list[Address]:
        return [a for a, n in self.nodes.items() if n.alive and n.role is Role.PRIMARY]


P = Address("10.0.0.1", 6379)
R1 = Address("10.0.0.2", 6379)
R2 = Address("10.0.0.3", 6379)


def make_world(
    *,
    watchers: int = 3,
    quorum: int = 2,
    down_after: float = 1.0,
    offsets: tuple[int, int] = (100, 90),
    priorities: tuple[int, int] = (100, 100),
    fencing: bool = False,
) -> World:
    nodes = {
        P: Node(P, Role.PRIMARY, offset=100),
        R1: Node(R1, Role.REPLICA, master=P, offset=offsets[0], priority=priorities[0]),
        R2: Node(R2, Role.REPLICA, master=P, offset=offsets[1], priority=priorities[1]),
    }
    ps = PrimarySettings(
        name="mymaster",
        address=P,
        quorum=quorum,
        down_after=down_after,
        min_failover_interval=5.0,
        fencing=fencing,
    )
    names = [f"w{i + 1}" for i in range(watchers)]
    settings = [WatcherSettings(name=n, electorate=watchers, primaries=(ps,)) for n in names]
    return World(nodes=nodes, settings=settings)
