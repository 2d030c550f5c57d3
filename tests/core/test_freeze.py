"""The pre-selection freeze: replicas are detached from the old primary before the leader
chooses, so the replica it promotes holds every write a client confirmed with WAIT 1.

The instant world's `write` streams to every unfrozen replica of a primary and records the
highest acknowledged offset per history; a promoted replica records the offset it forked at.
"""

from __future__ import annotations

from tests.core.world import R1, R2, P, World, make_world


def test_a_primary_cut_off_from_the_watchers_only_loses_no_confirmed_write() -> None:
    # The old primary keeps streaming to both replicas, which acknowledge its writes, while
    # the watchers fail it over: the promoted replica must hold every acknowledged write.
    world = make_world(offsets=(100, 100))
    world.streams[P] = 10  # before every tick
    world.replicaof_delay = 0.2
    world.run(2.0)  # the watchers learn the replicas from the primary
    world.cut_from_watchers.add(P)
    world.run(8.0)
    assert len(world.promotions) == 1
    new = world.promotions[0][2]
    assert new in (R1, R2)
    assert world.acked["history-1"] <= world.fork_offsets[new]
    # Both replicas were frozen by the leader before it chose, and the other one now follows
    # the new primary, unfrozen.
    leader = world.promotions[0][1]
    assert {a for _, w, a in world.freezes if w == leader} == {R1, R2}
    other = world.nodes[R2 if new == R1 else R1]
    assert other.master == new


def test_a_dead_primary_is_replaced_by_the_freshest_frozen_replica() -> None:
    world = make_world(offsets=(90, 100))
    world.run(2.0)
    world.kill(P)
    world.run(6.0)
    assert [p[2] for p in world.promotions] == [R2]
    assert world.fork_offsets[R2] == 100


def test_an_aborted_selection_lifts_every_freeze() -> None:
    # The primary answers again while the leader waits out the write fence: the attempt
    # is abandoned, and the replicas it froze must follow the primary again.
    world = make_world(fencing=True)
    world.run(2.0)
    world.pause(P)
    world.run(2.6)
    assert world.freezes, "the leader froze the replicas before choosing"
    world.resume(P)
    world.run(1.0)
    assert world.events("-failover-abort-primary-recovered")
    assert world.promotions == []
    assert all(world.nodes[r].master == P for r in (R1, R2))
    before = world.nodes[R1].offset
    world.write(P, 10)
    assert world.nodes[R1].offset == before + 10


def test_a_switchover_freezes_nothing() -> None:
    # Redis's FAILOVER pauses writes on the primary itself; replicas keep streaming.
    from haredis.core.events import SwitchoverCommand

    world = make_world()
    world.run(2.0)
    actions = world.watchers["w1"].handle(SwitchoverCommand(now=world.now, primary="mymaster"))
    for action in actions:
        world._execute("w1", action)
    world.run(3.0)
    assert world.promotions
    assert world.freezes == []


def test_a_watcher_that_still_sees_the_old_primary_leaves_frozen_replicas_alone() -> None:
    # Two watchers lose the primary, the third still reaches it. With fencing the leader keeps
    # the replicas frozen for the whole lease wait (seconds, longer than convert_after): the
    # third watcher must not "repair" them back to the primary in the meantime, or they
    # would confirm its writes again.
    world = make_world(offsets=(100, 100), fencing=True)
    world.streams[P] = 10
    world.run(2.0)
    world.cut_pairs |= {("w1", P), ("w2", P)}
    world.run(12.0)
    assert len(world.promotions) == 1
    # Nobody pointed a frozen replica back at the old primary (after the switch, the others
    # may repoint one to the new primary: that is the same repair the leader makes).
    back_to_old = [
        e
        for e in world.published
        if e[2] == "+fix-slave-config" and e[3].endswith("@ mymaster 10.0.0.1 6379")
    ]
    assert back_to_old == []
    assert world.events("+fence-wait"), "the leader waited out the lease, replicas frozen"
    new = world.promotions[0][2]
    assert world.acked["history-1"] <= world.fork_offsets[new]


def _fail_over_with_failing_replicaofs(
    failures: int, seconds: float
) -> tuple[World, list[tuple[float, bool]]]:
    """Kill the primary while the next `failures` REPLICAOFs to R1 fail; R2 (fresher) is
    promoted. Returns the world and the leader's REPLICAOFs to R1: (time, ok)."""
    world = make_world(offsets=(90, 100))
    world.run(2.0)
    world.replicaof_failures[R1] = failures
    world.kill(P)
    world.run(seconds)
    assert [p[2] for p in world.promotions] == [R2]
    leader = world.promotions[0][1]
    sends = [(t, ok) for t, w, a, _, ok in world.replicaofs if w == leader and a == R1]
    return world, sends


def test_a_failed_reconf_replicaof_is_sent_again_and_the_frozen_replica_follows() -> None:
    # Another watcher's CLIENT KILL closed the leader's idle link to R1: its first REPLICAOF
    # fails. R1 was frozen for the selection; it must be repointed by this failover, not
    # left detached until steady state (which needs a sane primary) gets to it.
    world, sends = _fail_over_with_failing_replicaofs(1, 6.0)
    assert [ok for _, ok in sends[:2]] == [False, True]
    assert sends[1][0] - sends[0][0] < 1.0, "resent at once, not by steady state"
    assert world.nodes[R1].master == R2
    assert not world.events("+fix-slave-config")
    assert world.events("+failover-end")


def test_a_replicaof_that_keeps_failing_ends_the_failover_and_steady_state_repoints_later() -> None:
    world, sends = _fail_over_with_failing_replicaofs(3, 8.0)
    assert [ok for _, ok in sends] == [False, False, False, True]
    (end,) = world.events("+failover-end")
    assert sends[2][0] < end[0] < sends[3][0], "three failures: counted done, not retried forever"
    fixes = world.events("+fix-slave-config")
    assert fixes and all(fix[0] >= end[0] for fix in fixes), "steady state repointed it"
    assert world.nodes[R1].master == R2
