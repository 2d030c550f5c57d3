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

    With `freeze` (a replica, during the selection of a promotion): in one round trip, INFO,
    then REPLICAOF FREEZE_TARGET (detach it from its primary: nothing listens there), then
    INFO again; answer with InfoReply(info=<the second>, before_freeze=<the first>) (an
    instance that is not a replica is left alone: info=before_freeze=<the first>). A
    detached replica neither applies nor acknowledges its old primary's writes, so the offset
    it reports is final and every write a client confirmed with WAIT is at or below the
    freshest one's; it keeps its replication state, so a later REPLICAOF of the new primary is
    a partial resync. The first INFO tells when it last heard from the old primary (the write
    fence's lease). Only a ReplicaOf, a Promote or an Unfreeze ends a freeze.

    (CLIENT PAUSE WRITE looks like a lighter freeze and is not: Redis 7.0 leaves a paused
    replica's master link blocked on the postponed command, and a replica repointed in that
    state never applies its new primary's stream, or needs a full resync.)"""

    primary: str
    address: Address
    timeout: float
    freeze: bool = False


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
    """REPLICAOF NO ONE on the replica, then CLIENT KILL TYPE normal / pubsub, then ROLE to
    confirm it reports `master`, all in one step; answer with PromoteDone."""

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
    """REPLICAOF target on the instance, then CLIENT KILL TYPE normal / pubsub; answer with
    ReplicaOfDone. Used to repoint replicas and to demote a returning old primary."""

    primary: str
    address: Address
    target: Address
    epoch: int
    timeout: float


@dataclass(frozen=True, slots=True)
class Unfreeze:
    """REPLICAOF `target` (the primary it followed) on a replica an aborted selection froze,
    so it resumes where it stopped (a partial resync), but only if it is still detached
    (following nothing): a newer leader may have repointed or promoted it meanwhile. Best
    effort, no answer."""

    primary: str
    address: Address
    target: Address


# Where a frozen replica is pointed: a port nothing can listen on (connects are refused at
# once). An operator who sees it in INFO (master_port:0) sees a selection in progress.
FREEZE_TARGET = Address("127.0.0.1", 0)


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
