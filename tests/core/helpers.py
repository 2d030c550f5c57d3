"""Helpers for the core unit tests: a watcher that checks the durability contract of every
batch it returns, and a one-watcher rig whose Redis instances answer at once while the test
scripts the peers by hand.

Nothing here mocks or patches the core: `CheckedWatcher` calls the real `Watcher.handle` and
only inspects its output; `Rig` plays the executor the actions module describes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from haredis.core.actions import (
    Action,
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
    FailureKind,
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
    PrimarySettings,
    PrimaryView,
    ReplicaLink,
    Role,
    WatcherSettings,
)
from haredis.core.watcher import Watcher

NAME = "mymaster"
P = Address("10.0.0.1", 6379)
R1 = Address("10.0.0.2", 6379)
R2 = Address("10.0.0.3", 6379)
# Rig.gossip's default echo: the stamp of the watcher's latest gossip, as a live peer sends.
LATEST_STAMP = -1


def primary_settings(**overrides: object) -> PrimarySettings:
    base = PrimarySettings(name=NAME, address=P, quorum=2, down_after=1.0, min_failover_interval=5.0)
    return replace(base, **overrides)  # type: ignore[arg-type]


def watcher_settings(
    name: str = "w1", electorate: int = 3, primary: PrimarySettings | None = None, **overrides: object
) -> WatcherSettings:
    ws = WatcherSettings(name=name, electorate=electorate, primaries=(primary or primary_settings(),))
    return replace(ws, **overrides)  # type: ignore[arg-type]


class ContractViolation(AssertionError):
    pass


def check_batch(
    name: str, disk: DurableState, before: DurableState, after: DurableState, actions: list[Action]
) -> DurableState:
    """Check one batch against the executor contract of actions.py; return the disk after it.

    * A batch that changes durable state starts with exactly one PersistState holding the new
      state; a batch that changes nothing persists nothing.
    * Executed in order (PersistState being a barrier), nothing is sent that the disk does not
      already hold: a granted vote, our own candidacy, the epochs in our gossip.
    """
    persists = [i for i, a in enumerate(actions) if isinstance(a, PersistState)]
    if after != before:
        if persists != [0]:
            raise ContractViolation(f"durable state changed but PersistState at {persists}: {actions}")
        first = actions[0]
        assert isinstance(first, PersistState)
        if first.state != after:
            raise ContractViolation(f"PersistState {first.state} is not the new state {after}")
    elif persists:
        # A redundant write is harmless, but it must still lead and hold the current state.
        first = actions[0]
        if persists != [0] or not isinstance(first, PersistState) or first.state != after:
            raise ContractViolation(f"nothing changed, yet PersistState at {persists}: {actions}")
    for action in actions:
        match action:
            case PersistState(state):
                disk = state
            case SendVoteReply(to, reply) if reply.granted:
                on_disk = disk.get(reply.primary)
                if (on_disk.voted_epoch, on_disk.voted_for) != (reply.epoch, to):
                    raise ContractViolation(f"vote {reply} to {to} sent but the disk holds {on_disk}")
            case RequestVotes(request):
                on_disk = disk.get(request.primary)
                if (on_disk.voted_epoch, on_disk.voted_for) != (request.epoch, name):
                    raise ContractViolation(f"candidacy {request} sent but the disk holds {on_disk}")
            case SendGossip(gossip):
                for view in gossip.primaries:
                    on_disk = disk.get(view.name)
                    if (
                        view.current_epoch > on_disk.current_epoch
                        or view.config_epoch > on_disk.config_epoch
                        or view.voted_epoch > on_disk.voted_epoch
                    ):
                        raise ContractViolation(f"gossip {view} ahead of the disk {on_disk}")
            case Publish("+switch-master", message):
                # "<name> <old host> <old port> <new host> <new port>": durable before visible.
                name_, _, _, host, port = message.split()
                on_disk = disk.get(name_)
                if on_disk.address != Address(host, int(port)) or on_disk.config_epoch < 1:
                    raise ContractViolation(
                        f"+switch-master {message} published but the disk holds {on_disk}"
                    )
            case _:
                pass
    return disk


class CheckedWatcher(Watcher):
    """The real Watcher, plus a check of every batch it returns (see `check_batch`).

    It assumes the executor runs every action it returns, so it tracks the disk itself."""

    def __init__(self, settings: WatcherSettings, durable: DurableState, now: float) -> None:
        super().__init__(settings, durable, now)
        self.disk = durable
        self.batches: list[list[Action]] = []

    def handle(self, event: Event) -> list[Action]:
        before = self.durable
        actions = super().handle(event)
        self.disk = check_batch(self.name, self.disk, before, self.durable, actions)
        self.batches.append(actions)
        return actions

    def reconfigure(self, settings: WatcherSettings) -> list[Action]:
        before = self.durable
        actions = super().reconfigure(settings)
        self.disk = check_batch(self.name, self.disk, before, self.durable, actions)
        self.batches.append(actions)
        return actions


def replica_info(master: Address = P, *, offset: int = 100, **overrides: object) -> InstanceInfo:
    base = InstanceInfo(
        role=Role.REPLICA,
        run_id="",
        replid="history-1",
        offset=offset,
        master=master,
        link_up=True,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def primary_info(
    replicas: tuple[Address, ...] = (R1, R2), *, offset: int = 100, **overrides: object
) -> InstanceInfo:
    base = InstanceInfo(
        role=Role.PRIMARY,
        run_id="",
        replid="history-1",
        offset=offset,
        replicas=tuple(ReplicaLink(a, offset, True) for a in replicas),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class FakeRedis:
    """One instance as the rig's executor sees it.

    mode: up | refused | hang | busy (PING gets BUSY; INFO still answers; commands fail).
    promote (when up): ok | unconfirmed (it happens, but ROLE does not confirm it) | refuse.
    """

    info: InstanceInfo
    mode: str = "up"
    promote: str = "ok"


@dataclass
class Rig:
    """One real (checked) Watcher, instant fake Redis instances, peers scripted by the test.

    Probe, INFO, Promote and ReplicaOf actions are answered 1 ms later (a hung instance times
    out after the action's timeout); messages to peers are only recorded in `sent`.
    """

    settings: WatcherSettings
    nodes: dict[Address, FakeRedis]
    durable: DurableState = field(default_factory=DurableState)
    now: float = 0.0
    watcher: CheckedWatcher = field(init=False)
    published: list[tuple[float, str, str]] = field(default_factory=list)
    sent: list[tuple[float, Action]] = field(default_factory=list)
    promotes: list[tuple[float, Address, int]] = field(default_factory=list)
    _queue: list[tuple[float, int, Event]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.watcher = CheckedWatcher(self.settings, self.durable, self.now)

    @classmethod
    def standard(cls, settings: WatcherSettings | None = None, *, now: float = 0.0) -> Rig:
        nodes = {
            P: FakeRedis(primary_info()),
            R1: FakeRedis(replica_info(offset=100, run_id="run-r1")),
            R2: FakeRedis(replica_info(offset=90, run_id="run-r2")),
        }
        return cls(settings or watcher_settings(), nodes, now=now)

    # -- driving
    def handle(self, event: Event) -> list[Action]:
        actions = self.watcher.handle(event)
        for action in actions:
            self._execute(action)
        return actions

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Tick every `step` (delivering due answers first) until `seconds` have passed."""
        end = round(self.now + seconds, 9)
        while self.now < end - 1e-9:
            target = round(min(self.now + step, end), 9)
            self._deliver_until(target)
            self.now = target
            self.handle(Tick(now=self.now))

    def run_until(self, done: Callable[[], object], limit: float = 10.0, step: float = 0.05) -> float:
        """Tick until `done()` is truthy; fail if that takes more than `limit` seconds."""
        end = self.now + limit
        while not done():
            if self.now >= end:
                raise TimeoutError(f"condition not reached within {limit}s (now={self.now})")
            self.run(step, step)
        return self.now

    def crash_primary(self) -> None:
        """Kill the primary and tick until our own candidacy goes out (peers must say down)."""
        self.nodes[P].mode = "refused"
        self.run_until(lambda: self.vote_requests(), limit=5.0)

    def _deliver_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            at, _, event = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            self.handle(replace(event, now=self.now))

    def _later(self, delay: float, event: Event) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), event))

    def restart(self) -> None:
        """A new process: a fresh Watcher from what is on disk; in-flight answers are lost."""
        self._queue.clear()
        self.watcher = CheckedWatcher(self.settings, self.watcher.disk, self.now)

    # -- scripted peers and the operator
    def gossip(
        self,
        sender: str,
        *,
        says_down: bool = False,
        current_epoch: int = 0,
        config_epoch: int = 0,
        address: Address = P,
        in_hold: bool = False,
        leading_epoch: int = 0,
        echo_ms: int | None = LATEST_STAMP,
    ) -> list[Action]:
        view = PrimaryGossip(
            name=NAME,
            says_down=says_down,
            current_epoch=current_epoch,
            config_epoch=config_epoch,
            address=address,
            leading_epoch=leading_epoch,
        )
        # A peer echoes the latest send stamp it has had from us (None: it has had none); by
        # default, like a live peer on a working network, the stamp of our latest gossip.
        if echo_ms == LATEST_STAMP:
            sent = self.gossips()
            echo_ms = sent[-1].sent_ms if sent else None
        echoes = ((self.watcher.name, echo_ms),) if echo_ms is not None else ()
        gossip = Gossip(sender, in_hold, (view,), sent_ms=int(self.now * 1000), echoes=echoes)
        return self.handle(GossipReceived(now=self.now, gossip=gossip))

    def request_vote(self, sender: str, epoch: int, *, forced: bool = False) -> VoteReply:
        actions = self.handle(VoteRequested(now=self.now, request=VoteRequest(sender, NAME, epoch, forced)))
        replies = [a.reply for a in actions if isinstance(a, SendVoteReply)]
        assert len(replies) == 1, actions
        return replies[0]

    def grant(self, voter: str, epoch: int) -> list[Action]:
        reply = VoteReply(voter, NAME, epoch, True, self.watcher.name, epoch)
        return self.handle(VoteReplied(now=self.now, reply=reply))

    def command_failover(self) -> list[Action]:
        return self.handle(FailoverCommand(now=self.now, primary=NAME))

    # -- observing
    def view(self) -> PrimaryView:
        view = self.watcher.snapshot().primary(NAME)
        assert view is not None
        return view

    def events(self, channel: str) -> list[tuple[float, str, str]]:
        return [p for p in self.published if p[1] == channel]

    def vote_requests(self) -> list[VoteRequest]:
        return [a.request for _, a in self.sent if isinstance(a, RequestVotes)]

    def gossips(self) -> list[Gossip]:
        return [a.gossip for _, a in self.sent if isinstance(a, SendGossip)]

    # -- the executor
    def _execute(self, action: Action) -> None:
        now = self.now
        match action:
            case Probe(primary, address, timeout):
                node = self.nodes.get(address)
                mode = node.mode if node is not None else "refused"
                if mode == "up":
                    self._later(0.001, ProbeReply(now=now, primary=primary, address=address, reply="PONG"))
                elif mode == "busy":
                    self._later(0.001, ProbeReply(now=now, primary=primary, address=address, reply="BUSY"))
                elif mode == "hang":
                    self._later(
                        timeout,
                        ProbeFailed(now=now, primary=primary, address=address, kind=FailureKind.TIMEOUT),
                    )
                else:
                    self._later(
                        0.001,
                        ProbeFailed(now=now, primary=primary, address=address, kind=FailureKind.REFUSED),
                    )
            case QueryInfo(primary, address, timeout, freeze):
                node = self.nodes.get(address)
                if node is not None and node.mode in ("up", "busy"):
                    # A freeze is answered with the INFO from before it too (this rig's nodes
                    # do not replicate, so before and after are the same).
                    before = node.info if freeze else None
                    reply = InfoReply(
                        now=now, primary=primary, address=address, info=node.info, before_freeze=before
                    )
                    self._later(0.001, reply)
                else:
                    delay = timeout if node is not None and node.mode == "hang" else 0.001
                    self._later(delay, InfoFailed(now=now, primary=primary, address=address))
            case Promote(primary, address, epoch, _):
                node = self.nodes[address]
                happened = node.mode == "up" and node.promote in ("ok", "unconfirmed")
                if happened:
                    node.info = replace(node.info, role=Role.PRIMARY, master=None, replicas=())
                    self.promotes.append((now, address, epoch))
                ok = happened and node.promote == "ok"
                self._later(
                    0.001, PromoteDone(now=now, primary=primary, address=address, epoch=epoch, role_ok=ok)
                )
            case ReplicaOf(primary, address, target, epoch, _):
                node = self.nodes[address]
                ok = node.mode == "up"
                if ok:
                    node.info = replace(node.info, role=Role.REPLICA, master=target, replicas=())
                self._later(
                    0.001,
                    ReplicaOfDone(
                        now=now, primary=primary, address=address, target=target, epoch=epoch, ok=ok
                    ),
                )
            case Publish(channel, message):
                self.published.append((now, channel, message))
            case SendGossip() | RequestVotes() | SendVoteReply():
                self.sent.append((now, action))
            case PersistState():
                pass
