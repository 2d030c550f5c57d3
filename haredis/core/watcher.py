"""One watcher's whole decision logic: events in, actions out. Pure: no I/O, no clock.

Theory of operation
-------------------
A watcher monitors a set of primaries ("groups"), each with the replicas it discovers from
the primary's INFO. For every group it:

1. PROBES each instance (PING every ping_period, INFO every info_period) and keeps a
   subjective verdict per instance (detector.py). The configured primary is also down if it
   keeps reporting role:slave for longer than down_after + 2 INFO periods.
2. GOSSIPS its opinion and its epochs to every peer, at once on a change and as a heartbeat
   (agreement.py); the primary is objectively down when quorum watchers say so, freshly.
3. ELECTS: an objectively-down primary makes the watcher a candidate after a small,
   per-watcher delay; a majority of all watchers must vote for it in that epoch
   (election.py).
4. FAILS OVER as the leader, following the table in failover.py: select the freshest
   eligible replica (selection.py), promote and confirm it, commit the new topology under
   the failover epoch (config_epoch), publish it, then repoint the other replicas. Just
   before promoting, the leader must still hear a majority of watchers (itself included)
   say the primary is down, in views sent within the last down_after: selection can last
   seconds (the fence wait), and a leader cut off meanwhile on the minority side of a
   partition must not replace a primary the majority reaches again.
5. CONVERGES: a topology with a higher config epoch, heard from any peer, replaces ours.
   A stray primary (a returning old primary) or a replica following the wrong primary is
   reconfigured after `convert_after` (at once with fencing: a node it acks may take writes),
   but only when this watcher is demonstrably current:
   the configured primary is healthy and a majority of watchers, freshly heard, share our
   config epoch and none knows a higher one. That rule is what keeps a stale watcher from
   demoting a freshly promoted primary (Sentinel's redis#1445).

Time and hold mode
------------------
The core runs on its own clock: each event's `now` advances it by the gap since the
previous event. A gap that is negative (the clock went back) or longer than `hold_trigger`
(the process stalled or was paused, or the clock jumped forward) does not advance it at all
and puts the watcher in HOLD (Sentinel's TILT) for `hold_duration`: it keeps probing and
gossiping, but gives no opinion, grants no vote, starts no failover and converts nobody. So
every age the core computes is built only from gaps it actually observed.

Invariants this module maintains (the simulator checks them from outside):
* at most one vote per (primary, epoch), and it is durable before the reply goes out;
* epochs and config epochs never decrease, across restarts (they are durable);
* a failover starts only from an objectively down primary (or an operator's command) and
  acts only after a majority of all configured watchers voted for it, and promotes only
  while a majority, freshly heard, still finds the primary down;
* the new topology is durable and only then visible (PersistState leads every batch).
"""

from __future__ import annotations

import math
from dataclasses import replace

from haredis.core import election, selection
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
from haredis.core.agreement import PeerTable
from haredis.core.detector import is_alive_reply
from haredis.core.events import (
    Event,
    FailoverCommand,
    FailureKind,
    GossipReceived,
    InfoFailed,
    InfoReply,
    PauseCommand,
    ProbeFailed,
    ProbeReply,
    PromoteDone,
    ReplicaOfDone,
    SwitchoverCommand,
    SwitchoverDone,
    Tick,
    VoteReplied,
    VoteRequested,
)
from haredis.core.failover import Failover, Phase, Trigger, transition
from haredis.core.group import Group, Instance, describe
from haredis.core.messages import Gossip, PrimaryGossip, VoteRequest
from haredis.core.model import (
    Address,
    DurableState,
    InstanceInfo,
    PrimaryDurable,
    Role,
    Snapshot,
    WatcherSettings,
    run_id,
)
from haredis.core.tick_schedule import TickSchedule
from haredis.core.views import StatusRow, failover_summary, primary_view, status_row

# A replica whose link to the primary has been down this many down_after periods longer
# than the primary has been down has data too old to promote (Sentinel's rule).
_LINK_DOWN_FACTOR = 10.0
# An instance asked to REPLICAOF counts as reconfigured after this long even if its INFO
# never confirmed it (Sentinel: 10 s); steady state fixes it later if it really did not.
_RECONF_ASSUME_DONE = 10.0
# A REPLICAOF that failed (refused, reset, timed out) is sent again this long after, this
# many times in all, while the replica is not down (Sentinel resends too): a replica frozen
# for the selection and never repointed stays detached until steady state fixes it, which
# needs a sane primary (chaos schedule:1014).
_RECONF_RETRY_AFTER = 0.25
_RECONF_ATTEMPTS = 3
# The retry window after lost attempts doubles up to 2**(this - 1) times retry_backoff.
_MAX_BACKOFF_DOUBLINGS = 5
# How often the write fence is re-sent to an instance whose INFO still shows it missing.
_FENCE_RESEND = 5.0


