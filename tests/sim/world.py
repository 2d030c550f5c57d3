"""One simulated world for one seed: composes the clock, the network, the Redis nodes, the
watcher processes, the fault schedule, the trace and the invariant checker, and runs it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

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
    Switchover,
    Unfreeze,
)
from haredis.core.events import (
    FailureKind,
    GossipReceived,
    InfoFailed,
    InfoReply,
    ProbeFailed,
    ProbeReply,
    PromoteDone,
    ReplicaOfDone,
    SwitchoverDone,
    VoteReplied,
    VoteRequested,
)
from haredis.core.model import Address, Role

from . import config as config_mod
from .config import SimConfig
from .faults import FaultInjector
from .fencing import FencedPromote, Step, send_fence
from .history import History
from .invariants import Checker, Violation
from .network import Network
from .redis_node import INFO, PING, PROMOTE, REATTACH, REPLICAOF, SWITCHOVER, FakeRedis, Lineage, Request
from .scheduler import Scheduler
from .trace import ACTION_RENDER, Trace, generic_record
from .watcher_host import Builder, WatcherFactory, WatcherHost

# The executor's answer to a Switchover may come this long after FAILOVER's own TIMEOUT (it
# waits for FAILOVER to give up, then answers).
SWITCHOVER_GRACE = 1.0
UNFREEZE_TIMEOUT = 2.0  # the runtime's timeout for a best-effort reattach (_UNFREEZE_TIMEOUT)


def _ignore_reply(req: Request, ok: bool, payload: Any) -> None:
    """Unfreeze has no answer event."""


def default_factory() -> WatcherFactory:
    from haredis.core.watcher import Watcher  # the real core

    return Watcher


@dataclass(frozen=True, slots=True)
class Result:
    seed: int
    config: str
    violations: tuple[Violation, ...]
    sim_seconds: float
    trace_hash: str
    events: int
    timeline: tuple[str, ...]
    failovers: int
    faults: int
    coverage: tuple[tuple[str, int], ...] = ()


class World:
    def __init__(
        self,
        seed: int,
        config: SimConfig | None = None,
        factory: WatcherFactory | None = None,
        *,
        stop_on_violation: bool = False,
        adjust: Callable[[SimConfig], SimConfig] | None = None,
    ) -> None:
        """`adjust` changes the generated config (controls such as ignore_freeze) after the
        seed's generator ran, so the rest of the run draws exactly what it would have."""
        self.seed = seed
        self.rng = rng = random.Random(seed)
        cfg = config if config is not None else config_mod.generate(seed, rng)
        self.config = cfg = adjust(cfg) if adjust is not None else cfg
        self.sched = Scheduler()
        self.history = History()
        self.trace = Trace()
        self.lineage = Lineage()
        self.network = Network(
            self.sched,
            rng,
            self.history,
            peer_delay=cfg.peer_delay,
            peer_jitter=cfg.peer_jitter,
            redis_delay=cfg.redis_delay,
            redis_jitter=cfg.redis_jitter,
        )
        self.write_rate = cfg.write_rate
        self.stop_on_violation = stop_on_violation
        self.checker = Checker(self)
        self.failovers = 0
        # For scenario tests: every Promote (time, watcher, epoch, node, true offsets of all
        # nodes) and every Publish (time, watcher, channel, message).
        self.promotions: list[tuple[float, str, int, str, dict[str, int]]] = []
        self.publishes: list[tuple[float, str, str, str]] = []
        self._rid = 0
        root = self.lineage.new(None)
        primary = cfg.nodes[0].address
        self.nodes: list[FakeRedis] = [
            FakeRedis(self, spec, root, None if i == 0 else primary) for i, spec in enumerate(cfg.nodes)
        ]
        self._node_by_host: dict[str, FakeRedis] = {n.address.host: n for n in self.nodes}
        self.node_by_name: dict[str, FakeRedis] = {n.name: n for n in self.nodes}
        self.factory = factory if factory is not None else default_factory()
        self.hosts: dict[str, WatcherHost] = {}
        for i, name in enumerate(cfg.watchers):
            self.hosts[name] = WatcherHost(self, name, i, cfg.watcher_settings(name), self.factory)
        self.host_list = list(self.hosts.values())
        self.faults = FaultInjector(self)
        self._dispatch = {
            Probe: self._x_probe,
            QueryInfo: self._x_info,
            SendGossip: self._x_gossip,
            PersistState: self._x_persist,
            RequestVotes: self._x_request_votes,
            SendVoteReply: self._x_vote_reply,
            Promote: self._x_promote,
            ReplicaOf: self._x_replicaof,
            Switchover: self._x_switchover,
            Publish: self._x_publish,
            Fence: self._x_fence,
            Unfreeze: self._x_unfreeze,
        }

    # -- running ----------------------------------------------------------------------------

    def run(self) -> Result:
        cfg = self.config
        self.faults.schedule()
        stop = (lambda: bool(self.checker.violations)) if self.stop_on_violation else None
        self.sched.run_until(cfg.end, stop)
        if not (self.stop_on_violation and self.checker.violations):
            self.checker.final()
        return Result(
            seed=self.seed,
            config=cfg.describe(),
            violations=tuple(self.checker.violations),
            sim_seconds=self.sched.now,
            trace_hash=self.trace.digest(),
            events=len(self.trace.records),
            timeline=tuple(self.trace.timeline()),
            failovers=self.failovers,
            faults=self.faults.injected,
            coverage=tuple(sorted(self.checker.coverage.items())),
        )

    def note(self, who: str, text: str) -> None:
        self.trace.note(self.sched.now, who, text)

    # -- topology helpers -------------------------------------------------------------------

    def node_at(self, address: Address | None) -> FakeRedis | None:
        """The node listening at `address` (keyed by host: hashing Address is slow)."""
        if address is None:
            return None
        node = self._node_by_host.get(address.host)
        return node if node is not None and node.address.port == address.port else None

    def describe_node(self, node: FakeRedis) -> str:
        return f"{node.name}({node.address})"

    def current_primary(self) -> FakeRedis | None:
        """The live node with role master that most live replicas follow."""
        best: FakeRedis | None = None
        best_count = -1
        for node in self.nodes:
            if not node.alive or node.role is not Role.PRIMARY:
                continue
            count = sum(1 for n in self.nodes if n.alive and n.master == node.address)
            if count > best_count:
                best, best_count = node, count
        return best

    def on_role_change(self, node: FakeRedis) -> None:
        if node.role is Role.REPLICA:
            self.checker.write_fence.on_demoted(node)
        role = "master" if node.role is Role.PRIMARY else f"replica of {node.master}"
        self.note(node.name, f"role -> {role} (replid {node.replid[:4]}, offset {node.offset()})")

    # -- executing actions ------------------------------------------------------------------

    def execute(self, host: WatcherHost, action: Action) -> None:
        kind = type(action)
        self.trace.records.append(
            (self.sched.now, host.name, ACTION_RENDER.get(kind, generic_record)(action))
        )
        handler = self._dispatch.get(kind)
        if handler is None:
            self.note(host.name, f"UNKNOWN ACTION {action!r} (the simulator does not model it yet)")
            return
        handler(host, action)

    def _x_persist(self, host: WatcherHost, action: Any) -> None:
        self.checker.on_persist(host, action.state)
        host.disk = action.state

    def _x_probe(self, host: WatcherHost, action: Any) -> None:
        self._redis(host, action, PING)

    def _x_info(self, host: WatcherHost, action: Any) -> None:
        if getattr(action, "freeze", False):
            self.checker.wait_acks.on_freeze_sent(host)
        self._redis(host, action, INFO)

    def _x_unfreeze(self, host: WatcherHost, action: Any) -> None:
        """REPLICAOF the old primary again (the runtime's reattach), best effort."""
        node = self.node_at(action.address)
        target = self.node_at(action.target)
        self.note(
            host.name,
            f"UNFREEZE {node.name if node else '?'} -> {target.name if target else '?'} {action.target}",
        )
        step = Step(action.primary, action.address, UNFREEZE_TIMEOUT, target=action.target)
        self.send_step(host, step, REATTACH, _ignore_reply)

    def _x_promote(self, host: WatcherHost, action: Any) -> None:
        self.failovers += 1
        node = self.node_at(action.address)
        offsets = {n.name: n.offset() for n in self.nodes}
        self.promotions.append((self.sched.now, host.name, action.epoch, node.name if node else "?", offsets))
        old = self.node_at(action.fence_old)
        fence = f" (fence old {old.name if old else '?'} {action.fence_pause:g}s)" if action.fence_old else ""
        self.note(
            host.name, f"PROMOTE {node.name if node else '?'} {action.address} epoch {action.epoch}{fence}"
        )
        self.checker.on_promote(host, action)
        if action.fence_old is not None:
            FencedPromote(self, host, action).start()
        else:
            self._redis(host, action, PROMOTE)

    def _x_fence(self, host: WatcherHost, action: Any) -> None:
        send_fence(self, host, action)

    def send_step(self, host: WatcherHost, step: Step, kind: int, on_done: Any) -> None:
        """One command of the executor's own (fencing), answered to `on_done(req, ok, payload)`."""
        self._redis(host, step, kind, on_done)

    def _x_replicaof(self, host: WatcherHost, action: Any) -> None:
        node = self.node_at(action.address)
        target = self.node_at(action.target)
        self.note(
            host.name,
            f"REPLICAOF {node.name if node else '?'} -> {target.name if target else '?'} {action.target} "
            f"epoch {action.epoch}",
        )
        self._redis(host, action, REPLICAOF)

    def _x_switchover(self, host: WatcherHost, action: Any) -> None:
        old = self.node_at(action.old)
        target = self.node_at(action.target)
        self.note(
            host.name,
            f"SWITCHOVER {old.name if old else '?'} -> {target.name if target else '?'} epoch {action.epoch}"
            + (" FORCE" if action.force else ""),
        )
        self.checker.on_switchover(host, action)
        self._redis(host, action, SWITCHOVER)

    def _x_publish(self, host: WatcherHost, action: Any) -> None:
        self.publishes.append((self.sched.now, host.name, action.channel, action.message))
        self.note(host.name, f"{action.channel} {action.message}")
        self.checker.on_publish(host, action)

    def _x_gossip(self, host: WatcherHost, action: Any) -> None:
        self.checker.on_gossip(host, action.gossip)
        builder = partial(GossipReceived, gossip=action.gossip)
        self._to_peers(host, action.to, builder)

    def _x_request_votes(self, host: WatcherHost, action: Any) -> None:
        request = action.request
        self.checker.on_request_votes(host, request)
        self.note(
            host.name,
            f"asks for votes: {request.primary} epoch {request.epoch}"
            + (" (forced)" if request.forced else ""),
        )
        self._to_peers(host, None, partial(VoteRequested, request=request))

    def _x_vote_reply(self, host: WatcherHost, action: Any) -> None:
        reply = action.reply
        self.checker.on_vote_reply(host, action)
        verdict = "grants" if reply.granted else "refuses"
        self.note(
            host.name,
            f"{verdict} vote to {action.to}: {reply.primary} epoch {reply.epoch} "
            f"(voted for {reply.voted_for or '-'})",
        )
        self._to_peers(host, action.to, partial(VoteReplied, reply=reply))

    def _to_peers(self, host: WatcherHost, to: str | None, builder: Builder) -> None:
        send = self.network.send_peer
        if to is not None:
            if to in self.hosts and to != host.name:
                send(host.name, to, self._peer_arrive, to, builder)
            return
        for other in self.host_list:
            if other is not host:
                send(host.name, other.name, self._peer_arrive, other.name, builder)

    def _peer_arrive(self, to: str, builder: Builder) -> None:
        self.hosts[to].deliver(builder)

    # -- Redis requests ---------------------------------------------------------------------

    def _redis(self, host: WatcherHost, action: Any, kind: int, on_done: Any = None) -> None:
        """Send a command. A timeout is scheduled only when the reply cannot arrive before
        the deadline (lost, late, or the node is paused), which keeps the heap small."""
        self._rid += 1
        sched = self.sched
        now = sched.now
        node = self.node_at(action.old if kind == SWITCHOVER else action.address)
        req = Request(self._rid, host, action, kind, node, now)
        req.on_done = on_done
        if kind == SWITCHOVER:
            req.deadline += SWITCHOVER_GRACE
        if node is None:
            # Nothing listens at that address: the connection is refused.
            sched.after(self.config.redis_delay * 2, self._result, req, False, FailureKind.REFUSED)
            return
        delay = self.network.redis_delay_or_loss(host.name, node.name)
        if delay < 0 or now + delay >= req.deadline:
            self.arm_timeout(req)
        if delay >= 0:
            sched.after(delay, node.receive, req)  # it still runs, even after the deadline

    def arm_timeout(self, req: Request) -> None:
        if not req.timer:
            req.timer = True
            self.sched.at(req.deadline, self._timeout, req)

    def redis_reply(self, req: Request, node: FakeRedis, ok: bool, payload: Any) -> None:
        if req.done:
            return
        delay = self.network.redis_delay_or_loss(node.name, req.host.name)
        if delay < 0 or self.sched.now + delay >= req.deadline:
            self.arm_timeout(req)
        else:
            self.sched.after(delay, self._result, req, ok, payload)

    def _timeout(self, req: Request) -> None:
        self._result(req, False, FailureKind.TIMEOUT)

    def _seen_info(self, host: WatcherHost, req: Request, info: Any) -> None:
        """Keep the INFO replies a watcher got from a node since its offset last moved."""
        node = req.node
        assert node is not None
        self.checker.write_fence.on_info_read(host, node)
        entry = (self.sched.now, req.gen_at, info)
        seen = host.info_seen.get(node.name)
        if seen is None:
            host.info_seen[node.name] = [entry]
            return
        if seen[0][1] < node.last_change:
            seen = [e for e in seen if e[1] >= node.last_change]
            host.info_seen[node.name] = seen
        seen.append(entry)
        if len(seen) > 64:
            del seen[1:32]  # keep the earliest (first exact) and the latest

    def _result(self, req: Request, ok: bool, payload: Any) -> None:
        if req.done:
            return
        req.done = True
        host = req.host
        if host.incarnation != req.incarnation or not host.alive:
            return
        if req.on_done is not None:
            req.on_done(req, ok, payload)
            return
        a = req.action
        kind = req.kind
        builder: Builder
        if kind == PING:
            if ok:
                builder = partial(ProbeReply, primary=a.primary, address=a.address, reply=payload)
            else:
                builder = partial(
                    ProbeFailed, primary=a.primary, address=a.address, kind=payload, detail=payload.value
                )
        elif kind == INFO:
            if ok:
                info, before = payload if isinstance(payload, tuple) else (payload, None)
                if not host.paused:  # handed to the core now (a paused one gets it later)
                    self._seen_info(host, req, info)
                if before is None:
                    builder = partial(InfoReply, primary=a.primary, address=a.address, info=info)
                else:
                    builder = partial(
                        InfoReply, primary=a.primary, address=a.address, info=info, before_freeze=before
                    )
            else:
                builder = partial(InfoFailed, primary=a.primary, address=a.address, detail=payload.value)
        elif kind == PROMOTE:
            if ok:
                builder = partial(
                    PromoteDone, primary=a.primary, address=a.address, epoch=a.epoch, role_ok=payload
                )
            else:
                builder = partial(
                    PromoteDone,
                    primary=a.primary,
                    address=a.address,
                    epoch=a.epoch,
                    role_ok=False,
                    detail=payload.value,
                )
        elif kind == SWITCHOVER:
            role_ok, detail = payload if ok else (False, payload.value)
            builder = partial(
                SwitchoverDone,
                primary=a.primary,
                address=a.target,
                epoch=a.epoch,
                role_ok=role_ok,
                detail=detail,
            )
        elif ok:
            builder = partial(
                ReplicaOfDone,
                primary=a.primary,
                address=a.address,
                target=a.target,
                epoch=a.epoch,
                ok=payload,
                detail="" if payload else "ERR replicaof itself",
            )
        else:
            builder = partial(
                ReplicaOfDone,
                primary=a.primary,
                address=a.address,
                target=a.target,
                epoch=a.epoch,
                ok=False,
                detail=payload.value,
            )
        host.deliver(builder)


def run_seed(seed: int, factory: WatcherFactory | None = None, config: SimConfig | None = None) -> Result:
    return World(seed, config, factory).run()
