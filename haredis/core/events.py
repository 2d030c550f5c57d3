"""Inputs to the core. Every event carries `now`: the watcher's monotonic clock in seconds.

The runtime (or the simulator) creates these from timers, Redis replies, peer messages and
operator commands; the core never asks the clock or the network anything itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from haredis.core.messages import Gossip, VoteReply, VoteRequest
from haredis.core.model import Address, InstanceInfo


class FailureKind(enum.Enum):
    REFUSED = "refused"  # connection refused: nothing listens, the process is gone
    RESET = "reset"  # connection reset or closed by the peer mid-request
    TIMEOUT = "timeout"  # no answer in time: hung, paused or partitioned
    ERROR = "error"  # anything else (auth failure, protocol error, DNS failure)

    @property
    def is_hard(self) -> bool:
        """Hard evidence that the process is gone, rather than slow or unreachable."""
        return self in (FailureKind.REFUSED, FailureKind.RESET)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReply:
    """A reply to PING. `reply` is the status or error text: PONG, LOADING, MASTERDOWN, BUSY…"""

    now: float
    primary: str
    address: Address
    reply: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeFailed:
    now: float
    primary: str
    address: Address
    kind: FailureKind
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoReply:
    now: float
    primary: str
    address: Address
    info: InstanceInfo
    # Set exactly when this answers a QueryInfo(freeze=True): the INFO read just before the
    # replica was detached (an instance that was not a replica, left alone: the same INFO).
    before_freeze: InstanceInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoFailed:
    now: float
    primary: str
    address: Address
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipReceived:
    """An authenticated gossip message from a configured peer (the runtime drops the rest)."""

    now: float
    gossip: Gossip


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteRequested:
    now: float
    request: VoteRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteReplied:
    now: float
    reply: VoteReply


@dataclass(frozen=True, slots=True, kw_only=True)
class PromoteDone:
    """Result of a Promote action. `role_ok` is True only if ROLE confirmed `master`."""

    now: float
    primary: str
    address: Address
    epoch: int
    role_ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaOfDone:
    now: float
    primary: str
    address: Address
    target: Address
    epoch: int
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FailoverCommand:
    """An operator asks for a failover of `primary` now (SENTINEL FAILOVER, haredis failover).

    It still goes through an election (so two watchers never act in one epoch), but voters
    grant it even while they can reach the primary.
    """

    now: float
    primary: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchoverCommand:
    """An operator asks for a planned switchover of a HEALTHY primary to `target` (or the
    best replica): Redis's own `FAILOVER TO … TIMEOUT`, which pauses writes until the target
    has every acknowledged write, so nothing acknowledged is lost. It goes through an
    election like any failover, so exactly one watcher runs it and the epoch moves with it."""

    now: float
    primary: str
    target: Address | None = None
    timeout: float = 10.0
    force: bool = False  # give up the no-loss guarantee if the target does not catch up


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchoverDone:
    """Result of a Switchover action. `role_ok`: the target now reports role master."""

    now: float
    primary: str
    address: Address  # the target
    epoch: int
    role_ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseCommand:
    """Maintenance mode: observe, but start no automatic failover of `primary` for `ttl`
    seconds (0 resumes). Gossiped to every watcher."""

    now: float
    primary: str
    ttl: float
    reason: str = ""


Event = (
    Tick
    | ProbeReply
    | ProbeFailed
    | InfoReply
    | InfoFailed
    | GossipReceived
    | VoteRequested
    | VoteReplied
    | PromoteDone
    | ReplicaOfDone
    | FailoverCommand
    | SwitchoverCommand
    | SwitchoverDone
    | PauseCommand
)
