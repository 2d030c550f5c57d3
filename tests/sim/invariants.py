"""The invariants, checked as the world runs (each on the step that could break it).

 1 one-leader       at most one leader per (primary, epoch): the watcher publishing
                    +elected-leader, its epoch read from its snapshot's failover_epoch.
 2 one-vote         a watcher grants at most one candidate per (primary, epoch), across
                    restarts (every executed SendVoteReply(granted=True) is recorded), and
                    never rewrites a persisted vote for that epoch.
 3 epochs-monotonic current/voted/config epochs never decrease: in memory within a process,
                    on disk from one PersistState to the next, and a restarted process starts
                    from what is on disk.
 4 election-quorum  a leader holds granted votes delivered to this process (plus its own
                    persisted self-vote) from at least a majority of all configured watchers
                    and at least quorum; a watcher cut off on a minority side for the whole
                    election never leads.
 5 promotion-choice the promoted node exists, is not the primary it replaces (unless that one
                    was demoted to a replica), has priority > 0,
                    holds data on the same history as that primary (neither has diverged), and
                    is the freshest of the eligible replicas the leader could reach (see
                    `_freshness` for when that comparison is exact).
 6 no-false-failover no Promote while the primary was alive, a primary, not paused for longer
                    than 0.8*down_after-0.1 s, and reachable (both ways, no drop/delay phase)
                    by a majority of watchers that were up, unpaused and without clock jump,
                    for the whole preceding down_after (unless an operator forced it).
 7 liveness         after the final heal and a quiet period: every watcher names the same
                    primary; it is alive and the only live master; every other node replicates it.
 8 durable-first    nothing leaves a watcher (gossip, vote request, vote reply) carrying an
                    epoch, vote or topology that is not on its disk yet.
 9 config-unique    all +switch-master for one (primary, config_epoch) name one address.
10 leader-acts      only the elected leader of (primary, epoch) sends Promote or Switchover for
                    that epoch, and a Switchover goes to the primary the leader is replacing.
11 switchover-safe  a switchover that was not forced hands over everything: when the old
                    primary demotes itself, the target holds all of its data.
12 maintenance      a watcher in maintenance mode for a primary (its snapshot's paused_until
                    lies ahead) starts no automatic (unforced) election for it.
13 write-fence      with fencing on, a split brain (two or more nodes accepting writes at
                    once) that began with a promotion lasts at most 1 s (Redis's whole-second
                    rounding beyond the lease), unless at the promotion a replica the leader
                    could not read, or one whose link carries only replica->primary, was
                    still acking the old primary (the documented limits). See `write_fence`
                    for why this bound and not fence_lease + 1 s.
14 wait-acked-kept  a write a client confirmed with WAIT 1 (an offset a replica acknowledged to
                    its primary) stays on the final primary's history, for every promotion on
                    that history's line whose leader could reach every replica through its
                    selection (a promotion without that view is exempt and counted, as is a
                    write that, at the promotion, only priority-0 replicas held). See
                    `wait_acks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from haredis.core.model import Address, DurableState, PrimaryDurable, Role

from .wait_acks import WaitAcks
from .write_fence import WriteFence

if TYPE_CHECKING:
    from .watcher_host import WatcherHost
    from .world import World


@dataclass(frozen=True, slots=True)
class Violation:
    seed: int
    t: float
    invariant: str
    detail: str

    def line(self) -> str:
        return f"seed={self.seed} t={self.t:.3f} [{self.invariant}] {self.detail}"


def _epochs(p: PrimaryDurable) -> tuple[int, int, int]:
    return (p.current_epoch, p.voted_epoch, p.config_epoch)


class Checker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.violations: list[Violation] = []
        self.leaders: dict[tuple[str, int], str] = {}
        self.leader_addr: dict[tuple[str, int], Address] = {}
        self.elected_at: dict[tuple[str, int], float] = {}
        self.votes: dict[tuple[str, str, int], str] = {}
        self.configs: dict[tuple[str, int], Address] = {}
        self.first_request: dict[tuple[str, str, int], float] = {}
        self.forced_at: dict[str, float] = {}
        self.self_votes: set[tuple[str, str, int]] = set()  # (watcher, primary, epoch) persisted
        # How often each non-vacuous check ran (coverage, for --verbose and the report).
        self.coverage: dict[str, int] = {}
        cfg = world.config
        self.primary_settings = {p.name: p for p in cfg.watcher_settings(cfg.watchers[0]).primaries}
        self.write_fence = WriteFence(world)
        self.wait_acks = WaitAcks(world)
        self.fence_wait_at: dict[str, float] = {}  # watcher -> its last +fence-wait
        if cfg.fencing:
            self.covered("fencing-on")

    def covered(self, what: str) -> None:
        self.coverage[what] = self.coverage.get(what, 0) + 1

    def fail(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(self.world.seed, self.world.sched.now, invariant, detail))
        self.world.note("CHECK", f"VIOLATION [{invariant}] {detail}")

    # -- 3: epochs --------------------------------------------------------------------------

    def _not_below(self, inv: str, who: str, what: str, new: DurableState, old: DurableState) -> None:
        for name, before in old.primaries.items():
            after = new.get(name)
            b, a = _epochs(before), _epochs(after)
            if a[0] < b[0] or a[1] < b[1] or a[2] < b[2]:
                self.fail(
                    inv,
                    f"{who}: {what} for {name}: (current, voted, config) epochs went from {b} to {a}",
                )

    def on_start(self, host: WatcherHost, durable: DurableState) -> None:
        self._not_below("3-epochs-monotonic", host.name, "restart lost durable state", durable, host.disk)

    def on_durable(self, host: WatcherHost, durable: DurableState) -> None:
        if host.last_durable is not None:
            self._not_below(
                "3-epochs-monotonic", host.name, "in-memory durable state", durable, host.last_durable
            )
        self._not_below("3-epochs-monotonic", host.name, "in-memory state below the disk", durable, host.disk)

    def on_persist(self, host: WatcherHost, state: DurableState) -> None:
        self._not_below("3-epochs-monotonic", host.name, "PersistState", state, host.disk)
        for name, p in state.primaries.items():
            if p.voted_for == host.name and p.voted_epoch:
                self.self_votes.add((host.name, name, p.voted_epoch))
        for name, before in host.disk.primaries.items():
            after = state.get(name)
            if (
                before.voted_epoch
                and after.voted_epoch == before.voted_epoch
                and before.voted_for
                and after.voted_for != before.voted_for
            ):
                self.fail(
                    "2-one-vote",
                    f"{host.name} rewrote its persisted vote for {name} epoch {after.voted_epoch}: "
                    f"{before.voted_for} -> {after.voted_for}",
                )

    # -- 2 and 8: votes and what leaves a watcher -------------------------------------------

    def on_vote_reply(self, host: WatcherHost, action: Any) -> None:
        reply = action.reply
        disk = host.disk.get(reply.primary)
        if reply.current_epoch > disk.current_epoch:
            self.fail(
                "8-durable-first",
                f"{host.name} sent current_epoch {reply.current_epoch} for "
                f"{reply.primary} with {disk.current_epoch} on disk",
            )
        if not reply.granted:
            return
        key = (host.name, reply.primary, reply.epoch)
        previous = self.votes.get(key)
        if previous is None:
            self.votes[key] = action.to
        elif previous != action.to:
            self.fail(
                "2-one-vote",
                f"{host.name} granted {reply.primary} epoch {reply.epoch} to {previous} and to {action.to}",
            )
        if disk.voted_epoch < reply.epoch or (
            disk.voted_epoch == reply.epoch and disk.voted_for != action.to
        ):
            self.fail(
                "8-durable-first",
                f"{host.name} granted {reply.primary} epoch {reply.epoch} to "
                f"{action.to} but its disk says voted_epoch={disk.voted_epoch} "
                f"voted_for={disk.voted_for or '-'}",
            )

    def on_request_votes(self, host: WatcherHost, request: Any) -> None:
        disk = host.disk.get(request.primary)
        if request.epoch > disk.current_epoch:
            self.fail(
                "8-durable-first",
                f"{host.name} asked for votes in epoch {request.epoch} with "
                f"current_epoch {disk.current_epoch} on disk",
            )
        self.first_request.setdefault((host.name, request.primary, request.epoch), self.world.sched.now)
        if not request.forced and host.watcher is not None:
            snap = host.watcher.snapshot()
            view = snap.primary(request.primary)
            if view is not None and view.paused_until is not None and view.paused_until > snap.now:
                self.fail(
                    "12-maintenance",
                    f"{host.name} started an automatic election for {request.primary} "
                    f"(epoch {request.epoch}) in maintenance mode ({view.paused_until - snap.now:.1f}s left)",
                )

    def on_gossip(self, host: WatcherHost, gossip: Any) -> None:
        for p in gossip.primaries:
            disk = host.disk.get(p.name)
            if (
                p.current_epoch > disk.current_epoch
                or p.config_epoch > disk.config_epoch
                or p.voted_epoch > disk.voted_epoch
            ):
                self.fail(
                    "8-durable-first",
                    f"{host.name} gossiped {p.name} epochs (current {p.current_epoch}, config "
                    f"{p.config_epoch}, voted {p.voted_epoch}) above its disk ({disk.current_epoch}, "
                    f"{disk.config_epoch}, {disk.voted_epoch})",
                )
            elif p.config_epoch == disk.config_epoch:
                settings = self.primary_settings.get(p.name)
                durable_addr = disk.address or (settings.address if settings else None)
                if durable_addr is not None and p.address != durable_addr:
                    self.fail(
                        "8-durable-first",
                        f"{host.name} gossiped {p.name} at {p.address} for config "
                        f"epoch {p.config_epoch}, its disk says {durable_addr}",
                    )

    # -- 1, 4, 9: publishes -----------------------------------------------------------------

    def _primary_of(self, message: str) -> str:
        tokens = message.split()
        if "@" in tokens:
            i = tokens.index("@")
            if i + 1 < len(tokens):
                return tokens[i + 1]
        if len(tokens) >= 2 and tokens[0] == "master":
            return tokens[1]
        if tokens and tokens[0] in self.primary_settings:
            return tokens[0]
        return next(iter(self.primary_settings))

    def on_publish(self, host: WatcherHost, action: Any) -> None:
        channel = action.channel
        if channel == "+fence-wait":
            self.fence_wait_at[host.name] = self.world.sched.now
            self.covered("fence-waits")
        elif channel == "+majority-wait":
            self.covered("majority-waits")
        elif channel == "-failover-abort-majority-lost":
            self.covered("majority-lost")
        elif channel == "+elected-leader":
            self._on_elected(host, self._primary_of(action.message))
        elif channel == "+switch-master":
            name = self._primary_of(action.message)
            assert host.watcher is not None
            view = host.watcher.snapshot().primary(name)
            if view is None:
                self.fail("9-config-unique", f"{host.name} published +switch-master for unknown {name}")
                return
            key = (name, view.config_epoch)
            known = self.configs.setdefault(key, view.address)
            if known != view.address:
                self.fail(
                    "9-config-unique",
                    f"config epoch {view.config_epoch} of {name} names {known} and "
                    f"{view.address} ({host.name})",
                )

    def _on_elected(self, host: WatcherHost, name: str) -> None:
        world = self.world
        now = world.sched.now
        assert host.watcher is not None
        view = host.watcher.snapshot().primary(name)
        if view is None:
            self.fail("1-one-leader", f"{host.name} elected for unknown primary {name}")
            return
        epoch = view.failover_epoch or view.current_epoch
        key = (name, epoch)
        other = self.leaders.get(key)
        if other is not None and other != host.name:
            self.fail("1-one-leader", f"{name} epoch {epoch}: both {other} and {host.name} elected")
        self.leaders.setdefault(key, host.name)
        self.covered("elections")
        self.leader_addr[key] = view.address
        self.elected_at[key] = now
        settings = self.primary_settings[name]
        voters = set(host.votes_in.get(key, ())) - {host.name}
        self_vote = (host.name, name, epoch) in self.self_votes
        count = len(voters) + (1 if self_vote else 0)
        need = max(world.config.majority, settings.quorum)
        if count < need:
            self.fail(
                "4-election-quorum",
                f"{host.name} elected for {name} epoch {epoch} with {count} votes (delivered: "
                f"{sorted(voters)}, own persisted vote: {self_vote}); needs {need}",
            )
        t0 = self.first_request.get((host.name, name, epoch), now)
        reachable = 1
        for other_host in world.host_list:
            if other_host is host:
                continue
            a, b = host.name, other_host.name
            if not (
                world.history.covered(f"link:{a}>{b}", t0, now)
                or world.history.covered(f"link:{b}>{a}", t0, now)
            ):
                reachable += 1
        if reachable < world.config.majority:
            self.fail(
                "4-election-quorum",
                f"{host.name} elected for {name} epoch {epoch} while cut off on a "
                f"minority side since {t0:.3f} (reaches {reachable} watchers incl. itself)",
            )

    def on_operator_command(self, name: str) -> None:
        self.forced_at[name] = self.world.sched.now

    # -- 10, 11: switchovers -----------------------------------------------------------------

    def on_switchover(self, host: WatcherHost, action: Any) -> None:
        key = (action.primary, action.epoch)
        leader = self.leaders.get(key)
        if leader != host.name:
            self.fail(
                "10-leader-acts",
                f"{host.name} sent Switchover for {action.primary} epoch {action.epoch} but the leader is "
                f"{leader or 'nobody'}",
            )
        old_addr = self.leader_addr.get(key)
        if old_addr is not None and old_addr != action.old:
            self.fail(
                "10-leader-acts",
                f"{host.name} sent Switchover to {action.old}, not to the primary it replaces ({old_addr})",
            )
        self.covered("switchovers")

    # -- 13: write fencing --------------------------------------------------------------------

    def on_writable(self, node: Any, writable: bool) -> None:
        self.write_fence.on_writable(node, writable)

    def on_node_promoted(self, node: Any, host: WatcherHost, action: Any) -> None:
        """A Promote's REPLICAOF NO ONE reached `node` (called before it takes effect)."""
        old_addr = self.leader_addr.get((action.primary, action.epoch))
        if old_addr is None and host.watcher is not None:
            view = host.watcher.snapshot().primary(action.primary)
            old_addr = view.address if view else None
        old = self.world.node_at(old_addr)
        self.write_fence.on_node_promoted(node, host, action, old.name if old else "?")

    def on_fence_pause(self, host: WatcherHost, action: Any, ok: bool) -> None:
        self.covered("fence-old-paused" if ok else "fence-old-pause-failed")

    def on_redis_failover(
        self, old: Any, target: Any, before: tuple[str, int], target_before: tuple[str, int], *, forced: bool
    ) -> None:
        """Called by the fake Redis when FAILOVER hands over (old demotes itself)."""
        if not forced and not self.world.lineage.is_prefix(
            before[0], before[1], target_before[0], target_before[1]
        ):
            self.fail(
                "11-switchover-safe",
                f"FAILOVER {old.name} -> {target.name} lost data: {old.name} had {before}, "
                f"{target.name} {target_before}",
            )

    # -- 5, 6, 10: promotions ---------------------------------------------------------------

    def on_promote(self, host: WatcherHost, action: Any) -> None:
        world = self.world
        name = action.primary
        key = (name, action.epoch)
        leader = self.leaders.get(key)
        if leader != host.name:
            self.fail(
                "10-leader-acts",
                f"{host.name} sent Promote for {name} epoch {action.epoch} but the leader "
                f"is {leader or 'nobody'}",
            )
        if world.config.fencing:
            elected = self.elected_at.get(key)
            waited = self.fence_wait_at.get(host.name)
            if elected is not None and waited is not None and waited >= elected:
                self.covered("fence-promotions-after-lease-wait")
            if action.fence_old is not None:
                self.covered("fence-promotions-fencing-old")
        old_addr = self.leader_addr.get(key)
        if old_addr is None and host.watcher is not None:
            view = host.watcher.snapshot().primary(name)
            old_addr = view.address if view else None
        cand = world.node_at(action.address)
        if cand is None:
            self.fail("5-promotion-choice", f"{host.name} promoted {action.address}: no such node")
            return
        if old_addr is None:
            return
        if action.address == old_addr and (not cand.alive or cand.role is not Role.REPLICA):
            self.fail(
                "5-promotion-choice",
                f"{host.name} promoted {cand.name} {action.address}, the primary it replaces",
            )
            return
        # The primary it replaces may be promoted again once it was demoted (to a replica
        # that nothing feeds, the core's _stranded_primary): its data is the history itself,
        # and the checks below still hold it to the freshest rival on that history.
        if cand.priority == 0:
            self.fail(
                "5-promotion-choice", f"{host.name} promoted {cand.name} {action.address} with priority 0"
            )
        old = world.node_at(old_addr)
        if old is None:
            return
        if not self._same_history(cand, old):
            self.fail(
                "5-promotion-choice",
                f"{host.name} promoted {cand.name} (replid {cand.replid[:4]} offset {cand.offset()}) "
                f"whose data diverged from {old.name}'s (replid {old.replid[:4]} offset {old.offset()})",
            )
        else:
            self._freshness(host, cand, old, key)
        self._false_failover(host, old, name)

    def _same_history(self, node: Any, old: Any) -> bool:
        lineage = self.world.lineage
        point = node.history_point()
        if lineage.compatible(point, old.history_point()):
            return True
        return any(lineage.compatible(point, past) for past in old.past_histories)

    def _freshness(self, host: WatcherHost, cand: Any, old: Any, key: tuple[str, int]) -> None:
        """Is the promoted replica the freshest eligible one the leader could reach?

        Rivals: other live, unpaused replicas with priority > 0, on the old primary's current
        history, that the leader reached cleanly (no cut, pause, crash, drop or delay phase on
        the leader, the rival or their links) over the last 2 s. Two comparisons:

        (a) exact, zero tolerance: a rival whose INFO, produced after its offset last moved,
            was handed to the leader before this Promote. The leader knew that (frozen,
            true) offset, and the candidate's true offset is at least what the leader saw of
            it, so `candidate < rival` means it picked a replica it knew was behind.
        (b) true offsets, when the old primary feeds nobody any more (dead, paused, or no
            longer a primary): the candidate may trail a rival by at most what the writer
            adds in one INFO period plus the slowest replication lag plus 0.1 s. A watcher
            that ranks on INFO up to one period old cannot do better; anything beyond that is
            a stale promotion (e.g. a replica cut off from the primary long before it died).
        While the old primary still feeds its replicas, offsets move and only (a) applies.
        """
        world = self.world
        now = world.sched.now
        hist = world.history
        window = now - 2.0
        if not hist.clean(f"watcher:{host.name}", window, now) or not hist.clean("net", window, now):
            return
        lineage = world.lineage
        old_point = old.history_point()
        feeding = old.alive and not old.paused and old.role is Role.PRIMARY
        settings = self.primary_settings[key[0]]
        tolerance = world.write_rate * (settings.info_period + max(n.repl_period for n in world.nodes) + 0.1)
        exact_best = None
        true_best = None
        for node in world.nodes:
            if node is cand or node is old or not node.alive or node.paused:
                continue
            if node.role is not Role.REPLICA or node.priority == 0:
                continue
            if not lineage.compatible(node.history_point(), old_point):
                continue
            if not (
                hist.clean(f"node-any:{node.name}", window, now)
                and hist.clean(f"link:{host.name}>{node.name}", window, now)
                and hist.clean(f"link:{node.name}>{host.name}", window, now)
            ):
                continue
            if not feeding and (true_best is None or node.offset() > true_best.offset()):
                true_best = node
            seen = host.info_seen.get(node.name)
            if not seen or seen[-1][2].role is not Role.REPLICA:
                continue
            if not any(gen_at >= node.last_change for _, gen_at, _ in seen):
                continue
            if exact_best is None or node.offset() > exact_best.offset():
                exact_best = node
        if exact_best is not None:
            self.covered("freshness-exact")
        if true_best is not None:
            self.covered("freshness-true")
        if exact_best is not None and exact_best.offset() > cand.offset():
            self.fail(
                "5-promotion-choice",
                f"{host.name} promoted {cand.name} at offset {cand.offset()} but {exact_best.name} had "
                f"{exact_best.offset()} and the leader had been told so (an INFO read after its offset "
                "froze)",
            )
        elif true_best is not None and true_best.offset() - tolerance > cand.offset():
            self.fail(
                "5-promotion-choice",
                f"{host.name} promoted {cand.name} at offset {cand.offset()} but {true_best.name} had "
                f"{true_best.offset()}, more than the tolerance {tolerance:.0f} ahead ({old.name} feeds "
                "nobody)",
            )

    def _false_failover(self, host: WatcherHost, old: Any, name: str) -> None:
        world = self.world
        now = world.sched.now
        settings = self.primary_settings[name]
        d = settings.down_after
        t0 = now - d
        forced = self.forced_at.get(name)
        if forced is not None and now - forced < settings.failover_timeout + d + 5.0:
            return
        hist = world.history
        if not old.alive or old.role is not Role.PRIMARY or old.role_since > t0:
            return
        if not hist.clean(f"node:{old.name}", t0, now) or not hist.clean("net", t0, now):
            return
        healthy = []
        for w in world.host_list:
            if (
                hist.clean(f"watcher:{w.name}", t0, now)
                and hist.clean(f"link:{w.name}>{old.name}", t0, now)
                and hist.clean(f"link:{old.name}>{w.name}", t0, now)
            ):
                healthy.append(w.name)
        self.covered("false-failover-window")
        if len(healthy) >= world.config.majority:
            self.fail(
                "6-no-false-failover",
                f"{host.name} promoted a replica of {old.name} {old.address} although it was alive and "
                f"reachable by {healthy} for the last {d:g}s",
            )

    # -- 7: liveness ------------------------------------------------------------------------

    def final(self) -> None:
        self.write_fence.final()
        if self.world.config.fencing:
            # Longest split brains in ms (the report sums per-seed values; the runner's
            # fencing line takes the maximum).
            self.coverage["fence-max-overlap-after-promotion-ms"] = round(self.write_fence.longest * 1000)
            self.coverage["fence-max-overlap-other-ms"] = round(self.write_fence.longest_other * 1000)
        self.covered("liveness")
        for problem in liveness_problems(self.world):
            self.fail("7-liveness", problem)
        self.wait_acks.final()


