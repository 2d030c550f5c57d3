"""Immutable records shared by the core, the runtime and the renderers.

Everything here is a frozen value: the core builds new records instead of mutating them, so
a snapshot handed to the API server or to /metrics can never change under its reader.
Times are floats in seconds on the watcher's monotonic clock (the `now` of the events).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field


def run_id(name: str) -> str:
    """A watcher's stable 40-hex-digit run id, derived from its name: what SENTINEL MYID
    returns and what Sentinel's events carry where they name a Sentinel."""
    return hashlib.sha1(f"haredis:{name}".encode()).hexdigest()


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A Redis or watcher endpoint. `host` may be a hostname; it is resolved by the runtime."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port`` (``[v6]:port`` for IPv6). Raises ValueError with the reason."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected host:port, got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"expected a numeric port in {text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"port out of range 1..65535 in {text!r}")
        return cls(host, port)


class Role(enum.Enum):
    PRIMARY = "master"
    REPLICA = "slave"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ReplicaLink:
    """One replica as its primary lists it in INFO replication (``slaveN:ip=…,port=…``)."""

    address: Address
    offset: int
    online: bool


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """What the core needs from one ``INFO`` reply (server + replication sections).

    The runtime parses the text; the core never sees raw INFO.
    """

    role: Role
    run_id: str = ""
    # The replication history this instance is on (master_replid) and the one before its
    # last promotion (master_replid2, valid up to second_repl_offset).
    replid: str = ""
    replid2: str = ""
    offset: int = 0  # master_repl_offset on a primary; slave_repl_offset on a replica
    # second_repl_offset: the first offset NOT shared with the replid2 history (-1: none).
    # On a promoted primary it is the fork point: data past it on the old history diverged.
    second_repl_offset: int = -1
    # Replica-only fields.
    master: Address | None = None
    link_up: bool = False
    link_down_seconds: float = 0.0  # master_link_down_since_seconds, 0 when the link is up
    priority: int = 100  # replica-priority (slave_priority)
    announced: bool = True  # replica-announced
    # Primary-only fields.
    replicas: tuple[ReplicaLink, ...] = ()
    # master_last_io_seconds_ago: whole seconds since the replica last heard from its
    # primary (link up only). With fencing, primaries ping replicas every second, so this
    # is how long ago the replica's acknowledgements could last have reached its primary.
    last_io_seconds: float = 0.0
    # Redis prints min_slaves_good_slaves only when min-replicas-to-write and
    # min-replicas-max-lag are both set: the only sign in INFO that a write fence is on.
    fence_configured: bool = False
    # Keys in all databases (INFO keyspace); -1 when the reply had no keyspace section.
    keys: int = -1


@dataclass(frozen=True, slots=True)
class PrimarySettings:
    """Everything the core needs to know about one monitored primary. Seconds, not ms."""

    name: str
    address: Address
    quorum: int
    down_after: float = 5.0
    crash_detect: float = 0.25  # 0 disables the refused/reset fast path
    failover_timeout: float = 60.0
    parallel_syncs: int = 1
    max_lag_bytes: int | None = None
    lag_wait: float = 2.0  # bounded wait for the freshest replica to catch up to max_lag_bytes
    min_failover_interval: float = 15.0
    info_period: float = 1.0
    # A replica or stray primary that contradicts the topology is reconfigured once it has
    # done so for this long (and a majority of watchers agree on the config epoch).
    convert_after: float = 2.0
    # Write fencing: keep min-replicas-to-write / min-replicas-max-lag set on every node, so
    # a primary cut off from its replicas stops taking writes by itself, and wait that lease
    # out before promoting. Off by default: with it on, writes stop whenever fewer than
    # fence_min_replicas replicas are acknowledging.
    fencing: bool = False
    fence_min_replicas: int = 1
    fence_max_lag: int = 2  # whole seconds, as Redis takes it

    @property
    def fence_lease(self) -> float:
        # Redis computes a replica's lag in whole seconds (now - last ACK, truncated), keeps
        # it good while lag <= max_lag, and refreshes its count of good replicas once a
        # second: writes may be taken until last ACK + max_lag + 2 s. The replicas' INFO
        # (master_last_io_seconds_ago) is whole seconds too, so our estimate of the last
        # contact may be up to 1 s early: max_lag + 3 s (bound worked out in the simulator).
        return self.fence_max_lag + 3.0

    # Derived from down_after once, in __post_init__: the decision core reads them for every
    # probe, reply and visit (some 100,000 times a simulated minute at 100 primaries). Not
    # part of equality, hashing or repr: they are functions of down_after.
    ping_period: float = field(init=False, repr=False, compare=False)
    probe_timeout: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Down counts from the first unanswered probe, so the probe period is how late after
        # the last good reply a hang starts being counted: a tenth of down_after, between
        # 100 ms (down within down_after + 100 ms) and 1 s (what many primaries can afford).
        ping_period = min(1.0, max(0.1, self.down_after / 10.0))
        # Long enough for a busy Redis (a fork, a slow command) to answer without the link
        # being torn down, short enough that a lost reply is retried well within down_after.
        probe_timeout = max(ping_period, min(self.down_after / 2.0, 1.0))
        object.__setattr__(self, "ping_period", ping_period)  # frozen: set once, here
        object.__setattr__(self, "probe_timeout", probe_timeout)


