"""Objective down: enough watchers say the primary is down, and their word is fresh.

Each watcher gossips its subjective opinion of every primary (pushed at once when it
changes, repeated as a heartbeat). A peer's opinion counts for `opinion_ttl` after it was
received and is then forgotten: a silent peer's old "down" must not keep a primary down,
and its old "up" must not hold back a failover. A watcher in hold mode gossips no opinion.

The primary is objectively down for this watcher when it is down here AND
1 + (fresh peer opinions saying down) >= quorum. This is agreement on a fact, not a
decision: the decision is the election (election.py), which needs a majority.

Membership: peers are known by the names in their authenticated messages. At most
`electorate - 1` distinct peers are admitted; a message from a further name is refused, so
a misconfigured or renamed watcher can never inflate the electorate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from haredis.core.messages import Gossip, PrimaryGossip


@dataclass(slots=True)
class PeerState:
    name: str
    last_heard: float
    in_hold: bool = False
    views: dict[str, tuple[PrimaryGossip, float]] = field(default_factory=dict)
    sent_ms: int = 0  # the latest send stamp received from this peer (echoed back to it)
    echo_ms: int = 0  # the latest of OUR send stamps this peer has echoed


class PeerTable:
    def __init__(self, own_name: str, electorate: int) -> None:
        self._own = own_name
        self._capacity = max(0, electorate - 1)
        self.peers: dict[str, PeerState] = {}

    def receive(self, gossip: Gossip, now: float) -> bool:
        """Record a peer's gossip. False if the sender is refused (self, or one too many)."""
        if gossip.sender == self._own:
            return False
        peer = self.peers.get(gossip.sender)
        if peer is None:
            if len(self.peers) >= self._capacity:
                return False
            peer = self.peers[gossip.sender] = PeerState(gossip.sender, now)
        peer.last_heard = now
        peer.in_hold = gossip.in_hold
        peer.sent_ms = max(peer.sent_ms, gossip.sent_ms)
        for name, stamp in gossip.echoes:
            if name == self._own:
                peer.echo_ms = max(peer.echo_ms, stamp)
        for view in gossip.primaries:
            peer.views[view.name] = (view, now)
        return True

    def echoes(self) -> tuple[tuple[str, int], ...]:
        """What our next gossip echoes: each peer's latest send stamp."""
        return tuple((p.name, p.sent_ms) for p in self.peers.values() if p.sent_ms > 0)

    def admits(self, name: str) -> bool:
        return name != self._own and (name in self.peers or len(self.peers) < self._capacity)

    def register(self, name: str, now: float) -> bool:
        """Admit a peer that speaks before it gossips (a vote request or reply). False if refused."""
        if not self.admits(name):
            return False
        peer = self.peers.get(name)
        if peer is None:
            self.peers[name] = PeerState(name, now)
        else:
            peer.last_heard = now
        return True

    def fresh_views(
        self, primary: str, now: float, ttl: float, *, echoing_since_ms: int | None = None
    ) -> list[tuple[str, PrimaryGossip]]:
        """Views received within `ttl`; with `echoing_since_ms`, only from peers that have
        echoed a stamp of ours at least that recent (so their view postdates it)."""
        out: list[tuple[str, PrimaryGossip]] = []
        for peer in self.peers.values():
            if echoing_since_ms is not None and peer.echo_ms < echoing_since_ms:
                continue
            entry = peer.views.get(primary)
            if entry is not None and now - entry[1] <= ttl:
                out.append((peer.name, entry[0]))
        return out

    def down_opinions(
        self, primary: str, now: float, ttl: float, *, echoing_since_ms: int | None = None
    ) -> int:
        """Peers whose fresh view (see fresh_views) says the primary is down."""
        if not self.peers:
            return 0  # a lone watcher (electorate 1): asked on every evaluation
        # A peer in hold should not say down; if it does anyway, do not count it.
        return sum(
            1
            for name, view in self.fresh_views(primary, now, ttl, echoing_since_ms=echoing_since_ms)
            if view.says_down and not self.peers[name].in_hold
        )

    def forget_opinions(self) -> None:
        """After a clock jump the ages of all opinions are unknown: drop them all."""
        for peer in self.peers.values():
            peer.views.clear()
