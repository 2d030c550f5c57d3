"""The trace: every delivered event and executed action as a compact tuple of plain values,
plus human notes (faults, elections, promotions). `digest()` is the run's trace hash: sha256
over the records serialised with ``marshal`` format 2, which is canonical here because every
value in them is a str, int, float, bool, None or a tuple of those, and format 2 writes no
back-references (so object identity never leaks into the bytes).
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Callable
from typing import Any

from haredis.core.actions import (
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
from haredis.core.events import (
    Event,
    FailoverCommand,
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
from haredis.core.messages import Gossip
from haredis.core.model import Address, DurableState

Record = tuple[Any, ...]


def _addr(a: Address | None) -> str | None:
    return None if a is None else f"{a.host}:{a.port}"


def _gossip(g: Gossip) -> tuple[Any, ...]:
    return (
        g.sender,
        g.in_hold,
        tuple(
            (
                p.name,
                p.says_down,
                p.current_epoch,
                p.config_epoch,
                p.address.host,
                p.address.port,
                p.voted_epoch,
                p.voted_for,
                p.leading_epoch,
            )
            for p in g.primaries
        ),
    )


def durable_tuple(d: DurableState) -> tuple[Any, ...]:
    return tuple(
        (name, p.current_epoch, p.voted_epoch, p.voted_for, p.config_epoch, _addr(p.address))
        for name, p in sorted(d.primaries.items())
    )


def _e_tick(e: Any) -> Record:
    return ("T", e.now)


def _e_probe_reply(e: Any) -> Record:
    return ("PR", e.now, e.address.host, e.reply)


def _e_probe_failed(e: Any) -> Record:
    return ("PF", e.now, e.address.host, e.kind.value)


def _e_info(e: Any) -> Record:
    i = e.info
    return (
        "IR",
        e.now,
        e.address.host,
        i.role.value,
        i.replid[:4],
        i.offset,
        _addr(i.master),
        i.link_up,
        len(i.replicas),
    )


def _e_info_failed(e: Any) -> Record:
    return ("IF", e.now, e.address.host, e.detail)


def _e_gossip(e: Any) -> Record:
    return ("G", e.now, _gossip(e.gossip))


def _e_vote_req(e: Any) -> Record:
    r = e.request
    return ("VQ", e.now, r.sender, r.primary, r.epoch, r.forced)


def _e_vote_rep(e: Any) -> Record:
    r = e.reply
    return ("VR", e.now, r.sender, r.primary, r.epoch, r.granted, r.voted_for, r.current_epoch)


def _e_promote_done(e: Any) -> Record:
    return ("PD", e.now, e.address.host, e.epoch, e.role_ok, e.detail)


def _e_replicaof_done(e: Any) -> Record:
    return ("RD", e.now, e.address.host, e.target.host, e.epoch, e.ok, e.detail)


def _e_failover(e: Any) -> Record:
    return ("FC", e.now, e.primary)


def _e_switchover_cmd(e: Any) -> Record:
    return ("SC", e.now, e.primary, _addr(e.target), e.timeout, e.force)


def _e_switchover_done(e: Any) -> Record:
    return ("SD", e.now, e.address.host, e.epoch, e.role_ok, e.detail)


def _e_pause(e: Any) -> Record:
    return ("MC", e.now, e.primary, e.ttl, e.reason)


def _a_switchover(a: Any) -> Record:
    return ("SO", a.old.host, a.target.host, a.epoch, a.timeout, a.force)


def _a_persist(a: Any) -> Record:
    return ("PS", durable_tuple(a.state))


def _a_probe(a: Any) -> Record:
    return ("P", a.address.host, a.timeout)


def _a_info(a: Any) -> Record:
    if getattr(a, "freeze", False):
        return ("Q", a.address.host, a.timeout, "freeze")
    return ("Q", a.address.host, a.timeout)


def _a_unfreeze(a: Any) -> Record:
    return ("UF", a.address.host, a.target.host)


def _a_gossip(a: Any) -> Record:
    return ("SG", a.to, _gossip(a.gossip))


def _a_request_votes(a: Any) -> Record:
    r = a.request
    return ("RV", r.primary, r.epoch, r.forced)


def _a_vote_reply(a: Any) -> Record:
    r = a.reply
    return ("SV", a.to, r.primary, r.epoch, r.granted, r.voted_for, r.current_epoch)


def _a_promote(a: Any) -> Record:
    return ("PM", a.address.host, a.epoch, a.timeout, _addr(a.fence_old), a.fence_pause)


def _a_fence(a: Any) -> Record:
    return ("FE", a.address.host, a.min_replicas, a.max_lag)


def _a_replicaof(a: Any) -> Record:
    return ("RO", a.address.host, a.target.host, a.epoch, a.timeout)


def _a_publish(a: Any) -> Record:
    return ("PB", a.channel, a.message)


EVENT_RENDER: dict[type, Callable[[Any], Record]] = {
    Tick: _e_tick,
    ProbeReply: _e_probe_reply,
    ProbeFailed: _e_probe_failed,
    InfoReply: _e_info,
    InfoFailed: _e_info_failed,
    GossipReceived: _e_gossip,
    VoteRequested: _e_vote_req,
    VoteReplied: _e_vote_rep,
    PromoteDone: _e_promote_done,
    ReplicaOfDone: _e_replicaof_done,
    FailoverCommand: _e_failover,
    SwitchoverCommand: _e_switchover_cmd,
    SwitchoverDone: _e_switchover_done,
    PauseCommand: _e_pause,
}

ACTION_RENDER: dict[type, Callable[[Any], Record]] = {
    PersistState: _a_persist,
    Probe: _a_probe,
    QueryInfo: _a_info,
    SendGossip: _a_gossip,
    RequestVotes: _a_request_votes,
    SendVoteReply: _a_vote_reply,
    Promote: _a_promote,
    ReplicaOf: _a_replicaof,
    Publish: _a_publish,
    Switchover: _a_switchover,
    Fence: _a_fence,
    Unfreeze: _a_unfreeze,
}


def generic_record(obj: Any) -> Record:
    return ("?", type(obj).__name__, repr(obj))


class Trace:
    __slots__ = ("notes", "records")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.notes: list[tuple[float, str, str]] = []

    def event(self, t: float, who: str, event: Event) -> None:
        self.records.append((t, who, EVENT_RENDER.get(type(event), generic_record)(event)))

    def action(self, t: float, who: str, action: Action) -> None:
        self.records.append((t, who, ACTION_RENDER.get(type(action), generic_record)(action)))

    def note(self, t: float, who: str, text: str) -> None:
        self.notes.append((t, who, text))
        self.records.append((t, who, ("N", text)))

    def digest(self) -> str:
        return hashlib.sha256(marshal.dumps(self.records, 2)).hexdigest()

    def timeline(self) -> list[str]:
        return [f"{t:9.3f}  {who:<8} {text}" for t, who, text in self.notes]