@dataclass(frozen=True, slots=True)
class WatcherSettings:
    """The watcher's identity and cluster-wide timing. Seconds, not ms."""

    name: str
    # How many watchers are configured, this one included. Peers are known by the names in
    # their authenticated messages; every configured watcher counts, alive or not, so a
    # majority of `electorate` is needed to win an election.
    electorate: int
    primaries: tuple[PrimarySettings, ...]
    tick_interval: float = 0.1
    gossip_period: float = 0.5  # heartbeat; opinion changes are pushed at once
    opinion_ttl: float = 2.0  # a peer's opinion older than this is ignored
    election_timeout: float = 0.6  # an election not won by then is abandoned
    retry_backoff: float = 0.4  # upper bound of the randomised wait before another attempt
    hold_trigger: float = 2.0  # a tick gap larger than this (or negative) enters hold mode
    hold_duration: float = 10.0

    @property
    def majority(self) -> int:
        return self.electorate // 2 + 1


@dataclass(frozen=True, slots=True)
class PrimaryDurable:
    """Per-primary state that must survive a restart, written before anyone sees it."""

    current_epoch: int = 0  # highest election epoch seen for this primary
    voted_epoch: int = 0  # epoch of the last vote granted (0: never voted)
    voted_for: str = ""  # the candidate that vote went to
    config_epoch: int = 0  # epoch of the topology below
    address: Address | None = None  # the primary as of config_epoch (None: from settings)
    # Every instance of the group ever discovered (sorted). Kept across restarts, like
    # Sentinel's known-replica lines, so a stray primary that no current primary lists as
    # its replica (a returning old primary) is still known, probed and demoted.
    known: tuple[Address, ...] = ()
    # The primary's replication history (see selection.History): kept across restarts so
    # a restarted watcher still refuses a replica whose data diverged from the primary's.
    replid: str = ""
    replid2: str = ""
    fork: int = -1


@dataclass(frozen=True, slots=True)
class DurableState:
    primaries: dict[str, PrimaryDurable] = field(default_factory=dict)

    def get(self, name: str) -> PrimaryDurable:
        return self.primaries.get(name, PrimaryDurable())


# ---------------------------------------------------------------------------------------------
# Snapshot: the one truth every renderer reads (SENTINEL replies, /metrics, status, logs).


@dataclass(frozen=True, slots=True)
class InstanceView:
    address: Address
    role: Role
    run_id: str
    sdown: bool
    sdown_since: float | None
    last_ok: float | None  # time of the last valid probe reply
    last_probe_sent: float | None
    last_error: str
    info_age: float | None  # seconds since the last INFO, None if never
    offset: int
    priority: int
    link_up: bool
    link_down_seconds: float
    master: Address | None
    replid: str
    announced: bool


@dataclass(frozen=True, slots=True)
class PeerView:
    name: str
    last_heard: float | None
    says_down: bool
    current_epoch: int
    config_epoch: int
    voted_for: str
    voted_epoch: int
    in_hold: bool


@dataclass(frozen=True, slots=True)
class PrimaryView:
    name: str
    address: Address
    config_epoch: int
    current_epoch: int
    primary: InstanceView
    replicas: tuple[InstanceView, ...]
    peers: tuple[PeerView, ...]
    sdown: bool
    odown: bool
    odown_votes: int  # watchers (self included) whose fresh opinion says down
    quorum: int
    failover_state: str  # "none" or the failover state's name
    failover_epoch: int
    leader: str  # the leader this watcher knows for current_epoch, "" if none
    paused_until: float | None
    pause_reason: str
    last_failover_at: float | None
    settings: PrimarySettings


@dataclass(frozen=True, slots=True)
class Snapshot:
    watcher: str
    now: float
    in_hold: bool
    hold_until: float | None
    primaries: tuple[PrimaryView, ...]

    def primary(self, name: str) -> PrimaryView | None:
        for view in self.primaries:
            if view.name == name:
                return view
        return None
