"""Invariant 14, wait-acked-kept: no write a client confirmed with WAIT 1 is lost by a
promotion made while the leader could see every replica.

The ledger: every offset a replica applies while linked to a primary is acknowledged at once
(see `redis_node`), so the data up to it is WAIT-confirmed. Per history (named canonically,
`Lineage.canonical`) the ledger keeps the confirmed offset as it grows, with when and by
whom each step was confirmed.

Every promotion (a Promote's REPLICAOF NO ONE on a replica) is recorded with the point its
new history branched from, and whether the leader could see every other node (all but the
old primary) through its selection: from its last freezing QueryInfo (else from its
election) to the promotion, each node alive, not SIGSTOPped or killed, both links to the
leader uncut, and no network drop phase (a delay or duplicate phase only slows messages
down: the leader still sees every node and must wait for its answer; before d7be88e the
core did not, and seed 169 lost confirmed writes in a delay phase). The window opens
`seen_margin` earlier: a disturbance that ended just before still hides a node from the leader (a probe
sent during it times out, the next one clears the down flag, INFO comes once a period).
A promotion made without that view is exempt (the issue's rule), and counted.

At the end, a confirmed point that is not on the final primary's history was lost. It is
charged to the promotion on the final primary's line where that line left the point's
history (the point extends the promotion's fork point, and is not on the promoted branch);
a loss no promotion explains (an EMPTY restart wiping replicas, a forced FAILOVER) is only
counted. A charged loss is a violation unless the promotion is exempt, or the point was
confirmed before the promotion and, at the promotion, held by no node but priority-0
replicas (and the old primary): WAIT counts any replica, and one that may never be promoted
can confirm writes no promotable replica has (a documented limit of WAIT, not of haredis);
or held by no replica at all (only by the old primary or a stray primary: a second failure
took the confirming replica's copy, e.g. an EMPTY restart, or it was promoted itself and is
the primary that failed).
Points confirmed AFTER the promotion on the history it left are never excused: a replica
that went on applying the old primary's stream (not frozen, or thawed before it was
repointed) confirmed writes the new primary cannot have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haredis.core.model import Role

if TYPE_CHECKING:
    from .redis_node import FakeRedis
    from .watcher_host import WatcherHost
    from .world import World


def seen_margin(settings: Any) -> float:
    """How long after a disturbance ends a watcher may still not see the node (see above)."""
    return float(settings.probe_timeout + settings.ping_period + settings.info_period)


@dataclass(frozen=True, slots=True)
class Holder:
    """A live node's data, role and priority at a promotion."""

    node: str
    replid: str
    offset: int
    priority: int
    replica: bool
    # Its data is on the old primary's history (invariant 5's test, checker._same_history):
    # only such a node may be promoted, so only it can be blamed for not being chosen.
    on_old_history: bool = True


@dataclass(frozen=True, slots=True)
class PromotionRecord:
    t: float
    leader: str
    epoch: int
    node: str
    old: str
    fork: tuple[str, int]  # canonical (replid, offset) the new history branched from
    replid: str  # the new history
    unreachable: str  # why the leader could not see every replica in its selection; "" if it could
    holders: tuple[Holder, ...]


@dataclass(frozen=True, slots=True)
class Confirmed:
    t: float
    offset: int
    replica: str


