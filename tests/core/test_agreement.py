"""Objective down and peer membership (haredis/core/agreement.py), alone and in a Watcher."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from haredis.core.agreement import PeerTable
from haredis.core.events import VoteRequested
from haredis.core.messages import Gossip, PrimaryGossip, VoteRequest

from .helpers import NAME, P, Rig, primary_settings, watcher_settings

TTL = 2.0


def gossip(sender: str, *, down: bool, primary: str = NAME, in_hold: bool = False) -> Gossip:
    view = PrimaryGossip(name=primary, says_down=down, current_epoch=0, config_epoch=0, address=P)
    return Gossip(sender, in_hold, (view,))


# ----------------------------------------------------------------------------- PeerTable


def test_own_name_is_refused() -> None:
    table = PeerTable("w1", electorate=3)
    assert not table.admits("w1")
    assert table.receive(gossip("w1", down=True), 0.0) is False
    assert table.peers == {}
    assert table.down_opinions(NAME, 0.0, TTL) == 0


def test_at_most_electorate_minus_one_distinct_peers_are_admitted() -> None:
    table = PeerTable("w1", electorate=3)
    assert table.receive(gossip("w2", down=True), 0.0)
    assert table.receive(gossip("w3", down=True), 0.0)
    assert not table.admits("w4")
    assert table.receive(gossip("w4", down=True), 0.0) is False
    assert sorted(table.peers) == ["w2", "w3"]
    assert table.down_opinions(NAME, 0.0, TTL) == 2
    # Known peers keep being heard once the table is full.
    assert table.admits("w2") and table.receive(gossip("w2", down=False), 1.0)
    assert table.down_opinions(NAME, 1.0, TTL) == 1


def test_a_single_watcher_admits_no_peer() -> None:
    table = PeerTable("solo", electorate=1)
    assert not table.admits("w2")
    assert table.receive(gossip("w2", down=True), 0.0) is False


@settings(max_examples=100, deadline=None)
@given(
    electorate=st.integers(1, 7),
    senders=st.lists(st.sampled_from(["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "x"]), max_size=40),
)
def test_membership_never_exceeds_the_electorate(electorate: int, senders: list[str]) -> None:
    table = PeerTable("w1", electorate=electorate)
    for i, sender in enumerate(senders):
        admitted_before = set(table.peers)
        accepted = table.receive(gossip(sender, down=True), float(i))
        assert "w1" not in table.peers
        assert len(table.peers) <= electorate - 1
        # Once admitted, a peer is never refused; a refused one left no trace.
        if sender in admitted_before:
            assert accepted
        if not accepted:
            assert set(table.peers) == admitted_before
    assert table.down_opinions(NAME, float(len(senders)), 1e9) <= electorate - 1


def test_opinions_expire_after_opinion_ttl() -> None:
    table = PeerTable("w1", electorate=3)
    table.receive(gossip("w2", down=True), 10.0)
    assert table.down_opinions(NAME, 10.0, TTL) == 1
    assert table.down_opinions(NAME, 10.0 + TTL, TTL) == 1  # still fresh at exactly ttl
    assert table.down_opinions(NAME, 10.0 + TTL + 0.01, TTL) == 0
    assert table.fresh_views(NAME, 10.0 + TTL + 0.01, TTL) == []
    # A heartbeat refreshes it.
    table.receive(gossip("w2", down=True), 12.5)
    assert table.down_opinions(NAME, 13.0, TTL) == 1


def test_latest_opinion_wins_and_primaries_are_separate() -> None:
    table = PeerTable("w1", electorate=3)
    table.receive(gossip("w2", down=True), 0.0)
    table.receive(gossip("w2", down=True, primary="other"), 0.1)
    assert table.down_opinions(NAME, 0.2, TTL) == 1
    table.receive(gossip("w2", down=False), 0.3)
    assert table.down_opinions(NAME, 0.4, TTL) == 0
    assert table.down_opinions("other", 0.4, TTL) == 1


def test_forgetting_opinions_keeps_membership() -> None:
    table = PeerTable("w1", electorate=3)
    table.receive(gossip("w2", down=True), 0.0)
    table.receive(gossip("w3", down=True), 0.0)
    table.forget_opinions()
    assert table.down_opinions(NAME, 0.0, TTL) == 0
    # Membership is identity, not opinion: the table is still full.
    assert sorted(table.peers) == ["w2", "w3"] and not table.admits("w4")


# ----------------------------------------------------------------- objective down, in a Watcher


def test_peer_opinions_alone_never_make_odown() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.gossip("w3", says_down=True)
    rig.run(0.2)
    view = rig.view()
    assert not view.sdown and not view.odown
    assert view.odown_votes == 2  # the peers' votes are counted, ours is missing
    assert rig.events("+odown") == [] and rig.vote_requests() == []


def test_own_sdown_without_quorum_is_not_odown_until_a_peer_agrees() -> None:
    rig = Rig.standard()  # quorum 2
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run(0.5)
    view = rig.view()
    assert view.sdown and not view.odown and view.odown_votes == 1
    rig.gossip("w2", says_down=False)
    assert not rig.view().odown
    rig.gossip("w2", says_down=True)
    view = rig.view()
    assert view.odown and view.odown_votes == 2
    assert [m for _, _, m in rig.events("+odown")] == [f"master {NAME} {P.host} {P.port} #quorum 2/2"]


def test_quorum_three_needs_two_peers() -> None:
    rig = Rig.standard(watcher_settings(primary=primary_settings(quorum=3)))
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run(0.5)
    rig.gossip("w2", says_down=True)
    assert not rig.view().odown and rig.view().odown_votes == 2
    rig.gossip("w3", says_down=True)
    assert rig.view().odown and rig.view().odown_votes == 3


def test_a_silent_peers_down_opinion_expires() -> None:
    rig = Rig.standard(watcher_settings(primary=primary_settings(quorum=2)))
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run(0.5)
    rig.gossip("w2", says_down=True)
    heard_at = rig.now
    assert rig.view().odown
    rig.run(TTL - 0.1)
    assert rig.view().odown
    rig.run(0.2)
    view = rig.view()
    assert not view.odown and view.odown_votes == 1 and view.sdown
    # Forgotten at the first evaluation after the TTL (a tick or any other event).
    [expired_at] = [t for t, _, _ in rig.events("-odown")]
    assert heard_at + TTL < expired_at <= heard_at + TTL + 0.05 + 1e-9


def test_an_unadmitted_watcher_counts_for_nothing() -> None:
    rig = Rig.standard()  # electorate 3
    rig.run(2.0)
    rig.gossip("w2", says_down=False)
    rig.gossip("w3", says_down=False)
    rig.nodes[P].mode = "refused"
    rig.run(0.5)
    # A third peer name (a renamed or misconfigured watcher) and our own name are ignored:
    # no opinion, no epoch, no topology.
    rig.gossip("w4", says_down=True, current_epoch=7, config_epoch=7, address=P)
    rig.gossip("w1", says_down=True, current_epoch=8)
    view = rig.view()
    assert not view.odown and view.odown_votes == 1
    assert view.current_epoch == 0 and view.config_epoch == 0
    assert [p.name for p in view.peers] == ["w2", "w3"]


def test_a_watcher_in_hold_gossips_no_opinion() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run(0.5)
    assert rig.view().sdown
    assert rig.gossips()[-1].primaries[0].says_down  # before the hold: it says down
    rig.now += 5.0  # the process was stalled: a gap longer than hold_trigger
    rig.run(1.0)
    assert rig.watcher.in_hold and rig.view().sdown
    after = [g for g in rig.gossips() if g.in_hold]
    assert after, "it keeps gossiping in hold"
    assert all(not v.says_down for g in after for v in g.primaries)
    # Its own opinion does not count for itself either.
    assert rig.view().odown_votes == 0


def test_vote_replies_from_names_outside_the_table_are_ignored() -> None:
    rig = Rig.standard()  # electorate 3, majority 2
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.gossip("w3", says_down=True)
    rig.crash_primary()
    [request] = rig.vote_requests()
    rig.grant("w4", request.epoch)  # the table is full: w4 is not a member
    rig.grant("w1", request.epoch)  # and nobody votes twice as ourselves
    assert rig.events("+elected-leader") == [] and rig.view().failover_state == "wait_start"
    rig.grant("w2", request.epoch)
    assert len(rig.events("+elected-leader")) == 1


def _five_watchers_three_known_candidate() -> tuple[Rig, VoteRequest]:
    """Electorate 5 (majority 3); w2..w4 heard, one seat left; we are a candidate."""
    rig = Rig.standard(watcher_settings(electorate=5, primary=primary_settings(quorum=2)))
    rig.run(2.0)
    for peer in ("w2", "w3", "w4"):
        rig.gossip(peer, says_down=True)
    rig.crash_primary()
    requests = rig.vote_requests()
    assert len(requests) == 1, requests
    return rig, requests[0]


def test_one_unknown_voter_counts_while_a_seat_is_free() -> None:
    # With a seat free, ONE unknown voter may be a
    # legitimate member not heard yet, and its vote counts.
    rig, request = _five_watchers_three_known_candidate()
    rig.grant("w2", request.epoch)
    assert rig.events("+elected-leader") == []  # 2 of 5: no majority
    rig.grant("w5", request.epoch)
    assert len(rig.events("+elected-leader")) == 1  # 3 of 5


def test_unknown_voters_cannot_inflate_the_electorate() -> None:
    rig, request = _five_watchers_three_known_candidate()
    # Two names that cannot both be members (only one seat is left) vote for us.
    rig.grant("x", request.epoch)
    rig.grant("y", request.epoch)
    # Self + at most one of them = 2 of 5: not a majority.
    assert rig.events("+elected-leader") == []
    # The first took the last seat: it is a member now, the second is not, nor is any gossiper.
    assert sorted(p.name for p in rig.view().peers) == ["w2", "w3", "w4", "x"]
    rig.gossip("z", says_down=True, config_epoch=9, address=P)
    assert rig.view().config_epoch == 0


def test_a_vote_request_from_a_stranger_is_not_answered_when_the_table_is_full() -> None:
    rig = Rig.standard()  # electorate 3
    rig.run(2.0)
    rig.gossip("w2")
    rig.gossip("w3")
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    actions = rig.handle(VoteRequested(now=rig.now, request=VoteRequest("w9", NAME, 1)))
    assert actions == [] and rig.watcher.disk.get(NAME).voted_epoch == 0
