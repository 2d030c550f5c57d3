"""Invariant 13, write-fence: how long two nodes accept writes at once after a promotion.

Every change of a node's `accepts_writes()` is reported here. A split-brain interval is a
stretch of time during which two or more nodes accept writes. One that *began with a
promotion* (the node a Promote made master was the one whose writes opened it) is held to
`SLACK` seconds when fencing is on. Why that bound, and not the lease:

- an old primary the leader can reach is paused before the promotion (CLIENT PAUSE WRITE),
  so the overlap should be nil;
- one it cannot reach stops by itself at most max_lag + 2 s after the last ack it read
  (Redis's lag is whole seconds of its clock, and the good-replica count it acts on is
  refreshed by replicationCron once a second), while the leader waits fence_lease =
  max_lag + 1.5 s from the latest contact it can prove; what is left is the last 0.5 s of
  Redis's rounding, plus the replicas' own whole-second INFO fields and the simulated
  replication tick. SLACK = 1 s covers that.
- a bound such as fence_lease + 1 s would be vacuous: without any lease wait at all an
  isolated old primary already stops within max_lag + 2 s of the cut, and the promotion
  comes at least down_after after the cut, so no overlap could ever reach it.

Exceptions, the documented limits of fencing (README, "Fencing"), decided at the moment of
the promotion and counted in coverage: a replica the leader could not read (no INFO from it
received within FRESH_INFO) was still acking the old primary; or a replica whose link only
carries replica->primary (a one-way cut) was still acking it (its own INFO shows the primary
silent, yet its acks keep the lease alive until its repl-timeout); or the old primary
restarted without a config file (NodeSpec.config_file) and has not been fenced since: it
forgot the fence, and the watchers cannot reach it to set it again; or the old primary was
SIGSTOPped while its replicas still acked it and resumed (cut off) shortly before the
promotion: Redis reads the buffered acks with the resume time as their time.

One exception is judged when the overlap ends, because it begins after the promotion: a
replica that attached to the old primary after the promotion (restarted with the old primary
in its config) while the leader could not read it (a watcher partition). Only the part of the
overlap after the leader's first INFO of it counts against the bound (simulator seed 1010423);
a replica the leader can read must be repointed within it (seed 1009680).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haredis.core.model import Role

if TYPE_CHECKING:
    from .watcher_host import WatcherHost
    from .world import World

SLACK = 1.0
FRESH_INFO = 2.0  # an INFO reply older than this is not a read of the replica "now"
ACKING = 1.5  # a replica acks once a second: an ack this recent means it still acks


@dataclass(slots=True)
class Promotion:
    t: float
    node: str
    leader: str
    epoch: int
    old: str
    exception: str  # why a long overlap would be excused; "" when it would not


@dataclass(slots=True)
class Interval:
    start: float
    nodes: tuple[str, ...]
    promotion: Promotion | None


class WriteFence:
    def __init__(self, world: World) -> None:
        self.world = world
        self.writable: dict[str, bool] = {}  # insertion-ordered: deterministic
        self.fresh: dict[str, Promotion] = {}  # node -> its promotion, until it first takes writes
        self.open: Interval | None = None
        self.longest = 0.0  # the longest split brain that began with a promotion
        self.longest_other = 0.0  # ... that began otherwise (a resume, a restart, a pause expiring)
        self.intervals: list[tuple[float, float, Promotion | None]] = []
        self.changes: list[tuple[float, str, bool]] = []  # (t, node, accepts writes from now)
        # Nodes that took writes unfenced after a restart without a config file (see
        # _exception), judged when they started taking them: the restart may follow the
        # promotion (simulator seed 320).
        self.unfenced_restart: dict[str, bool] = {}
        # (primary, replica) -> when the replica last finished attaching to it, and
        # (watcher, node) -> when the watcher read the node's INFO (for the late-joiner rule).
        self.attached_at: dict[tuple[str, str], float] = {}
        self.info_reads: dict[tuple[str, str], list[float]] = {}

    # -- what the world reports -------------------------------------------------------------

    def on_node_promoted(self, node: Any, host: WatcherHost, action: Any, old_name: str) -> None:
        self.fresh[node.name] = Promotion(
            self.world.sched.now,
            node.name,
            host.name,
            action.epoch,
            old_name,
            self._exception(host, old_name, node),
        )

    def on_replica_attached(self, primary: Any, replica: Any) -> None:
        self.attached_at[(primary.name, replica.name)] = self.world.sched.now

    def on_info_read(self, host: WatcherHost, node: Any) -> None:
        if self.world.config.fencing:
            self.info_reads.setdefault((host.name, node.name), []).append(self.world.sched.now)

    def on_demoted(self, node: Any) -> None:
        self.fresh.pop(node.name, None)

    def on_writable(self, node: Any, writable: bool) -> None:
        now = self.world.sched.now
        self.changes.append((now, node.name, writable))
        if writable:
            self.writable[node.name] = True
            self.unfenced_restart[node.name] = (
                node.fence is None and node.restarts > 0 and not node.spec.config_file
            )
        else:
            self.writable.pop(node.name, None)
        promotion = self.fresh.pop(node.name, None) if writable else None
        count = len(self.writable)
        if count >= 2 and self.open is None:
            self.open = Interval(now, tuple(self.writable), promotion)
        elif count < 2 and self.open is not None:
            self._close(now)

    def final(self) -> None:
        if self.open is not None:
            self._close(self.world.sched.now)

    # -- judging ----------------------------------------------------------------------------

    def _close(self, now: float) -> None:
        interval = self.open
        assert interval is not None
        self.open = None
        length = now - interval.start
        p = interval.promotion
        self.intervals.append((interval.start, now, p))
        checker = self.world.checker
        if p is None:
            self.longest_other = max(self.longest_other, length)
            return
        self.longest = max(self.longest, length)
        if not self.world.config.fencing:
            return
        checker.covered("fence-split-brain-after-promotion")
        if length <= SLACK:
            return
        if not p.exception:
            unfenced = [n for n in interval.nodes if n != p.node and self.unfenced_restart.get(n)]
            if unfenced:
                p.exception = f"restarted-unfenced: {unfenced[0]} restarted without a config file"
            else:
                p.exception = self._late_unread_replica(interval, p, now)
        if p.exception:
            checker.covered("fence-excused-" + p.exception.split(":")[0])
            self.world.note("CHECK", f"write-fence: {length:.3f}s overlap excused ({p.exception})")
            return
        checker.fail(
            "13-write-fence",
            f"{p.node} (promoted by {p.leader}, epoch {p.epoch}, at {p.t:.3f}) and "
            f"{'/'.join(n for n in interval.nodes if n != p.node)} accepted writes together for "
            f"{length:.3f}s from {interval.start:.3f} (bound {SLACK:g}s; old primary {p.old})",
        )

    def _late_unread_replica(self, interval: Interval, p: Promotion, now: float) -> str:
        """A replica that joined the old primary after the promotion, unread by the leader:
        excused when the overlap left after the leader's first read of it is within SLACK."""
        for old_name in interval.nodes:
            if old_name == p.node:
                continue
            for r in self.world.nodes:
                # Its acks are gone by now (the repoint that ends the overlap frees them).
                joined = self.attached_at.get((old_name, r.name))
                if joined is None or not p.t < joined < now:
                    continue
                reads = self.info_reads.get((p.leader, r.name), [])
                first_read = next((t for t in reads if t >= joined), now)
                if now - first_read <= SLACK:
                    return (
                        f"late-unread-replica: {r.name} joined {old_name} at {joined:.3f}, after the "
                        f"promotion; {p.leader} first read it at {first_read:.3f}"
                    )
        return ""

    def _exception(self, host: WatcherHost, old_name: str, target: Any) -> str:
        """At the promotion: is a documented limit of fencing in play?"""
        world = self.world
        old = world.node_by_name.get(old_name)
        if old is None or not world.config.fencing:
            return ""
        now = world.sched.now
        if old.alive and old.fence is None and old.restarts > 0 and not old.spec.config_file:
            # Nothing can fence a node that forgot its fence in a restart and that the
            # watchers cannot reach: only a config file (CONFIG REWRITE, or the fence written
            # into redis.conf by hand) carries it across.
            return f"restarted-unfenced: {old_name} restarted without a config file, not fenced since"
        resumed = old.buffered_acks_read_at
        if old.alive and resumed is not None and now - resumed <= world.config.fence_max_lag + 2:
            # Acks its replicas sent while it was stopped sat in its socket buffers; on SIGCONT
            # Redis reads them with the resume time as their time, so it counts those replicas
            # good for max_lag more seconds whenever it resumes: no lease wait can cover a
            # primary that is both stopped and cut off (README, "Fencing", limits).
            return f"paused-buffered-acks: {old_name} resumed at {resumed:.3f}, read acks sent while stopped"
        for r in world.nodes:
            if r is old or r is target or not r.alive or r.role is not Role.REPLICA:
                continue
            if r.master != old.address or not r.link_up:
                continue
            acked = old.acks.get(r.name)
            if acked is None or now - acked > ACKING:
                continue
            seen = host.info_seen.get(r.name)
            if not seen or now - seen[-1][0] > FRESH_INFO:
                return f"unread-replica: {r.name} acks {old_name} but {host.name} has no fresh INFO of it"
            if now - r.last_io > ACKING:
                return (
                    f"one-way: {r.name} acks {old_name} but has not heard from it for {now - r.last_io:.1f}s"
                )
        return ""