class WaitAcks:
    def __init__(self, world: World) -> None:
        self.world = world
        self.confirmed: dict[str, list[Confirmed]] = {}  # canonical replid -> growing offsets
        self.promotions: list[PromotionRecord] = []
        self.freeze_sent: dict[str, float] = {}  # watcher -> when it last sent a freezing QueryInfo

    # -- what the world reports -------------------------------------------------------------

    def on_ack(self, master: FakeRedis, replica: FakeRedis) -> None:
        replid, off = self.world.lineage.canonical(master.replid, replica.offset())
        entries = self.confirmed.get(replid)
        if entries is None:
            self.confirmed[replid] = [Confirmed(self.world.sched.now, off, replica.name)]
        elif off > entries[-1].offset:
            entries.append(Confirmed(self.world.sched.now, off, replica.name))

    def on_freeze_sent(self, host: WatcherHost) -> None:
        self.freeze_sent[host.name] = self.world.sched.now

    def on_promoted(self, node: FakeRedis, host: WatcherHost, action: Any, before: tuple[str, int]) -> None:
        """`node` was a replica at `before` and is now the master of a new history."""
        world = self.world
        checker = world.checker
        now = world.sched.now
        key = (action.primary, action.epoch)
        old_addr = checker.leader_addr.get(key)
        if old_addr is None and host.watcher is not None:
            view = host.watcher.snapshot().primary(action.primary)
            old_addr = view.address if view else None
        old = world.node_at(old_addr)
        start = checker.elected_at.get(key, now)
        frozen_at = self.freeze_sent.get(host.name)
        if frozen_at is not None and frozen_at >= start:
            start = frozen_at
        start -= seen_margin(checker.primary_settings[action.primary])
        holders = tuple(
            Holder(
                n.name,
                *world.lineage.canonical(n.replid, n.offset()),
                n.priority,
                n.role is Role.REPLICA,
                old is None or checker._same_history(n, old),
            )
            for n in world.nodes
            if n.alive and n is not node
        )
        self.promotions.append(
            PromotionRecord(
                t=now,
                leader=host.name,
                epoch=action.epoch,
                node=node.name,
                old=old.name if old is not None else "?",
                fork=world.lineage.canonical(*before),
                replid=node.replid,
                unreachable=self._unseen(host, (old, node), start, now),
                holders=holders,
            )
        )

    def _unseen(self, host: WatcherHost, skip: tuple[Any, ...], t0: float, t1: float) -> str:
        """Why the leader could not see every node but `skip` during [t0, t1]; "" if it could."""
        world = self.world
        hist = world.history
        if not hist.clean("net-drop", t0, t1):
            return "net: a network drop phase"
        for n in world.nodes:
            if n in skip:
                continue
            if not n.alive or not hist.clean(f"node-any:{n.name}", t0, t1):
                return f"node: {n.name} dead or SIGSTOPped"
            if not (
                hist.clean(f"link:{host.name}>{n.name}", t0, t1)
                and hist.clean(f"link:{n.name}>{host.name}", t0, t1)
            ):
                return f"cut: {n.name} cut off from {host.name}"
        return ""

    # -- the judgement ------------------------------------------------------------------------

    def final(self) -> None:
        world = self.world
        checker = world.checker
        lineage = world.lineage
        primary = world.current_primary()
        if primary is None:
            return
        p_id, p_off = primary.replid, primary.offset()
        on_line = [r for r in self.promotions if lineage.descends(p_id, r.replid)]
        for r in self.promotions:
            if r not in on_line:
                checker.covered("wait-acked-promotions-superseded")
            elif r.unreachable:
                checker.covered("wait-acked-promotions-exempt")
                checker.covered("wait-acked-exempt-" + r.unreachable.split(":")[0])
            else:
                checker.covered("wait-acked-promotions-checked")
        charged: dict[int, list[tuple[str, Confirmed]]] = {}
        for replid in sorted(self.confirmed):
            entries = self.confirmed[replid]
            first = self._first_lost(entries, replid, p_id, p_off)
            unattributed = False
            for c in entries[first:]:
                owner = next(
                    (
                        i
                        for i, r in enumerate(on_line)
                        if lineage.is_prefix(r.fork[0], r.fork[1], replid, c.offset)
                        and not lineage.descends(replid, r.replid)
                    ),
                    None,
                )
                if owner is None:
                    unattributed = True
                else:
                    charged.setdefault(owner, []).append((replid, c))
            if unattributed:
                checker.covered("wait-acked-lost-unattributed")
        for i in sorted(charged):
            self._judge(on_line[i], charged[i])

    def _first_lost(self, entries: list[Confirmed], replid: str, p_id: str, p_off: int) -> int:
        """Index of the first confirmed step not on the final primary's history (what is
        kept of one history is a prefix of it, so a binary search)."""
        is_prefix = self.world.lineage.is_prefix
        lo, hi = 0, len(entries)
        while lo < hi:
            mid = (lo + hi) // 2
            if is_prefix(replid, entries[mid].offset, p_id, p_off):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _judge(self, r: PromotionRecord, lost: list[tuple[str, Confirmed]]) -> None:
        checker = self.world.checker
        lineage = self.world.lineage
        if r.unreachable:
            checker.covered("wait-acked-lost-exempt-unreachable")
            return
        problems: list[str] = []
        excuses: set[str] = set()
        for replid, c in lost:
            if c.t > r.t:
                problems.append(
                    f"{c.replica} confirmed {replid[:4]}@{c.offset} at {c.t:.3f}, after the promotion, "
                    f"on the history it left"
                )
                break
            holders = [
                h
                for h in r.holders
                if h.replica and h.node != r.old and lineage.is_prefix(replid, c.offset, h.replid, h.offset)
            ]
            # A holder whose data left the old primary's history (an ex-primary that took
            # writes past the fork) may not be promoted (invariant 5): not a better choice
            # (simulator seed 26).
            promotable = [h.node for h in holders if h.priority > 0 and h.on_old_history]
            if promotable:
                problems.append(
                    f"{c.replica} confirmed {replid[:4]}@{c.offset} at {c.t:.3f}; at the promotion "
                    f"{'/'.join(promotable)} held it and {r.node} did not"
                )
                break
            excuses.add("unpromotable" if holders else "unheld")
        if not problems:
            for excuse in sorted(excuses):
                checker.covered(f"wait-acked-lost-exempt-{excuse}")
            return
        last = max(c.offset for _, c in lost)
        checker.fail(
            "14-wait-acked-kept",
            f"{r.leader} promoted {r.node} (epoch {r.epoch}, at {r.t:.3f}, old primary {r.old}) from "
            f"{r.fork[0][:4]}@{r.fork[1]} while it could see every replica, and WAIT-confirmed writes "
            f"up to {last - r.fork[1]} bytes past that point were lost ({len(lost)} confirmations): "
            + problems[0],
        )
