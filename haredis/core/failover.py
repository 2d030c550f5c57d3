"""The failover state machine of the leader, as a table you can read top to bottom.

A watcher that sees its primary objectively down (or is told to fail over) becomes a
candidate: ELECTION. If it wins, it leads the failover of that epoch through the phases
below; any other outcome ends the attempt with an abort event and a randomised backoff.

    phase      what happens there                                   leaves on
    ---------  ---------------------------------------------------  -------------------------
    ELECTION   asked every peer for its vote in a new epoch          WON, LOST (timeout),
                                                                     SUPERSEDED (higher epoch)
    SELECT     re-read INFO of every replica, rank them, wait a      SELECTED, NO_CANDIDATE,
               bounded time for the best to be within max_lag_bytes  SUPERSEDED, RECOVERED,
               (and, with fencing, for the old primary's lease),     MAJORITY_LOST
               and for a majority of watchers, freshly heard, that
               still find the primary down
    PROMOTE    REPLICAOF NO ONE + CLIENT KILL + ROLE in one step     PROMOTED, UNCERTAIN
               (any failure is UNCERTAIN: the command may have run)
    VERIFY     the promote step failed midway: poll INFO of the      PROMOTED, REFUSED,
               target until it says master or slave                  GAVE_UP
    RECONF     the new topology is already published (clients see   RECONFIGURED, GAVE_UP
               the new primary); repoint the other replicas and a
               reachable old primary, parallel_syncs at a time

Rules:
* Only PROMOTED commits: it sets config_epoch = the failover epoch and the new address,
  persists them, and publishes +switch-master. Before it, every exit is a clean abort.
* After PROMOTE was sent, SUPERSEDED is no longer an exit: a promotion may have happened, so
  we find out (VERIFY) rather than walk away. A stray primary left behind by an abort is
  demoted by the steady-state rules (see watcher.py), never silently kept.
* RECONF cannot abort; when it gives up it just ends (stragglers are fixed by steady state).
* Every phase has a deadline (`phase_deadline`); the watcher fires GAVE_UP/LOST/NO_CANDIDATE
  when it passes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from haredis.core.model import Address


class Phase(enum.Enum):
    ELECTION = "wait_start"
    SELECT = "select_slave"
    PROMOTE = "send_slaveof_noone"
    VERIFY = "wait_promotion"
    RECONF = "reconf_slaves"


class Trigger(enum.Enum):
    WON = "won"
    LOST = "lost"
    SUPERSEDED = "superseded"
    SELECTED = "selected"
    NO_CANDIDATE = "no_candidate"
    PROMOTED = "promoted"
    UNCERTAIN = "uncertain"
    REFUSED = "refused"
    GAVE_UP = "gave_up"
    RECONFIGURED = "reconfigured"
    RECOVERED = "recovered"
    MAJORITY_LOST = "majority_lost"


@dataclass(frozen=True, slots=True)
class Transition:
    phase: Phase
    trigger: Trigger
    next: Phase | None  # None: the attempt is over
    event: str  # the Sentinel event published on this transition ("" for none)
    aborted: bool = False  # the attempt failed; back off before the next one


TRANSITIONS: tuple[Transition, ...] = (
    Transition(Phase.ELECTION, Trigger.WON, Phase.SELECT, "+failover-state-select-slave"),
    Transition(Phase.ELECTION, Trigger.LOST, None, "-failover-abort-not-elected", aborted=True),
    Transition(Phase.ELECTION, Trigger.SUPERSEDED, None, "-failover-abort-not-elected", aborted=True),
    Transition(Phase.SELECT, Trigger.SELECTED, Phase.PROMOTE, "+failover-state-send-slaveof-noone"),
    Transition(Phase.SELECT, Trigger.NO_CANDIDATE, None, "-failover-abort-no-good-slave", aborted=True),
    Transition(Phase.SELECT, Trigger.SUPERSEDED, None, "-failover-abort-superseded", aborted=True),
    Transition(Phase.SELECT, Trigger.RECOVERED, None, "-failover-abort-primary-recovered", aborted=True),
    Transition(Phase.SELECT, Trigger.MAJORITY_LOST, None, "-failover-abort-majority-lost", aborted=True),
    Transition(Phase.PROMOTE, Trigger.PROMOTED, Phase.RECONF, "+failover-state-reconf-slaves"),
    Transition(Phase.PROMOTE, Trigger.UNCERTAIN, Phase.VERIFY, "+failover-state-wait-promotion"),
    Transition(Phase.VERIFY, Trigger.PROMOTED, Phase.RECONF, "+failover-state-reconf-slaves"),
    Transition(Phase.VERIFY, Trigger.REFUSED, None, "-failover-abort-slave-timeout", aborted=True),
    Transition(Phase.VERIFY, Trigger.GAVE_UP, None, "-failover-abort-slave-timeout", aborted=True),
    Transition(Phase.RECONF, Trigger.RECONFIGURED, None, "+failover-end"),
    Transition(Phase.RECONF, Trigger.GAVE_UP, None, "+failover-end-for-timeout"),
)

_TABLE: dict[tuple[Phase, Trigger], Transition] = {(t.phase, t.trigger): t for t in TRANSITIONS}


class IllegalTransition(Exception):
    """A bug in the watcher: it fired a trigger the table has no row for."""


def transition(phase: Phase, trigger: Trigger) -> Transition:
    try:
        return _TABLE[(phase, trigger)]
    except KeyError:
        raise IllegalTransition(f"no transition from {phase.name} on {trigger.name}") from None


def accepts(phase: Phase, trigger: Trigger) -> bool:
    return (phase, trigger) in _TABLE


@dataclass(slots=True)
class Failover:
    """One attempt, from candidacy to the end. Mutable, owned by its primary's group."""

    epoch: int
    forced: bool
    started_at: float
    # A planned switchover (FAILOVER TO on the live primary) rather than a promotion.
    switchover: bool = False
    switchover_target: Address | None = None
    switchover_timeout: float = 10.0
    switchover_force: bool = False
    phase: Phase = Phase.ELECTION
    phase_since: float = 0.0
    votes: set[str] = field(default_factory=set)
    refusals: set[str] = field(default_factory=set)  # voters that answered no in this epoch
    old_primary: Address | None = None
    fence_wait_started: float | None = None  # when SELECT began waiting out the write fence
    majority_wait_started: float | None = None  # when SELECT began waiting for a fresh majority
    target: Address | None = None
    select_asked_at: float | None = None  # when fresh INFO was requested for selection
    select_frozen: bool = False  # that request froze (detached) the replicas first
    # Replicas frozen by this attempt; a ReplicaOf or the Promote ends a freeze, an
    # abort ends them all (Unfreeze). With the last contact each had with the old primary.
    frozen: set[Address] = field(default_factory=set)
    frozen_contact: dict[Address, float] = field(default_factory=dict)
    promote_sent_at: float | None = None
    # RECONF bookkeeping: instances to repoint, those sent (with when) and those done.
    to_reconf: list[Address] = field(default_factory=list)
    reconf_sent: dict[Address, float] = field(default_factory=dict)
    reconf_acked: set[Address] = field(default_factory=set)  # REPLICAOF answered OK
    reconf_done: set[Address] = field(default_factory=set)
    # Failed REPLICAOFs per instance, and when the next may be sent (see watcher's retry).
    reconf_failures: dict[Address, int] = field(default_factory=dict)
    reconf_retry_at: dict[Address, float] = field(default_factory=dict)
    phase_durations: dict[str, float] = field(default_factory=dict)
    # For the summary published at the end (haredis history, metrics).
    detect: float | None = None  # last good reply of the primary -> subjectively down
    agree: float | None = None  # subjectively down -> this attempt started
    primary_offset: int | None = None  # the primary's last known offset
    target_offset: int | None = None  # the chosen replica's offset at selection
    replicas_seen: int = 0  # replicas that answered the selection round (switchover: 0/0)
    replicas_known: int = 0

    def enter(self, phase: Phase, now: float) -> None:
        self.phase_durations[self.phase.value] = now - self.phase_since
        self.phase = phase
        self.phase_since = now
