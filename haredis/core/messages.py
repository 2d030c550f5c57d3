"""Messages watchers exchange. They are both what the core emits (inside actions) and what it
receives (inside events); the runtime signs and serialises them (haredis.peers)."""

from __future__ import annotations

from dataclasses import dataclass

from haredis.core.model import Address


@dataclass(frozen=True, slots=True)
class PrimaryGossip:
    """One watcher's view of one monitored primary."""

    name: str
    says_down: bool  # the sender's subjective opinion (always False while it is in hold)
    current_epoch: int
    config_epoch: int
    address: Address  # the primary as of config_epoch
    voted_epoch: int = 0
    voted_for: str = ""
    leading_epoch: int = 0  # epoch of a failover the sender is leading now, 0 if none
    # The primary's replication history as the sender knows it (see selection.History), so
    # a watcher that never reached the new primary still learns its fork point.
    replid: str = ""
    replid2: str = ""
    fork: int = -1
    # Maintenance: a sequence number ordering pause/resume commands, and the seconds of
    # pause left as the sender sees it (0: not paused). Durations, not times: clocks differ.
    maintenance_seq: int = 0
    paused_for: int = 0  # whole seconds
    pause_reason: str = ""


@dataclass(frozen=True, slots=True)
class Gossip:
    """A heartbeat carries every primary; a push after a change may carry only the changed ones."""

    sender: str
    in_hold: bool
    primaries: tuple[PrimaryGossip, ...]
    # The sender's clock when it sent this (ms), and, per peer, the latest such stamp it has
    # received from that peer. A receiver compares the echo of ITS OWN stamp with its own
    # clock only (clocks differ between hosts): a view echoing a stamp from after time T was
    # sent after T, however long the network held it (a TCP retransmission after a
    # partition heals delivers views that are many seconds old).
    sent_ms: int = 0
    echoes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class VoteRequest:
    sender: str  # the candidate asking for a vote for itself
    primary: str
    epoch: int
    forced: bool = False  # operator-requested failover: voters skip the primary-is-alive check


@dataclass(frozen=True, slots=True)
class VoteReply:
    sender: str  # the voter
    primary: str
    epoch: int  # the epoch asked about
    granted: bool
    voted_for: str  # whom the voter voted for in `epoch` ("" if nobody)
    current_epoch: int  # the voter's current epoch, so a stale candidate catches up


PeerMessage = Gossip | VoteRequest | VoteReply