class Watcher:
    """The decision core of one watcher. See the module docstring."""

    def __init__(self, settings: WatcherSettings, durable: DurableState, now: float) -> None:
        self.settings = settings
        self._raw_last = now
        self._now = now
        self._hold_until: float | None = None
        # When the loop last resumed after a stall shorter than hold (see _advance_clock).
        self._resumed_at = -math.inf
        self._peers = PeerTable(settings.name, settings.electorate)
        self._groups: dict[str, Group] = {}
        for ps in settings.primaries:
            self._groups[ps.name] = Group(ps, durable.get(ps.name), now)
        # Votes and epochs of primaries no longer configured are kept, not dropped: if the
        # primary comes back (a config mistake, a reload), it must not vote twice in an epoch.
        self._retired: dict[str, PrimaryDurable] = {
            name: entry for name, entry in durable.primaries.items() if name not in self._groups
        }
        self._last_heartbeat: float | None = None
        self._durable_dirty = False
        self._dirty_groups: set[str] = set()  # groups whose gossip view may have changed
        self._out: list[Action] = []
        self._schedule = TickSchedule(self._groups, settings, now)  # which groups a Tick visits

    # ------------------------------------------------------------------ public interface

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def durable(self) -> DurableState:
        entries = dict(self._retired)
        entries.update((name, g.durable) for name, g in self._groups.items())
        return DurableState(entries)

    @property
    def in_hold(self) -> bool:
        return self._hold_until is not None

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; get the actions to execute, in order (PersistState first)."""
        self._out = []
        self._advance_clock(event.now)
        filed = False  # the handler has filed the group it touched (see _on_healthy_reply)
        match event:
            case Tick():
                self._on_tick()
            case ProbeReply() | ProbeFailed():
                filed = self._on_probe_result(event)
            case InfoReply():
                self._on_info(event)
            case InfoFailed():
                self._on_info_failed(event)
            case GossipReceived():
                self._on_gossip(event)
            case VoteRequested():
                self._on_vote_request(event)
            case VoteReplied():
                self._on_vote_reply(event)
            case PromoteDone() | SwitchoverDone():
                self._on_promote_done(event)
            case ReplicaOfDone():
                self._on_replicaof_done(event)
            case FailoverCommand():
                self._on_failover_command(event)
            case SwitchoverCommand():
                self._on_switchover_command(event)
            case PauseCommand():
                self._on_pause_command(event)
        if not filed:
            self._reschedule_touched(event)
        if self._dirty_groups:  # (most events change no gossip view)
            self._push_changed_gossip()
        out = self._out
        self._out = []
        if self._durable_dirty:
            self._durable_dirty = False
            out.insert(0, PersistState(self.durable))
        return out

    def reconfigure(self, settings: WatcherSettings) -> list[Action]:
        """Apply a reloaded configuration between events (SIGHUP).

        Timing, quorum and the other per-primary settings change in place; a new primary
        starts being watched; a removed one is forgotten. The watcher's name and the size of
        the electorate cannot change at runtime (votes and majorities depend on them), so a
        reload that changes them is refused with ValueError and the old settings stay."""
        if settings.name != self.settings.name or settings.electorate != self.settings.electorate:
            raise ValueError("the watcher name and the number of watchers need a restart")
        self._out = []
        now = self._now
        groups: dict[str, Group] = {}
        for ps in settings.primaries:
            group = self._groups.get(ps.name)
            if group is None:
                group = Group(ps, self._retired.pop(ps.name, PrimaryDurable()), now)
                self._emit(Publish("+monitor", f"{describe(group, group.address)} quorum {ps.quorum}"))
            else:
                group.settings = ps
            groups[ps.name] = group
        for name, group in self._groups.items():
            if name not in groups:
                self._retired[name] = group.durable
                self._emit(Publish("-monitor", describe(group, group.address)))
        self._groups = groups
        self.settings = settings
        self._durable_dirty = False
        out = self._out
        self._out = []
        out.insert(0, PersistState(self.durable))
        return out

    def next_wakeup(self) -> float | None:
        """The earliest time (on the caller's clock) something is due before the next regular
        Tick would find it: a fast re-probe of an instance failing hard, or a candidacy.
        None when nothing is pressing. The caller may Tick then instead of on its grid."""
        due: float | None = None
        # Only restless groups can be odown or failing hard (see tick_schedule.calm); after a
        # reload, until the next tick files them again, any group can.
        restless = self._schedule.restless(self._groups, self.settings)
        for group in self._groups.values() if restless is None else restless:
            if group.odown and group.failover is None and group.next_attempt_at > self._now:
                due = group.next_attempt_at if due is None else min(due, group.next_attempt_at)
            s = group.settings
            for inst in group.instances.values():
                det = inst.detector
                if det.hard_fail_since is not None and det.last_probe_sent is not None:
                    at = det.last_probe_sent + det.probe_interval(s.ping_period, s.crash_detect)
                    due = at if due is None else min(due, at)
        if due is None:
            return None
        return due - self._now + self._raw_last  # core clock -> the caller's clock

    def failover_refusal(self, primary: str) -> str | None:
        """Why an operator's failover of `primary` cannot start now, or None if it can.

        The texts are Sentinel's error replies for SENTINEL FAILOVER."""
        group = self._groups.get(primary)
        if group is None:
            return "ERR No such master with that name"
        if group.failover is not None:
            return "INPROG Failover already in progress"
        if self.in_hold:
            return "INPROG watcher is in hold mode (clock or loop stall), retry later"
        if not self._candidates_exist(group):
            return "NOGOODSLAVE No suitable replica to promote"
        return None

    def primary_is_live(self, primary: str) -> bool:
        """The primary answers and reports role master: an operator's failover of it is a
        planned switchover (FAILOVER TO); otherwise a failover through the election."""
        group = self._groups.get(primary)
        if group is None:
            return False
        info = group.instances[group.address].info
        return self._primary_positively_alive(group) and info is not None and info.role is Role.PRIMARY

    def switchover_refusal(self, primary: str, target: Address | None) -> str | None:
        """Why a planned switchover cannot start now, or None. A switchover needs a healthy
        primary (Redis's FAILOVER runs on it); a dead one needs a failover instead."""
        refusal = self.failover_refusal(primary)
        if refusal is not None:
            return refusal
        group = self._groups[primary]
        if not self.primary_is_live(primary):
            return "NOTREADY the primary is not healthy: use a failover, not a switchover"
        if target is not None:
            verdict = next((v for v in self._rank(group, None) if v.address == target), None)
            if verdict is None:
                return f"ERR {target} is not a known replica of {primary}"
            if not verdict.eligible:
                return f"NOGOODSLAVE {target} cannot be promoted: {verdict.reason}"
        elif selection.best(self._rank(group, None)) is None:
            return "NOGOODSLAVE No suitable replica to promote"
        return None

    def snapshot(self) -> Snapshot:
        return Snapshot(
            watcher=self.name,
            now=self._now,
            in_hold=self.in_hold,
            hold_until=self._hold_until,
            primaries=tuple(
                primary_view(g, self._now, self.name, self._peers, self.settings.opinion_ttl)
                for g in self._groups.values()
            ),
        )

    def status_rows(self) -> list[StatusRow]:
        """What the one-line status (runtime.status_line) shows of each primary."""
        return [status_row(group) for group in self._groups.values()]

    # ------------------------------------------------------------------ clock and hold

    def _advance_clock(self, raw_now: float) -> None:
        gap = raw_now - self._raw_last
        self._raw_last = raw_now
        if gap < 0 or gap > self.settings.hold_trigger:
            self._enter_hold(gap)
            return
        self._now += gap
        if gap > max(self.settings.hold_trigger / 2, 2 * self.settings.tick_interval):
            # Nothing reached us for half the hold trigger (1 s by default; and for two ticks:
            # the loop ticks every tick_interval, which may be configured long): a stall, too
            # short for hold. Not less: a loop starved for a few hundred ms is common on a
            # loaded host, and each stall costs a waiting leader a gossip round trip (a mass
            # failover under CI load met 12 waits with 0.5 s). What we learnt before it may be
            # stale, and what happened during it is still queued behind this event: a
            # leader must hear a majority again before it promotes (see
            # _majority_still_sees_down; simulator seed 1008889: a leader SIGSTOPped for
            # 1.3 s between its freeze and its promotion woke up and promoted before it read
            # the vote request of the epoch that had replaced it).
            self._resumed_at = self._now

    def _enter_hold(self, gap: float) -> None:
        now = self._now
        if self._hold_until is None:
            self._emit(Publish("+tilt", f"#tilt mode entered (clock gap {gap:+.3f}s)"))
        self._hold_until = now + self.settings.hold_duration
        # Opinions were received at unknown ages relative to the jump: forget them.
        self._peers.forget_opinions()
        for group in self._groups.values():
            fo = group.failover
            if fo is not None and fo.phase in (Phase.ELECTION, Phase.SELECT):
                trig = Trigger.LOST if fo.phase is Phase.ELECTION else Trigger.SUPERSEDED
                self._fire(group, trig)
            self._mark_dirty(group)

    def _check_hold_end(self) -> None:
        if self._hold_until is not None and self._now >= self._hold_until:
            self._hold_until = None
            self._emit(Publish("-tilt", "#tilt mode exited"))
            for group in self._groups.values():
                self._mark_dirty(group)

    # ------------------------------------------------------------------ event handlers

    def _on_tick(self) -> None:
        now = self._now
        self._check_hold_end()
        groups = self._groups_to_visit(now)
        # A group filed calm and only now due has no instance contradicting the topology, nor
        # any contradiction on record (see tick_schedule.calm), and neither probes nor
        # verdicts change INFO or the primary's address: _enforce_topology would only clear
        # what is already clear. Restless groups (and every group after a reload or in hold)
        # are not in taken_calm.
        taken_calm = self._schedule.taken_calm
        for group in groups:
            self._schedule_probes(group, now)
            if group.name in taken_calm:
                self._evaluate_and_file_calm(group)
                continue
            self._evaluate(group)
            if group.failover is None:
                # Steady-state reconfiguration is never urgent (it waits convert_after):
                # once a tick is enough, and keeps it off the path of every probe reply.
                self._enforce_topology(group)
            self._reschedule(group)
        heartbeat_due = (
            self._last_heartbeat is None or now - self._last_heartbeat >= self.settings.gossip_period
        )
        if heartbeat_due and self.settings.electorate > 1:
            self._last_heartbeat = now
            views = tuple(self._gossip_view(g) for g in self._groups.values())
            for group, view in zip(self._groups.values(), views, strict=True):
                group.last_gossip = view
            self._emit(SendGossip(self._gossip(views)))

    # ------------------------------------------------------------------ tick scheduling
    # (see tick_schedule.py: a group is visited on a tick only when restless or due)

    def _groups_to_visit(self, now: float) -> list[Group]:
        if self.in_hold or not self._schedule.is_current(self.settings):
            self._schedule.visit_every_group(self._groups, self.settings)
        return self._schedule.take(now, self._groups)

    def _reschedule(self, group: Group) -> None:
        self._schedule.file(group, self.settings, self.in_hold)

    def _reschedule_touched(self, event: Event) -> None:
        """Events change what a group is waiting for (a reply ends a probe in flight, INFO
        may contradict the topology, a peer may say down): file the groups they name again."""
        match event:
            case Tick():
                return  # _on_tick files every group it visits
            case GossipReceived():
                names = [view.name for view in event.gossip.primaries]
            case VoteRequested():
                names = [event.request.primary]
            case VoteReplied():
                names = [event.reply.primary]
            case _:
                names = [event.primary]
        for name in names:
            group = self._groups.get(name)
            if group is not None:
                self._reschedule(group)

    def _on_probe_result(self, event: ProbeReply | ProbeFailed) -> bool:
        """True when the group has been filed again here (the healthy reply's fast path)."""
        group = self._groups.get(event.primary)
        if group is None:
            return False
        inst = group.instances.get(event.address)
        if inst is None:
            return False
        det = inst.detector
        if isinstance(event, ProbeReply):
            if self._on_healthy_reply(group, inst, event.reply):
                return True
            restarted = det.hard_fail_count > 0  # it answers again after refusing: a restart
            det.replied(self._now, event.reply)
            inst.refused = False
            if restarted and inst.info_asked_at is None:
                # Read it now, not an INFO period later: a primary back without its data
                # must be caught before its replicas resync from it (see _restarted_empty).
                self._ask_info(group, inst)
        else:
            det.failed(self._now, event.kind, event.detail)
            inst.refused = event.kind is FailureKind.REFUSED
        self._evaluate(group)
        return False

    def _on_healthy_reply(self, group: Group, inst: Instance, reply: str) -> bool:
        """The steady state's most frequent event, cheaply: a valid reply from an instance
        that was neither down nor failing hard, in a group filed calm (tick_schedule.calm)
        and unchanged since but for the passing of time. Returns False, having done nothing,
        in any other case (the caller then takes the general path). What it does is what
        the general path does for such a reply (no restart to read INFO for), with
        _evaluate_calm in place of _evaluate."""
        det = inst.detector
        if (
            det.hard_fail_count
            or det.down_since is not None
            or self.in_hold
            or not self._schedule.filed_calm(group.name, self.settings)
            or not is_alive_reply(reply)
        ):
            return False
        det.replied(self._now, reply)
        inst.refused = False
        self._evaluate_and_file_calm(group)
        return True

    def _evaluate_and_file_calm(self, group: Group) -> None:
        """_evaluate and file again a group that was calm when last filed, has not changed
        since but by a probe sent or answered and the passing of time, and is not in hold."""
        if not self._evaluate_calm(group):
            self._evaluate(group)
            self._reschedule(group)
        elif group.odown_votes:
            self._reschedule(group)  # restless now: filed the general way
        else:
            # Still calm: the step changed nothing `calm` reads (odown_votes is 0).
            self._schedule.refile_calm(group)

    def _evaluate_calm(self, group: Group) -> bool:
        """What `_evaluate` does for a group as _evaluate_and_file_calm takes it, or False,
        having done nothing, when an instance's down verdict has fallen due (the general
        path then gives it). Why the rest of _evaluate would change nothing:
        * detectors: calm means none down and none failing hard, so one can only go down by
          the unanswered-probe rule, checked here as Detector._is_down checks it
          (conservatively: where this says due and _evaluate finds the instance answering,
          the general path merely runs for nothing);
        * primary_down stays False: no detector is down, and calm means no role mismatch
          and no empty restart;
        * odown: our own opinion is not down (not in hold either), so odown stays False
          (calm: it was) and only the count of peers' down opinions can change: it is
          counted as _evaluate_odown counts it;
        * no failover runs (calm), and none starts without odown.
        The 500-seed simulator trace hash is the proof that no decision changed."""
        now = self._now
        down_after = group.settings.down_after
        for inst in group.instances.values():
            if inst.detector.unanswered_too_long(now, down_after):
                return False
        group.odown_votes = self._peers.down_opinions(group.name, now, self.settings.opinion_ttl)
        return True

    def _on_info(self, event: InfoReply) -> None:
        group = self._groups.get(event.primary)
        if group is None or event.address not in group.instances:
            return
        now = self._now
        inst = group.instances[event.address]
        if self._stale_during_freeze(group, event):
            return
        inst.info = event.info
        inst.info_at = now
        inst.info_asked_at = None
        info = event.info
        if event.before_freeze is not None:
            self._note_freeze(group, event.address, event.before_freeze)
        self._keep_fence(group, inst)
        if event.address == group.address and info.role is Role.PRIMARY:
            empty = self._restarted_empty(group, info)
            if empty != group.restarted_empty:
                group.restarted_empty = empty
                if empty:
                    self._emit(Publish("+reboot-empty", describe(group, group.address)))
            if empty:
                # Keep the old history and offset: they are what the replicas hold and what
                # selection must compare them against.
                self._evaluate(group)
                return
        if event.address == group.address:
            if info.role is Role.PRIMARY:
                # What the primary itself reports is the truth: no replid2 (all zeros) means
                # its history starts at its replid (never promoted, or restarted empty).
                if info.replid2.strip("0"):
                    self._set_history(group, info.replid, info.replid2, info.second_repl_offset)
                else:
                    self._set_history(group, info.replid, "", -1)
                group.primary_offset = info.offset
                group.role_mismatch_since = None
                for link in info.replicas:
                    if link.address not in group.instances:
                        group.instance(link.address, now)
                        self._remember_instances(group)
                        self._emit(Publish("+slave", describe(group, link.address)))
            elif info.role is Role.REPLICA and group.role_mismatch_since is None:
                group.role_mismatch_since = now
        self._evaluate(group)

    def _restarted_empty(self, group: Group, info: InstanceInfo) -> bool:
        """The primary reports a history that neither continues ours nor descends from it, and
        far fewer keys than a replica we read recently that still holds our history: it was
        restarted without persistence (or lost its files). Redis's own answer would be a full
        resync that empties every replica (the documented hazard of auto-restart without
        persistence), so this counts as the primary failing. A restart with its data keeps
        its replid (loaded from the RDB) or its keys, and is left alone."""
        known = group.durable.replid
        if not known or info.keys < 0 or known in (info.replid, info.replid2):
            return False
        horizon = 3 * group.settings.info_period
        parent = group.durable.replid2

        def holds_our_data(other: InstanceInfo) -> bool:
            # On our history, on one that forked from it, or on the one ours forked from (a
            # replica not resynced yet, or an ex-primary replaced while paused, whose writes
            # past the fork would count for little against a primary that holds nothing).
            return (
                other.replid == known or other.replid2 == known or (bool(parent) and other.replid == parent)
            )

        # Clients may already be writing to it, so "no keys" is too strict: it holds less than
        # half of what a node of the old history holds. A restart that loaded its data (an
        # AOF gets a new replid) holds about as much.
        return any(
            inst.info is not None
            and inst.info_at is not None
            and self._now - inst.info_at <= horizon
            and holds_our_data(inst.info)
            and inst.info.offset > 0
            and inst.info.keys > 2 * info.keys
            for inst in group.replicas()
        )

    def _keep_fence(self, group: Group, inst: Instance) -> None:
        """With fencing on, every node (replicas too: any of them may be promoted) must carry
        min-replicas-to-write; INFO shows whether it does. A restarted Redis forgets a
        CONFIG SET, so this is checked on every INFO, not once."""
        s = group.settings
        info = inst.info
        if not s.fencing or info is None or info.fence_configured or info.role is Role.UNKNOWN:
            return
        if inst.fence_sent_at is not None and self._now - inst.fence_sent_at < _FENCE_RESEND:
            return
        inst.fence_sent_at = self._now
        self._emit(Fence(group.name, inst.address, s.fence_min_replicas, s.fence_max_lag))

    def _fence_wait(self, group: Group) -> float:
        """Seconds until the old primary has surely stopped taking writes by itself (0: now).

        Its replicas acknowledge once a second; the primary refuses writes once no
        fence_min_replicas of them acknowledged within max_lag. The last moment one could
        have is bounded by the latest contact with the old primary that any replica we can
        read reports, and by our own last good probe of it. A replica we cannot read may
        still be feeding it: the README states that limit (fencing assumes most replicas
        are on the watchers' side of a partition).
        """
        s = group.settings
        fo = group.failover
        if not s.fencing or fo is None or fo.switchover:
            return 0.0
        old = group.instances.get(fo.old_primary or group.address)
        if old is None or old.refused:
            return 0.0  # nothing listens on the old primary's port: it takes no writes
        if old.detector.positively_alive():
            return 0.0  # we reach it: the promotion pauses and demotes it first (Promote.fence_old)
        last_contact = old.detector.last_ok if old.detector.last_ok is not None else -math.inf
        for contact in fo.frozen_contact.values():
            last_contact = max(last_contact, contact)
        for inst in group.replicas():
            info = inst.info
            if info is None or inst.info_at is None or info.role is not Role.REPLICA:
                continue
            if info.master != old.address:
                continue
            if info.link_up:
                contact = inst.info_at - info.last_io_seconds
            elif info.link_down_seconds > 0:
                contact = inst.info_at - info.link_down_seconds
            else:
                continue  # never connected since it started: it never acknowledged anything
            last_contact = max(last_contact, contact)
        if last_contact == -math.inf:
            return 0.0
        return max(0.0, last_contact + s.fence_lease - self._now)

    def _stale_during_freeze(self, group: Group, event: InfoReply) -> bool:
        """While a frozen selection round runs, a replica's plain INFO answers a request sent
        before its freeze (it was in flight when the round began): its offset may be older
        than the frozen one, so it must not be ranked (simulator seed 63). Only the freeze's
        own answer (which carries the INFO from just before it) counts."""
        fo = group.failover
        return (
            fo is not None
            and fo.phase is Phase.SELECT
            and fo.select_frozen
            and event.before_freeze is None
            and event.address in fo.frozen
        )

    def _note_freeze(self, group: Group, address: Address, before: InstanceInfo) -> None:
        """A replica was detached for selection: keep when it last heard from the old primary
        (its INFO from just before) for the fence's lease; its INFO now shows no primary."""
        fo = group.failover
        if fo is None or address not in fo.frozen:
            return
        old = fo.old_primary or group.address
        if before.role is not Role.REPLICA or before.master != old:
            return  # already detached by an earlier round: the first one's record stands
        if before.link_up:
            fo.frozen_contact[address] = self._now - before.last_io_seconds
        elif before.link_down_seconds > 0:
            fo.frozen_contact[address] = self._now - before.link_down_seconds

    def _on_info_failed(self, event: InfoFailed) -> None:
        group = self._groups.get(event.primary)
        if group is None or event.address not in group.instances:
            return
        inst = group.instances[event.address]
        inst.info_asked_at = None
        inst.info_failed_at = self._now
        self._evaluate(group)

    def _on_gossip(self, event: GossipReceived) -> None:
        gossip = event.gossip
        if not self._peers.receive(gossip, self._now):
            return
        for view in gossip.primaries:
            group = self._groups.get(view.name)
            if group is None:
                continue
            self._adopt_epoch(group, view.current_epoch)
            if view.config_epoch > group.durable.config_epoch:
                self._adopt_config(group, view.config_epoch, view.address, source=gossip.sender)
            if view.config_epoch == group.durable.config_epoch:
                self._learn_history(group, view)
            if view.maintenance_seq > group.maintenance_seq:
                group.maintenance_seq = view.maintenance_seq
                self._set_pause(group, view.paused_for, view.pause_reason)
            self._evaluate(group)

    def _on_vote_request(self, event: VoteRequested) -> None:
        req = event.request
        group = self._groups.get(req.primary)
        if group is None or not self._peers.register(req.sender, self._now):
            return
        self._adopt_epoch(group, req.epoch)
        decision = election.decide_vote(
            group.durable,
            req,
            voter=self.name,
            # While our own promotion is in flight (sent, not yet confirmed or refused), a
            # newer epoch could promote a replica that already started a new history: wait.
            in_hold=self.in_hold or self._promotion_in_flight(group),
            primary_failing=self._primary_failing_here(group),
        )
        self._set_durable(group, decision.durable)
        if decision.newly_granted:
            self._emit(Publish("+vote-for-leader", f"{run_id(req.sender)} {req.epoch}"))
            # Give the candidate we voted for the time to win and act before we try ourselves.
            backoff = self.settings.election_timeout + self.settings.retry_backoff * election.jitter(
                self.name, group.name, req.epoch, "penalty"
            )
            group.next_attempt_at = max(group.next_attempt_at, self._now + backoff)
        self._emit(SendVoteReply(req.sender, decision.reply))

    def _on_vote_reply(self, event: VoteReplied) -> None:
        reply = event.reply
        group = self._groups.get(reply.primary)
        if group is None or not self._peers.register(reply.sender, self._now):
            return
        self._adopt_epoch(group, reply.current_epoch)
        fo = group.failover
        if fo is None or fo.phase is not Phase.ELECTION or reply.epoch != fo.epoch:
            return
        if reply.granted:
            fo.votes.add(reply.sender)
        else:
            fo.refusals.add(reply.sender)
        self._evaluate(group)

    def _on_promote_done(self, event: PromoteDone | SwitchoverDone) -> None:
        """The result of a Promote, or of a Switchover (the same step, done by FAILOVER TO)."""
        group = self._groups.get(event.primary)
        if group is None:
            return
        fo = group.failover
        if fo is None or fo.phase is not Phase.PROMOTE or fo.epoch != event.epoch:
            return
        if event.address != fo.target or fo.switchover != isinstance(event, SwitchoverDone):
            return
        if event.role_ok:
            self._commit_promotion(group)
        else:
            # The step failed midway (a broken connection), or FAILOVER timed out because the
            # target never caught up (the old primary then stays primary): ask the target.
            self._fire(group, Trigger.UNCERTAIN)
            self._ask_info(group, group.instance(event.address, self._now))
        self._evaluate(group)

    def _on_replicaof_done(self, event: ReplicaOfDone) -> None:
        group = self._groups.get(event.primary)
        if group is None or event.address not in group.instances:
            return
        inst = group.instances[event.address]
        fo = group.failover
        if fo is not None and fo.phase is Phase.RECONF and event.epoch == fo.epoch:
            if event.ok:
                fo.reconf_acked.add(event.address)
                self._emit(Publish("+slave-reconf-inprog", describe(group, event.address)))
                self._ask_info(group, inst)
            else:
                failures = fo.reconf_failures.get(event.address, 0) + 1
                fo.reconf_failures[event.address] = failures
                if failures >= _RECONF_ATTEMPTS or inst.detector.down:
                    # Best effort: count it done; steady state repoints it later.
                    fo.reconf_done.add(event.address)
                else:
                    fo.reconf_sent.pop(event.address, None)
                    fo.reconf_retry_at[event.address] = self._now + _RECONF_RETRY_AFTER
        self._evaluate(group)

    def _on_failover_command(self, event: FailoverCommand) -> None:
        group = self._groups.get(event.primary)
        if group is None or self.failover_refusal(event.primary) is not None:
            return
        self._start_election(group, forced=True)
        self._evaluate(group)

    def _on_switchover_command(self, event: SwitchoverCommand) -> None:
        group = self._groups.get(event.primary)
        if group is None or self.switchover_refusal(event.primary, event.target) is not None:
            return
        self._start_election(group, forced=True)
        fo = group.failover
        assert fo is not None
        fo.switchover = True
        fo.switchover_target = event.target
        fo.switchover_timeout = event.timeout
        fo.switchover_force = event.force
        self._evaluate(group)

    def _on_pause_command(self, event: PauseCommand) -> None:
        group = self._groups.get(event.primary)
        if group is None:
            return
        group.maintenance_seq += 1
        self._set_pause(group, event.ttl, event.reason)

    def _set_pause(self, group: Group, ttl: float, reason: str) -> None:
        was = group.paused_until is not None
        if ttl > 0:
            group.paused_until = self._now + ttl
            group.pause_reason = reason
            self._emit(
                Publish("+maintenance", f"{describe(group, group.address)} {ttl:.0f}s {reason}".rstrip())
            )
        else:
            group.paused_until = None
            group.pause_reason = ""
            if was:
                self._emit(Publish("-maintenance", describe(group, group.address)))
        self._mark_dirty(group)

    def _paused(self, group: Group) -> bool:
        if group.paused_until is None:
            return False
        if self._now >= group.paused_until:
            self._set_pause(group, 0, "")
            return False
        return True

    # ------------------------------------------------------------------ probing

    def _schedule_probes(self, group: Group, now: float) -> None:
        s = group.settings
        # Read once per group, not per instance: this runs for every group on every tick.
        ping_period, probe_timeout, crash_detect = s.ping_period, s.probe_timeout, s.crash_detect
        info_period = s.info_period
        for inst in group.instances.values():
            if inst.detector.probe_due(now, ping_period, crash_detect, probe_timeout):
                inst.detector.probe_sent(now)
                self._emit(Probe(group.name, inst.address, timeout=probe_timeout))
            asked_at = inst.info_asked_at
            if asked_at is not None:
                if now - asked_at <= 2 * info_period:
                    continue  # an INFO is in flight
                inst.info_asked_at = None  # the answer was lost; ask again below
            info_at = inst.info_at or -1e18
            failed_at = inst.info_failed_at or -1e18
            last_info = failed_at if failed_at > info_at else info_at
            if last_info == -1e18:  # never asked: the first INFO waits for its start-up slot
                last_info = self._schedule.start_slot(group, info_period) - info_period
            if now - last_info >= info_period:
                self._ask_info(group, inst)

    def _ask_info(self, group: Group, inst: Instance, *, freeze: bool = False) -> None:
        inst.info_asked_at = self._now
        self._emit(QueryInfo(group.name, inst.address, timeout=group.settings.info_period, freeze=freeze))

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self, group: Group) -> None:
        """Recompute verdicts for a group and take every step they allow."""
        now = self._now
        s = group.settings
        down_after, crash_detect = s.down_after, s.crash_detect
        instances = group.instances
        for inst in instances.values():
            if inst.detector.evaluate(now, down_after, crash_detect):
                sign = "+" if inst.detector.down else "-"
                self._emit(Publish(f"{sign}sdown", describe(group, inst.address)))
                self._mark_dirty(group)
        primary = instances[group.address]
        mismatch_since = group.role_mismatch_since
        mismatch = mismatch_since is not None and now - mismatch_since > down_after + 2 * s.info_period
        primary_down = primary.detector.down or mismatch or group.restarted_empty
        if primary_down != group.primary_down:
            group.primary_down = primary_down
            self._mark_dirty(group)
        self._evaluate_odown(group, now)
        if group.failover is not None:
            self._drive_failover(group)
        else:
            self._maybe_start_failover(group)

    def _evaluate_odown(self, group: Group, now: float) -> None:
        s = group.settings
        own = 1 if group.primary_down and not self.in_hold else 0
        votes = own + self._peers.down_opinions(group.name, now, self.settings.opinion_ttl)
        group.odown_votes = votes
        odown = own == 1 and votes >= s.quorum
        if odown and not group.odown:
            group.odown = True
            self._emit(Publish("+odown", f"{describe(group, group.address)} #quorum {votes}/{s.quorum}"))
            # Stand in an order every watcher computes alike (a hash of watcher, primary and
            # epoch), half a backoff (200 ms by default) apart: the first-ranked watcher's
            # request reaches the others before they would stand, so they vote for it rather
            # than split the vote. A random stagger of a few ms did not survive a host losing
            # the primaries of 50 groups at once (messages then take 100-400 ms): 5 attempts
            # per group, the last group switched after 4.3 s; ranked, 1 attempt and 2.15 s
            # (bench/mass_failover.py). A dead first-ranked watcher costs one spacing.
            delay = election.candidacy_delay(
                self.name,
                self._peers.peers,
                group.name,
                group.durable.current_epoch,
                spacing=0.5 * self.settings.retry_backoff,
            )
            group.next_attempt_at = max(group.next_attempt_at, now + delay)
        elif not odown and group.odown:
            group.odown = False
            self._emit(Publish("-odown", describe(group, group.address)))

    def _promotion_in_flight(self, group: Group) -> bool:
        fo = group.failover
        return fo is not None and fo.phase in (Phase.PROMOTE, Phase.VERIFY)

    def _primary_failing_here(self, group: Group) -> bool:
        """Our own evidence that the primary is gone, enough to vote for a failover: it is
        subjectively down here, or our last probe was refused or reset (a crash)."""
        if group.primary_down:
            return True
        det = group.instances[group.address].detector
        return not det.last_outcome_ok and det.hard_fail_count > 0

    def _primary_positively_alive(self, group: Group) -> bool:
        if group.primary_down:
            return False
        return group.instances[group.address].detector.positively_alive()

    # ------------------------------------------------------------------ candidacy and election

    def _candidates_exist(self, group: Group) -> bool:
        # The same eligibility the selection applies: a group whose only replicas are
        # priority 0, of another history or long disconnected must not start an election
        # every backoff (each one persisting a vote on every watcher) only to find none.
        return selection.best(self._rank(group, None)) is not None

    def _peer_leading(self, group: Group) -> bool:
        views = self._peers.fresh_views(group.name, self._now, self.settings.opinion_ttl)
        return any(view.leading_epoch >= group.durable.current_epoch > 0 for _, view in views)

    def _maybe_start_failover(self, group: Group) -> None:
        now = self._now
        if not group.odown or self.in_hold or now < group.next_attempt_at or self._paused(group):
            return
        last = group.last_failover_at
        if last is not None and now - last < group.settings.min_failover_interval:
            return
        if self._peer_leading(group) or not self._candidates_exist(group):
            return
        self._start_election(group, forced=False)

    def _start_election(self, group: Group, *, forced: bool) -> None:
        now = self._now
        epoch = election.next_candidate_epoch(group.durable)
        self._set_durable(
            group, replace(group.durable, current_epoch=epoch, voted_epoch=epoch, voted_for=self.name)
        )
        fo = Failover(epoch=epoch, forced=forced, started_at=now, phase_since=now)
        fo.votes.add(self.name)
        fo.old_primary = group.address
        det = group.instances[group.address].detector
        if det.down_since is not None:
            fo.agree = now - det.down_since
            if det.last_ok is not None:
                fo.detect = det.down_since - det.last_ok
        fo.primary_offset = group.primary_offset
        group.failover = fo
        self._emit(Publish("+new-epoch", str(epoch)))
        self._emit(Publish("+try-failover", describe(group, group.address)))
        self._emit(Publish("+vote-for-leader", f"{run_id(self.name)} {epoch}"))
        if self.settings.electorate > 1:
            self._emit(RequestVotes(VoteRequest(self.name, group.name, epoch, forced)))
        self._mark_dirty(group)

    # ------------------------------------------------------------------ the failover machine

    def _fire(self, group: Group, trigger: Trigger) -> None:
        fo = group.failover
        assert fo is not None
        row = transition(fo.phase, trigger)
        if row.event:
            self._emit(Publish(row.event, describe(group, group.address)))
        if row.next is None:
            group.failover = None
            if not row.aborted:
                fo.enter(fo.phase, self._now)  # close the last phase's duration
                self._emit(Publish("+failover-summary", failover_summary(group, fo, self._now)))
            if row.aborted:
                self._thaw(group, fo)
                # Randomised, and the window doubles with every attempt lost in a row (up to
                # 16x): when message latency outgrows the window (a CPU-starved host running
                # many elections at once), candidates that keep splitting the vote spread out
                # until one asks first, as Raft's randomised timeouts do.
                group.lost_attempts = min(group.lost_attempts + 1, _MAX_BACKOFF_DOUBLINGS)
                window = self.settings.retry_backoff * (1 << (group.lost_attempts - 1))
                # Ranked as the first candidacy is (see _evaluate_odown), half a window per
                # rank, for the election after the latest epoch we know: retries that were
                # only randomised collided again and again when 50 groups failed at once
                # (bench.mass_failover: one group needed 4 elections, 4.2 s). The jitter,
                # under half a rank, still separates watchers that rank alike (they know
                # different peers).
                rank_delay = election.candidacy_delay(
                    self.name,
                    self._peers.peers,
                    group.name,
                    group.durable.current_epoch,
                    spacing=0.5 * window,
                )
                jitter = election.jitter(self.name, group.name, fo.epoch, "retry")
                wait = window * (0.25 + 0.2 * jitter) + rank_delay
                group.next_attempt_at = max(group.next_attempt_at, self._now + wait)
            else:
                group.lost_attempts = 0
        else:
            fo.enter(row.next, self._now)
        self._mark_dirty(group)

    def _drive_failover(self, group: Group) -> None:
        fo = group.failover
        assert fo is not None
        now = self._now
        s = group.settings
        if fo.phase is Phase.ELECTION:
            if fo.epoch < group.durable.current_epoch:
                self._fire(group, Trigger.SUPERSEDED)
            elif election.has_won(len(fo.votes), majority=self.settings.majority, quorum=s.quorum):
                self._emit(Publish("+elected-leader", describe(group, group.address)))
                self._fire(group, Trigger.WON)
                self._begin_selection(group)
            elif now - fo.started_at > self.settings.election_timeout or self._cannot_win(group, fo):
                self._fire(group, Trigger.LOST)
        elif fo.phase is Phase.SELECT:
            if fo.epoch < group.durable.current_epoch or self.in_hold:
                self._fire(group, Trigger.SUPERSEDED)
            else:
                self._try_select(group)
        elif fo.phase is Phase.PROMOTE:
            # The executor always answers; this deadline only covers a lost answer.
            step = fo.switchover_timeout if fo.switchover else self._promote_timeout(group)
            if now - fo.phase_since > 2 * step + 1.0:
                self._fire(group, Trigger.UNCERTAIN)
        elif fo.phase is Phase.VERIFY:
            self._verify_promotion(group)
        elif fo.phase is Phase.RECONF:
            self._reconfigure(group)

    def _cannot_win(self, group: Group, fo: Failover) -> bool:
        """Enough voters said no that a win is impossible: give up now (a split vote), not
        at the election timeout, so the randomised retry comes sooner."""
        undecided = self.settings.electorate - len(fo.votes) - len(fo.refusals - fo.votes)
        needed = max(self.settings.majority, group.settings.quorum)
        return len(fo.votes) + undecided < needed

    def _promote_timeout(self, group: Group) -> float:
        return min(group.settings.failover_timeout, max(1.0, 3 * group.settings.ping_period))

    def _begin_selection(self, group: Group, *, freeze: bool = True) -> None:
        """Ask every reachable replica for fresh INFO. For a promotion, freeze them first
        (detach them from the old primary, in the same step): a replica that still hears the old primary (cut
        off from us, not from them) would otherwise keep applying and acknowledging its writes
        while we choose, get ahead of the replica we promote and lose, in the full resync that
        follows, writes a client had confirmed with WAIT. Frozen, the freshest replica's offset
        is final and holds every confirmed write. A switchover needs none of it: Redis's
        FAILOVER pauses writes on the primary itself. A frozen replica stays detached until
        it is promoted or repointed (RECONF), or the attempt aborts (Unfreeze): with no
        expiry, one waiting for its parallel_syncs turn cannot confirm stray writes either."""
        fo = group.failover
        assert fo is not None
        fo.select_asked_at = self._now
        fo.select_frozen = freeze and not fo.switchover
        for inst in self._selection_pool(group):
            if not inst.detector.down:
                self._ask_info(group, inst, freeze=fo.select_frozen)
                if fo.select_frozen:
                    fo.frozen.add(inst.address)

    def _thaw(self, group: Group, fo: Failover) -> None:
        """Reattach every replica the attempt froze (an abort, or a lag wait that lets them
        catch up): each resumes where it stopped. To the old primary while it is still ours
        and no later attempt runs. When another leader's promotion replaced it, to the new
        primary: pointed back at the old one they would confirm its writes again (simulator
        seed 1000105: a leader of epoch 2, superseded by epoch 1's promotion, reattached a
        replica that epoch 1 had just repointed and its own late freeze had detached). While
        a later attempt runs (a higher epoch, no new topology yet) they stay detached: that
        leader may have frozen them too and be choosing among them; it repoints them, or
        steady state does."""
        old = fo.old_primary or group.address
        target: Address | None = old
        if group.address != old:
            target = group.address
        elif group.durable.current_epoch > fo.epoch:
            target = None
        # Sorted: a set of addresses iterates in hash order, which PYTHONHASHSEED changes,
        # and the core's actions must not depend on the process.
        for address in sorted(fo.frozen):
            if target is not None and address not in (fo.target, target):
                self._emit(Unfreeze(group.name, address, target))
        fo.frozen.clear()
        fo.frozen_contact.clear()

    def rank_candidates(self, primary: str) -> list[selection.Verdict]:
        """Every replica with its verdict, best first, as selection would see it now."""
        group = self._groups[primary]
        fo = group.failover
        fresh_after = fo.select_asked_at if fo is not None and fo.select_asked_at is not None else None
        return self._rank(group, fresh_after)

    def _rank(self, group: Group, fresh_after: float | None) -> list[selection.Verdict]:
        now = self._now
        s = group.settings
        primary = group.instances[group.address]
        primary_info = primary.info
        followed = (
            primary_info.master if primary_info is not None and primary_info.role is Role.REPLICA else None
        )
        # The replication id our primary has now, if its INFO is recent and read since it
        # became our primary (an older one may show it as the replica it was before its
        # promotion, on the history it then shared with the old primary: simulator seed 87).
        # The node it follows, on that same id, is one it resynced from (see Candidate).
        current_replid = ""
        if (
            primary_info is not None
            and primary.info_at is not None
            and now - primary.info_at <= 3 * s.info_period
            and (group.last_failover_at is None or primary.info_at > group.last_failover_at)
        ):
            current_replid = primary_info.replid
        candidates = [
            _candidate(
                inst,
                now,
                adoptable=inst.address == followed,
                primary_synced_from=(
                    inst.address == followed
                    and bool(current_replid)
                    and inst.info is not None
                    and inst.info.replid == current_replid
                ),
            )
            for inst in group.replicas()
        ]
        stranded = self._stranded_primary(group)
        if stranded is not None:
            candidates.append(_candidate(stranded, now, stranded_primary=True))
        # During selection only INFO read after we asked counts; otherwise a few periods.
        max_info_age = max(0.0, now - fresh_after) if fresh_after is not None else 3 * s.info_period
        primary_det = group.instances[group.address].detector
        down_for = now - primary_det.down_since if primary_det.down_since is not None else 0.0
        return selection.rank(
            candidates,
            history=selection.History(group.durable.replid, group.durable.replid2, group.durable.fork),
            primary_offset=group.primary_offset,
            max_info_age=max_info_age,
            max_link_down=down_for + _LINK_DOWN_FACTOR * s.down_after,
            primary_lost_data=group.restarted_empty,
        )

    def _stranded_primary(self, group: Group) -> Instance | None:
        """Our primary, if it was demoted into a replica that nothing feeds: its fresh INFO
        (read since it became ours) says replica, link down, following nothing (a freeze) or
        a node whose fresh INFO says replica with its link down too (a loop: two leaders'
        repointings crossed; a chain that reaches a primary is up and will resync it).
        Its data is then still our history's own, and no other node may hold it: re-promoting
        it is a failover candidate like a replica (simulator seed 1014004: epoch 3's leader
        repointed epoch 4's fresh primary to its own pick, which epoch 4 then repointed to
        it; Redis refuses to sync from a replica with no master link, so neither moved, and
        no replica was on epoch 4's history). One following a primary is not stranded: it
        resyncs from it, and that node is adopted instead (see Candidate)."""
        primary = group.instances[group.address]
        info = primary.info
        horizon = 3 * group.settings.info_period
        if (
            info is None
            or primary.info_at is None
            or info.role is not Role.REPLICA
            or info.link_up
            or self._now - primary.info_at > horizon
            or (group.last_failover_at is not None and primary.info_at <= group.last_failover_at)
        ):
            return None
        if info.master is None or info.master == FREEZE_TARGET:
            return primary
        source = group.instances.get(info.master)
        if (
            source is None
            or source.info is None
            or source.info_at is None
            or self._now - source.info_at > horizon
            or source.info.role is not Role.REPLICA
            or source.info.link_up
        ):
            return None
        return primary

    def _selection_pool(self, group: Group) -> list[Instance]:
        """The instances a selection reads: the replicas, and our primary when stranded."""
        stranded = self._stranded_primary(group)
        replicas = group.replicas()
        return replicas if stranded is None else [*replicas, stranded]

    def _try_select(self, group: Group) -> None:
        fo = group.failover
        assert fo is not None and fo.select_asked_at is not None
        now = self._now
        s = group.settings
        if not fo.forced and not fo.switchover and self.primary_is_live(group.name):
            # The reason for the failover is gone before the point of no return (the fence
            # wait makes this phase last seconds): keep the primary, do not demote it.
            self._fire(group, Trigger.RECOVERED)
            return
        if not fo.forced and not fo.switchover and not group.odown:
            # The quorum that found the primary down no longer does: the other watchers reach
            # it again. Promoting now would replace a primary that most of them see alive
            # (simulator seed 1001580: this leader alone could not reach it, through a lease
            # wait of seconds).
            self._fire(group, Trigger.RECOVERED)
            return
        waited = now - fo.select_asked_at
        pending = [
            inst
            for inst in self._selection_pool(group)
            if not inst.detector.down
            and (inst.info_at is None or inst.info_at < fo.select_asked_at)
            and (inst.info_failed_at is None or inst.info_failed_at < fo.select_asked_at)
        ]
        # Wait for every reachable replica's fresh INFO: at most one ping period, or, for a
        # frozen round, until each answered or failed (every QueryInfo gets one or the other
        # within its info_period timeout): choosing from the first answers alone would let a
        # slower replica hold confirmed writes the chosen one lacks (simulator seed 60).
        limit = s.info_period + s.ping_period if fo.select_frozen else s.ping_period
        if pending and waited < limit:
            return
        if not fo.forced and not fo.switchover and self._primary_positively_alive(group):
            # The primary answers probes again but its INFO predates this round (it was cut
            # off from us for a while): read it before choosing, so that a primary that is
            # still a primary ends the attempt above (RECOVERED) instead of being replaced
            # (simulator seed 1155: its last INFO was from before it was promoted).
            primary = group.instances[group.address]
            if primary.info_at is None or primary.info_at < fo.select_asked_at:
                if primary.info_asked_at is None:
                    self._ask_info(group, primary)
                if waited < limit + s.info_period:
                    return
        verdicts = self._rank(group, fo.select_asked_at)
        if fo.switchover:
            self._select_switchover_target(group, verdicts)
            return
        if selection.best(verdicts) is None:
            self._fire(group, Trigger.NO_CANDIDATE)
            return
        choice = selection.best(selection.within_lag(verdicts, s.max_lag_bytes))
        if choice is None:
            # Every eligible replica lags more than max_lag_bytes: give them lag_wait to
            # catch up (unfrozen, re-reading INFO each period), then give up rather than
            # lose data.
            if now - fo.phase_since < s.lag_wait:
                self._thaw(group, fo)
                if waited >= s.ping_period:
                    self._begin_selection(group, freeze=False)
                return
            self._fire(group, Trigger.NO_CANDIDATE)
            return
        if not fo.select_frozen:
            # Caught up on live offsets: freeze and read them once more before choosing.
            self._begin_selection(group)
            return
        fence_wait = self._fence_wait(group)
        if fence_wait > 0:
            # The old primary may still take writes: wait its lease out (re-reading INFO each
            # period, the replicas' view of it may change), bounded like the lag wait.
            if now - fo.phase_since < s.lag_wait + s.fence_lease:
                if fo.fence_wait_started is None:
                    fo.fence_wait_started = now
                    self._emit(Publish("+fence-wait", f"{describe(group, group.address)} {fence_wait:.1f}s"))
                if waited >= s.ping_period:
                    self._begin_selection(group)
                return
            self._fire(group, Trigger.NO_CANDIDATE)
            return
        if not fo.forced and not self._majority_still_sees_down(group):
            # Elected seconds ago (the fence wait), the leader may since have been cut off
            # with a minority while the others reach the primary again; their "up" cannot
            # reach us through the cut, so what we need is positive and fresh: a majority
            # saying down now (simulator seed 1016693: a leader that heard only 2 of 5
            # watchers promoted a replica of a primary the other 3 reached). Give a late
            # heartbeat the time to arrive before giving up.
            if fo.majority_wait_started is None:
                fo.majority_wait_started = now
                self._emit(Publish("+majority-wait", describe(group, group.address)))
            if now - fo.majority_wait_started < self._majority_window(group) + self.settings.opinion_ttl:
                if waited >= s.ping_period:
                    self._begin_selection(group)
                return
            self._fire(group, Trigger.MAJORITY_LOST)
            return
        fo.target = choice.address
        fo.target_offset = choice.offset
        # How many replicas answered this round (frozen, or read): "promoted while it could
        # see every replica" is the condition under which no confirmed write may be lost.
        replicas = group.replicas()
        fo.replicas_seen = sum(
            1 for inst in replicas if inst.info_at is not None and inst.info_at >= fo.select_asked_at
        )
        fo.replicas_known = len(replicas)
        self._emit(Publish("+selected-slave", describe(group, choice.address)))
        self._fire(group, Trigger.SELECTED)
        fo.promote_sent_at = now
        # Fence a reachable old primary actively (pause, then demote, before announcing).
        # One we cannot reach has had its lease waited out above.
        old = group.instances.get(fo.old_primary or group.address)
        reachable_old = old is not None and old.address != choice.address and old.detector.last_outcome_ok
        fence_old = old.address if s.fencing and reachable_old and old is not None else None
        self._emit(
            Promote(
                group.name,
                choice.address,
                fo.epoch,
                timeout=self._promote_timeout(group),
                fence_old=fence_old,
                fence_pause=s.fence_lease if fence_old is not None else 0.0,
            )
        )

    def _select_switchover_target(self, group: Group, verdicts: list[selection.Verdict]) -> None:
        """A switchover needs no lag gate: Redis's FAILOVER itself waits (with writes paused)
        until the target has everything the primary acknowledged."""
        fo = group.failover
        assert fo is not None
        wanted = fo.switchover_target
        choice = next((v for v in verdicts if v.eligible and (wanted is None or v.address == wanted)), None)
        if choice is None:
            self._fire(group, Trigger.NO_CANDIDATE)
            return
        fo.target = choice.address
        fo.target_offset = choice.offset
        self._emit(Publish("+selected-slave", describe(group, choice.address)))
        self._fire(group, Trigger.SELECTED)
        fo.promote_sent_at = self._now
        self._emit(
            Switchover(
                group.name,
                group.address,
                choice.address,
                fo.epoch,
                timeout=fo.switchover_timeout,
                force=fo.switchover_force,
            )
        )

    def _verify_promotion(self, group: Group) -> None:
        fo = group.failover
        assert fo is not None and fo.target is not None
        inst = group.instance(fo.target, self._now)
        if inst.info_at is not None and inst.info_at > fo.phase_since and inst.info is not None:
            if inst.info.role is Role.PRIMARY:
                self._commit_promotion(group)
                return
            if inst.info.role is Role.REPLICA:
                self._fire(group, Trigger.REFUSED)
                return
        if self._now - fo.phase_since > group.settings.failover_timeout:
            self._fire(group, Trigger.GAVE_UP)
        elif inst.info_asked_at is None:
            self._ask_info(group, inst)

    def _commit_promotion(self, group: Group) -> None:
        """The point of no return: the new primary is confirmed; make it the topology."""
        fo = group.failover
        assert fo is not None and fo.target is not None
        old = group.address
        new = fo.target
        self._emit(Publish("+promoted-slave", describe(group, new)))
        self._switch(group, fo.epoch, new, leader=True)
        target_info = group.instances[new].info
        if target_info is not None and target_info.role is Role.REPLICA:
            # Until the new primary's INFO reports its fork point (second_repl_offset), the
            # offset we selected it at is a safe lower bound: whatever a replica holds of the
            # old history beyond it may have been written after the fork. The history it
            # forked from is the one it was on (Redis makes that its replid2), which may be
            # newer than ours if the previous primary was lost before we read its new replid
            # (chaos schedule:1014: two failovers within 5 s).
            parent = target_info.replid or group.durable.replid2
            self._set_history(group, "", parent, target_info.offset + 1)
        self._ask_info(group, group.instances[new])  # learn its new replid now, not in a period
        self._fire(group, Trigger.PROMOTED)
        # Repoint every other replica that answers, and the old primary if it answers.
        fo.to_reconf = [
            inst.address
            for inst in group.replicas()
            if inst.address != new and (inst.address != old or not inst.detector.down)
        ]
        self._reconfigure(group)

    def _reconfigure(self, group: Group) -> None:
        fo = group.failover
        assert fo is not None and fo.target is not None
        now = self._now
        s = group.settings
        new = fo.target
        for addr, sent_at in fo.reconf_sent.items():
            if addr in fo.reconf_done:
                continue
            inst = group.instances[addr]
            info = inst.info
            confirmed = (
                inst.info_at is not None
                and inst.info_at > sent_at
                and info is not None
                and info.role is Role.REPLICA
                and info.master == new
            )
            if confirmed or now - sent_at > _RECONF_ASSUME_DONE or inst.detector.down:
                fo.reconf_done.add(addr)
                if confirmed:
                    self._emit(Publish("+slave-reconf-done", describe(group, addr)))
            elif inst.info_asked_at is None and addr in fo.reconf_acked:
                # The INFO we got may have been asked before REPLICAOF: ask again now rather
                # than wait a whole info period.
                self._ask_info(group, inst)
        in_progress = sum(1 for a in fo.reconf_sent if a not in fo.reconf_done)
        superseded = group.durable.config_epoch > fo.epoch
        for addr in fo.to_reconf:
            if in_progress >= s.parallel_syncs:
                break
            if addr in fo.reconf_sent or fo.reconf_retry_at.get(addr, now) > now:
                continue
            if superseded:
                # A newer topology exists (a later leader switched): repointing a replica
                # to our target now would undo its work.
                fo.reconf_done.add(addr)
                fo.reconf_sent[addr] = now
                continue
            if group.instances[addr].detector.down:
                fo.reconf_done.add(addr)
                fo.reconf_sent[addr] = now
                continue
            fo.reconf_sent[addr] = now
            in_progress += 1
            self._emit(Publish("+slave-reconf-sent", describe(group, addr)))
            self._emit(ReplicaOf(group.name, addr, new, fo.epoch, timeout=self._promote_timeout(group)))
        if all(a in fo.reconf_done for a in fo.to_reconf):
            self._fire(group, Trigger.RECONFIGURED)
        elif now - fo.phase_since > s.failover_timeout:
            self._fire(group, Trigger.GAVE_UP)

    # ------------------------------------------------------------------ topology

    def _switch(self, group: Group, epoch: int, new: Address, *, leader: bool) -> None:
        old = group.address
        self._set_durable(group, replace(group.durable, config_epoch=epoch, address=new))
        self._adopt_epoch(group, epoch)
        group.instance(new, self._now)
        group.instance(old, self._now)
        self._remember_instances(group)
        group.last_failover_at = self._now
        # The new primary's history descends from the old one's: until its INFO tells us
        # its new replid, the old replid is what its replicas share.
        if group.durable.replid:
            self._set_history(group, "", group.durable.replid, -1)
        else:
            self._set_history(group, "", group.durable.replid2, -1)
        group.primary_offset = None
        group.role_mismatch_since = None
        group.restarted_empty = False
        group.lost_attempts = 0
        if group.odown:
            group.odown = False
        if old != new:
            msg = f"{group.name} {old.host} {old.port} {new.host} {new.port}"
            self._emit(Publish("+switch-master", msg))
        if not leader:
            # Our own attempt is moot: a newer topology exists.
            fo = group.failover
            if fo is not None and fo.phase in (Phase.ELECTION, Phase.SELECT):
                trig = Trigger.LOST if fo.phase is Phase.ELECTION else Trigger.SUPERSEDED
                self._fire(group, trig)
        self._mark_dirty(group)

    def _adopt_config(self, group: Group, epoch: int, address: Address, *, source: str) -> None:
        fo = group.failover
        if fo is not None and fo.phase not in (Phase.ELECTION, Phase.SELECT) and fo.epoch >= epoch:
            return  # we are committing a newer or equal epoch ourselves
        # Sentinel's `%@` form with the primary's address before the switch; the daemon puts the
        # peer's run id and address in place of its name (the core does not know addresses).
        before = group.address
        self._emit(
            Publish("+config-update-from", f"sentinel {source} @ {group.name} {before.host} {before.port}")
        )
        self._switch(group, epoch, address, leader=False)
        self._ask_info(group, group.instances[address])
        if fo is not None and group.failover is fo:
            # We were past promotion in an older epoch: the newer topology wins.
            group.failover = None

    def _adopt_epoch(self, group: Group, epoch: int) -> None:
        if epoch > group.durable.current_epoch:
            self._set_durable(group, replace(group.durable, current_epoch=epoch))
            self._emit(Publish("+new-epoch", str(epoch)))

    def _gossip(self, views: tuple[PrimaryGossip, ...]) -> Gossip:
        return Gossip(
            self.name, self.in_hold, views, sent_ms=int(self._now * 1000), echoes=self._peers.echoes()
        )

    def _majority_window(self, group: Group) -> float:
        # down_after: how stale an opinion the failure detector itself tolerates; at least
        # two heartbeats, since a peer echoes our stamp only in its next gossip.
        return max(group.settings.down_after, 2 * self.settings.gossip_period)

    def _majority_still_sees_down(self, group: Group) -> bool:
        """A majority of all watchers, this one included, say the primary is down in views
        sent within the majority window: each echoes a gossip of ours from that window (and
        from after our last stall), so a view the network held back through a partition, or
        one we read before we stalled, does not count."""
        if not group.primary_down or self.in_hold:
            return False
        window = self._majority_window(group)
        since_ms = int(max(self._now - window, self._resumed_at) * 1000)
        agree = 1 + self._peers.down_opinions(group.name, self._now, window, echoing_since_ms=since_ms)
        return agree >= self.settings.majority

    def _majority_current(self, group: Group, since: float) -> bool:
        """A majority of watchers share our config epoch and none knows newer, in views they
        sent after `since` (they echo a gossip of ours from then on): a view the network held
        back through a partition must not vouch for a topology it predates."""
        mine = group.durable.config_epoch
        agree = 1
        views = self._peers.fresh_views(
            group.name, self._now, self.settings.opinion_ttl, echoing_since_ms=int(since * 1000)
        )
        for _, view in views:
            if view.config_epoch > mine or view.leading_epoch > 0:
                return False
            if view.config_epoch == mine:
                agree += 1
        return agree >= self.settings.majority

    def _enforce_topology(self, group: Group) -> None:
        """Demote a stray primary and repoint a misdirected replica, carefully (see top)."""
        now = self._now
        s = group.settings
        address = group.address
        max_age = 3 * s.info_period
        primary_sane: bool | None = None  # worked out only when some instance contradicts
        for inst in group.replicas():
            info = inst.info
            fresh = inst.info_at is not None and now - inst.info_at <= max_age
            wrong = (
                fresh
                and info is not None
                and not inst.detector.down
                and (info.role is Role.PRIMARY or (info.role is Role.REPLICA and info.master != address))
            )
            if not wrong:
                inst.contradicting_since = None
                inst.contradiction = None
                continue
            assert info is not None
            # The clock restarts whenever what it reports changes: a replica that followed the
            # wrong primary and has just been PROMOTED is a new situation, not an old one.
            seen = (info.role, info.master)
            if inst.contradicting_since is None or inst.contradiction != seen:
                inst.contradicting_since = now
                inst.contradiction = seen
            primary = group.instances[address]
            if primary_sane is None:
                primary_sane = (
                    self._primary_positively_alive(group)
                    and primary.info is not None
                    and primary.info.role is Role.PRIMARY
                    and primary.info_at is not None
                    and now - primary.info_at <= max_age
                )
            # The primary's INFO must postdate the contradiction: a stray primary may be one
            # our primary has just handed over to (a FAILOVER TO that ran late, when an
            # operator's switchover had already given up), and demoting it on an older INFO
            # makes a cycle, each following the other (simulator seed 1000423). Ask now
            # rather than wait for the next period.
            primary_read_since = primary.info_at is not None and primary.info_at > inst.contradicting_since
            if primary_sane and not primary_read_since and primary.info_asked_at is None:
                self._ask_info(group, primary)
            # With fencing, a contradiction is fixed as soon as a current majority vouches for
            # our topology (views sent after it appeared): a stray primary may have a replica
            # acking it (a restarted old primary) and then takes writes, lease or not; and a
            # replica following a node that is not our primary (restarted with the old
            # primary in its config) is the ack that keeps that node's fence open (simulator
            # seed 1009680). The majority test is what guards against repointing on a stale
            # topology, not the settle time.
            settle = 0.0 if s.fencing else s.convert_after
            if (
                now - inst.contradicting_since < settle
                or self.in_hold
                or not primary_sane
                or not primary_read_since
                or (inst.convert_sent_at is not None and now - inst.convert_sent_at < s.convert_after)
                or not self._majority_current(group, inst.contradicting_since)
            ):
                continue
            assert info is not None
            inst.convert_sent_at = now
            event = "+convert-to-slave" if info.role is Role.PRIMARY else "+fix-slave-config"
            self._emit(Publish(event, describe(group, inst.address)))
            self._emit(
                ReplicaOf(
                    group.name,
                    inst.address,
                    group.address,
                    group.durable.config_epoch,
                    timeout=self._promote_timeout(group),
                )
            )

    # ------------------------------------------------------------------ gossip and durability

    def _gossip_view(self, group: Group) -> PrimaryGossip:
        d = group.durable
        fo = group.failover
        return PrimaryGossip(
            name=group.name,
            says_down=group.primary_down and not self.in_hold,
            current_epoch=d.current_epoch,
            config_epoch=d.config_epoch,
            address=group.address,
            voted_epoch=d.voted_epoch,
            voted_for=d.voted_for,
            leading_epoch=fo.epoch if fo is not None and fo.phase is not Phase.ELECTION else 0,
            replid=d.replid,
            replid2=d.replid2,
            fork=d.fork,
            maintenance_seq=group.maintenance_seq,
            # Whole seconds, so a pause does not make every push look like a change.
            paused_for=math.ceil(group.paused_until - self._now) if group.paused_until else 0,
            pause_reason=group.pause_reason,
        )

    def _mark_dirty(self, group: Group) -> None:
        self._dirty_groups.add(group.name)

    def _push_changed_gossip(self) -> None:
        dirty = self._dirty_groups
        if not dirty:
            return
        changed: list[PrimaryGossip] = []
        for name in sorted(dirty):
            group = self._groups[name]
            view = self._gossip_view(group)
            if view != group.last_gossip:
                group.last_gossip = view
                changed.append(view)
        dirty.clear()
        if changed and self.settings.electorate > 1:
            self._emit(SendGossip(self._gossip(tuple(changed))))

    def _learn_history(self, group: Group, view: PrimaryGossip) -> None:
        """Fill in what we do not know of the primary's history from a peer on the same
        topology (never overwrite what we read ourselves)."""
        d = group.durable
        if d.replid or not view.replid:
            # We read the primary's own INFO (the truth), or the peer knows no more than we.
            if not d.replid and d.fork < 0 and view.fork >= 0 and view.replid2:
                # Ours is only _switch's guess (the new primary descends from the one we
                # had), the peer's names the fork point: the leader's record of what it
                # promoted from, read from the target. The guess is wrong when the new
                # topology came from a competing leader (simulator seed 1014004: the leader
                # of epoch 3 guessed epoch 4's primary descended from its own, and promoted
                # a replica that had diverged from it).
                self._set_history(group, d.replid, view.replid2, view.fork)
            return
        self._set_history(group, view.replid, view.replid2, view.fork)

    def _set_history(self, group: Group, replid: str, replid2: str, fork: int) -> None:
        """Record the primary's replication history (durable: see PrimaryDurable)."""
        d = group.durable
        if (d.replid, d.replid2, d.fork) != (replid, replid2, fork):
            self._set_durable(group, replace(d, replid=replid, replid2=replid2, fork=fork))

    def _remember_instances(self, group: Group) -> None:
        known = tuple(sorted(group.instances))
        if known != group.durable.known:
            self._set_durable(group, replace(group.durable, known=known))

    def _set_durable(self, group: Group, durable: PrimaryDurable) -> None:
        if durable != group.durable:
            group.durable = durable
            self._durable_dirty = True
            self._mark_dirty(group)

    def _emit(self, action: Action) -> None:
        self._out.append(action)


def _candidate(
    inst: Instance,
    now: float,
    *,
    adoptable: bool = False,
    primary_synced_from: bool = False,
    stranded_primary: bool = False,
) -> selection.Candidate:
    """What selection needs to know of one instance, as this watcher sees it now."""
    return selection.Candidate(
        address=inst.address,
        down=inst.detector.down,
        reachable=inst.detector.last_outcome_ok,
        info=inst.info,
        info_age=None if inst.info_at is None else now - inst.info_at,
        adoptable=adoptable,
        primary_synced_from=primary_synced_from,
        stranded_primary=stranded_primary,
    )