def liveness_problems(world: World) -> list[str]:
    """Why the world has not converged (empty when it has): see invariant 7."""
    problems: list[str] = []
    for name in world.checker.primary_settings:
        views: dict[str, str] = {}
        for host in world.host_list:
            if host.alive and host.watcher is not None:
                view = host.watcher.snapshot().primary(name)
                views[host.name] = str(view.address) if view else "?"
        addresses = set(views.values())
        roles = ", ".join(
            f"{n.name}:{'dead' if not n.alive else ('master' if n.role is Role.PRIMARY else f'->{n.master}')}"
            for n in world.nodes
        )
        where = f"watchers say {views}; nodes {roles}"
        if len(addresses) != 1:
            problems.append(f"{name}: watchers disagree; {where}")
            continue
        addr = Address.parse(next(iter(addresses)))
        primary = world.node_at(addr)
        if primary is None or not primary.alive or primary.role is not Role.PRIMARY:
            problems.append(f"{name}: the agreed primary {addr} is not a live master; {where}")
            continue
        for node in world.nodes:
            if node is primary or not node.alive:
                continue
            if node.role is Role.PRIMARY:
                problems.append(f"{name}: {node.name} is a second live master; {where}")
            elif node.master != addr:
                problems.append(f"{name}: {node.name} follows {node.master}, not {addr}; {where}")
    return problems
