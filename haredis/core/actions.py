"""Outputs of the core: what the runtime (or the simulator) must do.

Contract for executors: the actions of one `Watcher.handle` call are executed IN ORDER, and
`PersistState` is a barrier: nothing after it may be executed (no message sent, no Redis
command issued) until the state is durable. The core always puts it first in a batch, so a
vote, an epoch or a topology is on disk before any peer or client can learn of it. If the
write fails, the executor must drop the rest of the batch and stop the watcher.

Every action that expects an answer gets exactly one result event back (a reply, a failure
or a timeout), so the core never waits forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from haredis.core.messages import Gossip, VoteReply, VoteRequest
from haredis.core.model import Address, DurableState


@dataclass(frozen=True, slots=True)
class PersistState:
    """Write the durable state (temp file, fsync, rename) before anything else in the batch.

    This carries every vote (the issue's `PersistVote`), every epoch and every topology.
    """

    state: DurableState


@dataclass(frozen=True, slots=True)
class Probe:
    """PING the instance; answer with ProbeReply or ProbeFailed within `timeout`."""

    primary: str
    address: Address
    timeout: float


@dataclass(frozen=True, slots=True)
class QueryInfo:
    """INFO (server + replication); answer with InfoReply or InfoFailed within `timeout`.

    With `freeze` > 0 (a replica, during the selection of a promotion), first CLIENT PAUSE
    <freeze s> WRITE on it, best effort: a paused replica stops applying its primary's stream
    and stops acknowledging it, so the offset this INFO reports is final and every write a
    client had confirmed with WAIT is at or below it. The pause ends with the replica's
    ReplicaOf or Promote, with Unfreeze on an abort, or by itself after `freeze` seconds."""

    primary: str
    address: Address
    timeout: float
    freeze: float = 0.0


@dataclass(frozen=True, slots=True)
class SendGossip:
    gossip: Gossip
    to: str | None = None  # None: every peer


@dataclass(frozen=True, slots=True)
class RequestVotes:
    request: VoteRequest  # sent to every peer


@dataclass(frozen=True, slots=True)
class SendVoteReply:
    to: str
    reply: VoteReply


@dataclass(frozen=True, slots=True)
class Promote:
    """REPLICAOF NO ONE on the replica, then CLIENT UNPAUSE (it may be frozen by the
    selection), CLIENT KILL TYPE normal / pubsub, then ROLE to confirm it reports `master`,
    all in one step; answer with PromoteDone."""

    primary: str
    address: Address
    epoch: int
    timeout: float
    # Fencing: the old primary, to be paused (CLIENT PAUSE WRITE) before the promotion and
    # demoted (REPLICAOF the new one, then CLIENT UNPAUSE) after it, all before this step
    # answers, so clients never see two writable primaries announced. Best effort: an
    # unreachable old primary is fenced by its min-replicas lease instead.
    fence_old: Address | None = None
    fence_pause: float = 0.0  # seconds the pause may last if we never get to lift it


@dataclass(frozen=True, slots=True)
class Fence:
    """CONFIG SET min-replicas-to-write / min-replicas-max-lag (and repl-ping-replica-period
    1, so replicas hear from a live primary every second) on one instance. No answer event:
    the next INFO shows whether it took."""

    primary: str
    address: Address
    min_replicas: int
    max_lag: int


@dataclass(frozen=True, slots=True)
class Switchover:
    """On the CURRENT primary `old`: FAILOVER TO target TIMEOUT timeout (never FORCE), then
    wait until the target reports role master, and CLIENT KILL TYPE normal / pubsub on the
    old primary; answer with SwitchoverDone."""

    primary: str
    old: Address
    target: Address
    epoch: int
    timeout: float
    force: bool = False  # FAILOVER … FORCE: switch even if the target has not caught up


@dataclass(frozen=True, slots=True)
class ReplicaOf:
    """MULTI, CLIENT UNPAUSE, REPLICAOF target, EXEC on the instance, then CLIENT KILL TYPE
    normal / pubsub; answer with ReplicaOfDone. Used to repoint replicas and to demote a
    returning old primary.

    The unpause and the REPLICAOF run as one transaction because Redis does not keep the
    replication state (replid, offset) of a master link that is blocked by a pause when the
    link is dropped: a frozen replica repointed without the unpause needs a full resync, and
    one unpaused before the REPLICAOF would first apply the old primary's stream (writes the
    new primary never saw, so again a full resync)."""

    primary: str
    address: Address
    target: Address
    epoch: int
    timeout: float


@dataclass(frozen=True, slots=True)
class Unfreeze:
    """CLIENT UNPAUSE on a replica frozen by an aborted selection; best effort, no answer."""

    primary: str
    address: Address


@dataclass(frozen=True, slots=True)
class Publish:
    """A Sentinel-style event: channel (e.g. ``+switch-master``) and its message text.

    Published to pub/sub subscribers, hooks and the log by the runtime."""

    channel: str
    message: str


Action = (
    PersistState
    | Probe
    | QueryInfo
    | SendGossip
    | RequestVotes
    | SendVoteReply
    | Promote
    | Switchover
    | ReplicaOf
    | Fence
    | Unfreeze
    | Publish
)
