"""A leader that stalls between reading its candidates and promoting one hears a majority
again first (simulator seed 1008889).

A stall shorter than hold (a SIGSTOP, a long GC pause, a starved VM) is not noticed by the
clock check, yet everything the leader learnt before it may be stale and what happened during
it is still queued: in the seed, the leader of epoch 1 woke up, read its queued freeze answer
before the vote request of epoch 2 and promoted the replica epoch 2 had already promoted.
Driven through the instant world (tests/core/world.py): events in, actions out, no patches.
"""

from __future__ import annotations

import dataclasses

from haredis.core.model import DurableState
from haredis.core.watcher import Watcher

from .world import P, World, make_world


def _stalled_right_after_the_election(stall: float) -> tuple[World, str, float]:
    """Three watchers, quorum 2, down_after 3 s (views echoing a heartbeat of the last 3 s
    are fresh for the leader's last check): P dies, a leader is elected and sends its
    freeze; it is stopped before it reads the answers, for `stall` seconds (0: not)."""
    world = make_world(down_after=3.0)
    world.run(2.0)
    world.kill(P)
    for _ in range(4000):  # at most 2 s, in steps shorter than the 1 ms an answer takes
        world.run(0.0005, tick=0.0005)
        if world.events("+elected-leader"):
            break
    elected = world.events("+elected-leader")
    assert len(elected) == 1 and world.freezes and world.promotions == []
    leader = elected[0][1]
    if stall:
        world.stall_watcher(leader)
        world.run(stall)
        world.resume_watcher(leader)
    return world, leader, world.now


def test_a_leader_resuming_from_a_stall_waits_for_a_majority_before_promoting() -> None:
    world, leader, resumed_at = _stalled_right_after_the_election(1.3)
    assert world.promotions == [], "promoted on what it read before the stall"
    assert [e[1] for e in world.events("+majority-wait")] == [leader]
    world.run(3.0)
    # Once the others have echoed a heartbeat it sent after the stall, it goes ahead.
    assert [p[1] for p in world.promotions] == [leader]
    assert world.promotions[0][0] > resumed_at


def test_a_leader_that_never_stalled_promotes_without_waiting() -> None:
    # The control: no stall, no +majority-wait.
    world, leader, _ = _stalled_right_after_the_election(0.0)
    world.run(1.0)
    assert [p[1] for p in world.promotions] == [leader]
    assert world.events("+majority-wait") == []


def test_ticks_slower_than_a_heartbeat_are_not_stalls() -> None:
    # tick_interval may be configured longer than gossip_period: the gap between two ticks
    # is then the loop working as configured, not a stall, and must not hold promotions up.
    world = make_world(down_after=3.0)
    world.settings = [dataclasses.replace(s, tick_interval=1.0) for s in world.settings]
    world.watchers = {s.name: Watcher(s, DurableState(), world.now) for s in world.settings}
    world.run(3.0, tick=1.0)
    world.kill(P)
    world.run(10.0, tick=1.0)
    assert len({p[1] for p in world.promotions}) == 1 and world.promotions
    assert world.events("+majority-wait") == []
