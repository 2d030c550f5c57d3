"""A deliberately small watcher that follows the core's contract, for the simulator's own
tests: it exercises the world when the real core is not at hand, and with `bugs` switched on
it proves that each invariant checker catches the mistake it is meant to catch.

It is not haredis's algorithm and nothing in haredis may depend on it.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from haredis.core.actions import (
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
)
from haredis.core.events import (
    Event,
    FailoverCommand,
    GossipReceived,
    InfoFailed,
    InfoReply,
    ProbeFailed,
    ProbeReply,
    PromoteDone,
    ReplicaOfDone,
    Tick,
    VoteReplied,
    VoteRequested,
)
from haredis.core.messages import Gossip, PrimaryGossip, VoteReply, VoteRequest
from haredis.core.model import (
    Address,
    DurableState,
    InstanceInfo,
    InstanceView,
    PrimaryDurable,
    PrimarySettings,
    PrimaryView,
    Role,
    Snapshot,
    WatcherSettings,
)

T = TypeVar("T")

BUGS = (
    "double-vote",
    "no-persist",
    "stale-pick",
    "priority-zero",
    "one-vote-wins",
    "vote-while-up",
    "no-lease-wait",
    "promote-primary",
)
FENCE_RESEND = 5.0


@dataclass
class _Inst:
    last_ok: float
    probing: bool = False
    last_probe: float = -1e9
    hard_since: float | None = None
    info: InstanceInfo | None = None
    info_at: float = -1e9
    querying: bool = False
    last_query: float = -1e9
    stray_since: float | None = None
    fence_sent: float = -1e9


@dataclass
class _Peer:
    heard: float
    down: bool
    current_epoch: int


@dataclass
class _Primary:
    settings: PrimarySettings
    insts: dict[Address, _Inst] = field(default_factory=dict)
    peers: dict[str, _Peer] = field(default_factory=dict)
    state: str = "none"
    epoch: int = 0
    votes: set[str] = field(default_factory=set)
    deadline: float = 0.0
    candidate: Address | None = None
    old: Address | None = None
    last_attempt: float = -1e9
    primary_replid: str = ""
    leader: str = ""
    fence_until: float = 0.0  # state "fence-wait": promote once the old primary's lease is out


class ToyWatcher:
    def __init__(
        self, settings: WatcherSettings, durable: DurableState, now: float, bugs: frozenset[str] = frozenset()
    ):
        self.s = settings
        self.bugs = bugs
        self._durable = durable
        self.now = now
        self.last_tick = now
        self.hold_until: float | None = None
        self.last_gossip = -1e9
        self.ps = {p.name: _Primary(p) for p in settings.primaries}
        self.jitter = (zlib.crc32(settings.name.encode()) % 1000) / 1000.0

    # -- helpers ----------------------------------------------------------------------------

    @property
    def durable(self) -> DurableState:
        return self._durable

    def _d(self, name: str) -> PrimaryDurable:
        return self._durable.get(name)

    def _set(self, name: str, out: list[Action], **changes: object) -> None:
        new = replace(self._d(name), **changes)  # type: ignore[arg-type]
        self._durable = DurableState({**self._durable.primaries, name: new})
        if "no-persist" in self.bugs:
            return
        if out and type(out[0]) is PersistState:
            out[0] = PersistState(self._durable)
        else:
            out.insert(0, PersistState(self._durable))

    def _addr(self, p: _Primary) -> Address:
        return self._d(p.settings.name).address or p.settings.address

    def _inst(self, p: _Primary, addr: Address) -> _Inst:
        inst = p.insts.get(addr)
        if inst is None:
            inst = p.insts[addr] = _Inst(last_ok=self.now)
        return inst

    def _sdown(self, p: _Primary, addr: Address) -> bool:
        inst = self._inst(p, addr)
        if self.now - inst.last_ok > p.settings.down_after:
            return True
        cd = p.settings.crash_detect
        return bool(cd and inst.hard_since is not None and self.now - inst.hard_since >= cd)

    def _in_hold(self) -> bool:
        return self.hold_until is not None and self.now < self.hold_until

    def _gossip(self) -> Gossip:
        items = []
        for name, p in self.ps.items():
            d = self._d(name)
            items.append(
                PrimaryGossip(
                    name=name,
                    says_down=self._sdown(p, self._addr(p)) and not self._in_hold(),
                    current_epoch=d.current_epoch,
                    config_epoch=d.config_epoch,
                    address=self._addr(p),
                    voted_epoch=d.voted_epoch,
                    voted_for=d.voted_for,
                    leading_epoch=p.epoch if p.state != "none" else 0,
                )
            )
        return Gossip(sender=self.s.name, in_hold=self._in_hold(), primaries=tuple(items))

    # -- events -----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        self.now = event.now
        out: list[Action] = []
        t = type(event)
        if t is Tick:
            gap = self.now - self.last_tick
            self.last_tick = self.now
            if gap < 0 or gap > self.s.hold_trigger:
                self.hold_until = self.now + self.s.hold_duration
                out.append(Publish("+tilt", "#tilt mode entered"))
            for p in self.ps.values():
                self._tick(p, out)
            if self.now - self.last_gossip >= self.s.gossip_period:
                self.last_gossip = self.now
                out.append(SendGossip(self._gossip()))
        elif t is ProbeReply or t is ProbeFailed:
            assert isinstance(event, ProbeReply | ProbeFailed)
            p = self.ps[event.primary]
            inst = self._inst(p, event.address)
            inst.probing = False
            if isinstance(event, ProbeReply):
                inst.last_ok = self.now
                inst.hard_since = None
            elif event.kind.is_hard and inst.hard_since is None:
                inst.hard_since = self.now
        elif t is InfoReply or t is InfoFailed:
            assert isinstance(event, InfoReply | InfoFailed)
            p = self.ps[event.primary]
            inst = self._inst(p, event.address)
            inst.querying = False
            if isinstance(event, InfoReply):
                inst.info = event.info
                inst.info_at = self.now
                s = p.settings
                if (
                    s.fencing
                    and not event.info.fence_configured
                    and self.now - inst.fence_sent >= FENCE_RESEND
                ):
                    inst.fence_sent = self.now
                    out.append(Fence(s.name, event.address, s.fence_min_replicas, s.fence_max_lag))
                if event.address == self._addr(p) and event.info.role is Role.PRIMARY:
                    p.primary_replid = event.info.replid
                    for link in event.info.replicas:
                        self._inst(p, link.address)
        elif t is GossipReceived:
            assert isinstance(event, GossipReceived)
            self._on_gossip(event.gossip, out)
        elif t is VoteRequested:
            assert isinstance(event, VoteRequested)
            self._on_vote_request(event.request, out)
        elif t is VoteReplied:
            assert isinstance(event, VoteReplied)
            self._on_vote_reply(event.reply, out)
        elif t is PromoteDone:
            assert isinstance(event, PromoteDone)
            self._on_promoted(event, out)
        elif t is FailoverCommand:
            assert isinstance(event, FailoverCommand)
            p = self.ps[event.primary]
            if p.state == "none":
                self._start_election(p, out, forced=True)
        else:
            assert t is ReplicaOfDone
        return out

    def _tick(self, p: _Primary, out: list[Action]) -> None:
        s = p.settings
        name = s.name
        primary = self._addr(p)
        self._inst(p, primary)
        for addr, inst in list(p.insts.items()):
            if not inst.probing and self.now - inst.last_probe >= s.ping_period:
                inst.probing = True
                inst.last_probe = self.now
                out.append(Probe(name, addr, timeout=s.ping_period))
            if not inst.querying and self.now - inst.last_query >= s.info_period:
                inst.querying = True
                inst.last_query = self.now
                out.append(QueryInfo(name, addr, timeout=s.info_period))
        if self._in_hold():
            return
        sdown = self._sdown(p, primary)
        if p.state == "election" and self.now > p.deadline:
            p.state = "none"
            out.append(Publish("-failover-abort-not-elected", f"master {name} {primary.host} {primary.port}"))
        if p.state == "promoting" and self.now > p.deadline:
            p.state = "none"
        if p.state == "fence-wait" and self.now >= p.fence_until:
            self._select_and_promote(p, out)
        if p.state == "none" and sdown:
            fresh = [x for x in p.peers.values() if x.down and self.now - x.heard <= self.s.opinion_ttl]
            if (
                1 + len(fresh) >= s.quorum
                and self.now - p.last_attempt >= s.min_failover_interval + self.jitter
            ):
                out.append(
                    Publish("+odown", f"master {name} {primary.host} {primary.port} #quorum {1 + len(fresh)}")
                )
                self._start_election(p, out, forced=False)
        if p.state == "none" and not sdown:
            for addr, inst in p.insts.items():
                info = inst.info
                if addr == primary or info is None or self.now - inst.info_at > 2 * s.info_period:
                    continue
                wrong = info.role is Role.PRIMARY or info.master != primary
                if wrong and not self._sdown(p, addr):
                    if inst.stray_since is None:
                        inst.stray_since = self.now
                    elif self.now - inst.stray_since >= s.convert_after:
                        inst.stray_since = None
                        d = self._d(name)
                        out.append(ReplicaOf(name, addr, primary, d.config_epoch, timeout=1.0))
                else:
                    inst.stray_since = None

    def _start_election(self, p: _Primary, out: list[Action], forced: bool) -> None:
        name = p.settings.name
        d = self._d(name)
        epoch = d.current_epoch + 1
        self._set(name, out, current_epoch=epoch, voted_epoch=epoch, voted_for=self.s.name)
        p.state = "election"
        p.epoch = epoch
        p.votes = {self.s.name}
        p.deadline = self.now + self.s.election_timeout
        p.last_attempt = self.now
        p.old = self._addr(p)
        out.append(Publish("+new-epoch", str(epoch)))
        out.append(Publish("+try-failover", f"master {name} {p.old.host} {p.old.port}"))
        out.append(RequestVotes(VoteRequest(self.s.name, name, epoch, forced)))
        self._maybe_won(p, out)

    def _on_vote_request(self, req: VoteRequest, out: list[Action]) -> None:
        p = self.ps.get(req.primary)
        if p is None:
            return
        name = req.primary
        d = self._d(name)
        if req.epoch > d.current_epoch:
            self._set(name, out, current_epoch=req.epoch)
            d = self._d(name)
        fresh = req.epoch > d.voted_epoch or (req.epoch == d.voted_epoch and d.voted_for == req.sender)
        if "double-vote" in self.bugs:
            fresh = req.epoch >= d.voted_epoch
        alive_ok = req.forced or self._sdown(p, self._addr(p)) or "vote-while-up" in self.bugs
        granted = fresh and alive_ok and req.epoch >= d.current_epoch
        if granted:
            self._set(name, out, voted_epoch=req.epoch, voted_for=req.sender)
            out.append(Publish("+vote-for-leader", f"{req.sender} {req.epoch}"))
            p.last_attempt = self.now
        d = self._d(name)
        out.append(
            SendVoteReply(
                req.sender,
                VoteReply(
                    self.s.name,
                    name,
                    req.epoch,
                    granted,
                    d.voted_for if d.voted_epoch == req.epoch else "",
                    d.current_epoch,
                ),
            )
        )

    def _on_vote_reply(self, reply: VoteReply, out: list[Action]) -> None:
        p = self.ps.get(reply.primary)
        if p is None:
            return
        if reply.current_epoch > self._d(reply.primary).current_epoch:
            self._set(reply.primary, out, current_epoch=reply.current_epoch)
        if p.state == "election" and reply.epoch == p.epoch and reply.granted:
            p.votes.add(reply.sender)
            self._maybe_won(p, out)

    def _maybe_won(self, p: _Primary, out: list[Action]) -> None:
        need = 1 if "one-vote-wins" in self.bugs else max(self.s.majority, p.settings.quorum)
        if p.state != "election" or len(p.votes) < need:
            return
        name = p.settings.name
        old = p.old or self._addr(p)
        out.append(Publish("+elected-leader", f"master {name} {old.host} {old.port}"))
        p.leader = self.s.name
        wait = self._lease_left(p, old)
        if wait > 0 and "no-lease-wait" not in self.bugs:
            p.state = "fence-wait"
            p.fence_until = self.now + wait
            out.append(Publish("+fence-wait", f"master {name} {old.host} {old.port} {wait:.1f}s"))
            return
        self._select_and_promote(p, out)

    def _lease_left(self, p: _Primary, old: Address) -> float:
        """With fencing: how long the unreachable old primary may still take writes (the
        latest contact with it that we or a replica we read can show, plus the lease)."""
        s = p.settings
        inst = self._inst(p, old)
        if not s.fencing or inst.hard_since is not None:
            return 0.0  # refused: nothing listens there
        last = inst.last_ok
        for addr, r in p.insts.items():
            info = r.info
            if addr == old or info is None or info.role is not Role.REPLICA or info.master != old:
                continue
            if info.link_up:
                last = max(last, r.info_at - info.last_io_seconds)
            elif info.link_down_seconds > 0:
                last = max(last, r.info_at - info.link_down_seconds)
        return max(0.0, last + s.fence_lease - self.now)

    def _select_and_promote(self, p: _Primary, out: list[Action]) -> None:
        name = p.settings.name
        old = p.old or self._addr(p)
        cands = []
        for addr, inst in p.insts.items():
            info = inst.info
            if addr == old or info is None or info.role is not Role.REPLICA or self._sdown(p, addr):
                continue
            if self.now - inst.info_at > 3 * p.settings.info_period:
                continue
            if info.priority == 0 and "priority-zero" not in self.bugs:
                continue
            if p.primary_replid and info.replid != p.primary_replid:
                continue
            cands.append((info.offset, info.run_id, addr))
        if not cands:
            p.state = "none"
            out.append(Publish("-failover-abort-no-good-slave", f"master {name} {old.host} {old.port}"))
            return
        cands.sort(key=lambda c: (-c[0], c[1]))
        pick = cands[-1] if "stale-pick" in self.bugs else cands[0]
        if "promote-primary" in self.bugs:
            pick = (0, "", old)  # "promotes" the primary it replaces, still a master
        p.candidate = pick[2]
        p.state = "promoting"
        p.deadline = self.now + p.settings.failover_timeout
        out.append(Publish("+selected-slave", f"slave {pick[2]} @ {name} {old.host} {old.port}"))
        out.append(Promote(name, pick[2], p.epoch, timeout=2.0))

    def _on_promoted(self, ev: PromoteDone, out: list[Action]) -> None:
        p = self.ps[ev.primary]
        if p.state != "promoting" or ev.epoch != p.epoch or not ev.role_ok:
            if p.state == "promoting" and ev.epoch == p.epoch:
                p.state = "none"
            return
        name = ev.primary
        old = p.old or self._addr(p)
        if ev.epoch <= self._d(name).config_epoch:
            p.state = "none"  # a newer failover was committed meanwhile (e.g. during a fence wait)
            return
        self._set(name, out, config_epoch=ev.epoch, address=ev.address)
        p.state = "none"
        p.primary_replid = ""
        out.append(Publish("+promoted-slave", f"slave {ev.address} @ {name}"))
        out.append(
            Publish("+switch-master", f"{name} {old.host} {old.port} {ev.address.host} {ev.address.port}")
        )
        for addr in p.insts:
            if addr != ev.address:
                out.append(ReplicaOf(name, addr, ev.address, ev.epoch, timeout=1.0))
        out.append(SendGossip(self._gossip()))

    def _on_gossip(self, g: Gossip, out: list[Action]) -> None:
        for pg in g.primaries:
            p = self.ps.get(pg.name)
            if p is None:
                continue
            p.peers[g.sender] = _Peer(self.now, pg.says_down and not g.in_hold, pg.current_epoch)
            d = self._d(pg.name)
            if pg.current_epoch > d.current_epoch:
                self._set(pg.name, out, current_epoch=pg.current_epoch)
                d = self._d(pg.name)
            if pg.config_epoch > d.config_epoch:
                if p.state == "fence-wait":
                    p.state = "none"  # someone else finished a failover while we waited
                old = self._addr(p)
                self._set(pg.name, out, config_epoch=pg.config_epoch, address=pg.address)
                p.primary_replid = ""
                if old != pg.address:
                    out.append(
                        Publish(
                            "+switch-master",
                            f"{pg.name} {old.host} {old.port} {pg.address.host} {pg.address.port}",
                        )
                    )

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        views = []
        for name, p in self.ps.items():
            d = self._d(name)
            addr = self._addr(p)

            def iv(a: Address, p: _Primary = p) -> InstanceView:
                inst = self._inst(p, a)
                info = inst.info
                return _build(
                    InstanceView,
                    address=a,
                    role=info.role if info else Role.UNKNOWN,
                    run_id=info.run_id if info else "",
                    sdown=self._sdown(p, a),
                    last_ok=inst.last_ok,
                    last_probe_sent=inst.last_probe,
                    last_error="",
                    offset=info.offset if info else 0,
                    priority=info.priority if info else 100,
                    link_up=info.link_up if info else False,
                    link_down_seconds=0.0,
                    master=info.master if info else None,
                    replid=info.replid if info else "",
                    announced=True,
                )

            views.append(
                _build(
                    PrimaryView,
                    name=name,
                    address=addr,
                    config_epoch=d.config_epoch,
                    current_epoch=d.current_epoch,
                    primary=iv(addr),
                    replicas=tuple(iv(a) for a in p.insts if a != addr),
                    peers=(),
                    sdown=self._sdown(p, addr),
                    odown=False,
                    odown_votes=0,
                    quorum=p.settings.quorum,
                    failover_state=p.state,
                    failover_epoch=p.epoch,
                    leader=p.leader,
                    settings=p.settings,
                )
            )
        return Snapshot(self.s.name, self.now, self._in_hold(), self.hold_until, tuple(views))


def _build(cls: type[T], **values: Any) -> T:
    """Construct a snapshot record; fields the toy knows nothing about (the contract grows)
    are left None."""
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if (
            f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            values[f.name] = None
    return cls(**values)


def toy_factory(bugs: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    def make(settings: WatcherSettings, durable: DurableState, now: float) -> ToyWatcher:
        return ToyWatcher(settings, durable, now, bugs)

    return make
