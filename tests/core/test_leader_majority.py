"""The leader promotes only while a majority of watchers, freshly heard, still finds the
primary down (simulator seed 1016693).

With fencing the leader spends seconds in SELECT waiting out the old primary's lease. If a
partition then leaves it with a minority of watchers while the majority reaches the primary
again, the majority's "up" cannot reach it: what it checks before promoting must be positive
and fresh, a majority of views saying down, sent after the cut would have stopped them.

Driven through the instant world (tests/core/world.py): events in, actions out, no patches.
"""

from __future__ import annotations

from haredis.core.model import Role

from .world import R1, R2, P, World, make_world

WATCHERS = [f"w{i}" for i in range(1, 6)]


def _elected_and_waiting() -> tuple[World, str]:
    """Five watchers, quorum 2, fencing on: P hangs, a leader is elected and waits out the
    old primary's lease (the fence wait: seconds in SELECT)."""
    world = make_world(watchers=5, quorum=2, fencing=True)
    world.run(2.0)
    world.pause(P)
    world.run(2.5)
    elected = world.events("+elected-leader")
    assert len(elected) == 1 and world.events("+fence-wait"), "elected, waiting out the lease"
    assert world.promotions == []
    return world, elected[0][1]


def test_a_leader_left_with_a_minority_does_not_promote() -> None:
    world, leader = _elected_and_waiting()
    ally = next(w for w in WATCHERS if w != leader)
    # The leader and one ally are cut off from the other three, from P and from R1; P wakes
    # up and the three reach it (and R1) again. The two still find it down: quorum 2, odown
    # holds for them. R2, which the leader froze, stays on its side (as in the seed): the
    # three cannot repoint it, so the leader's lease wait on its contact with P does end.
    others = [w for w in WATCHERS if w not in (leader, ally)]
    world.split_watchers({leader, ally})
    world.cut_pairs = {(w, node) for w in (leader, ally) for node in (P, R1)} | {(w, R2) for w in others}
    world.resume(P)
    world.run(8.0)
    assert [p for p in world.promotions if p[1] == leader] == []
    assert [e[1] for e in world.events("+majority-wait")] == [leader]
    assert [e[1] for e in world.events("-failover-abort-majority-lost")] == [leader]
    # The abort thawed the frozen replica: it follows P again, which stays the primary.
    assert world.nodes[P].role is Role.PRIMARY
    assert world.nodes[R2].master == P


def test_a_majority_heard_again_in_time_lets_the_promotion_go_ahead() -> None:
    # A majority missing at the moment of promotion only delays it: the leader waits for
    # fresh views (a late heartbeat, a brief outage) before giving up. Here three watchers
    # restart during the fence wait; they say down again once their own detectors agree.
    world, leader = _elected_and_waiting()
    others = [w for w in WATCHERS if w != leader][1:]
    for name in others:
        world.stop_watcher(name)
    world.run(3.0)  # the fence wait is over: the leader has 2 of 5 and waits for a majority
    assert world.promotions == []
    assert [e[1] for e in world.events("+majority-wait")] == [leader]
    back_at = world.now
    for name in others:
        world.restart_watcher(name)
    world.run(3.0)
    assert [p[1] for p in world.promotions] == [leader]
    assert world.promotions[0][0] > back_at
    assert world.events("-failover-abort-majority-lost") == []


def test_an_unbroken_majority_promotes_without_waiting_for_it() -> None:
    # The control: nobody is cut off, so the check passes at once (no +majority-wait).
    world, leader = _elected_and_waiting()
    world.run(5.0)
    assert [p[1] for p in world.promotions] == [leader]
    assert world.events("+majority-wait") == []
