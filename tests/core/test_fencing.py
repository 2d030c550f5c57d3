"""Write fencing in the core: the fence is kept configured on every node, an unreachable old
primary's min-replicas lease is waited out before a promotion, a dead one is not waited for,
and a reachable one is paused and demoted before the new primary is announced.

Driven through the instant world (tests/core/world.py): events in, actions out, no patches.
"""

from __future__ import annotations

from haredis.core.model import Role

from .world import R1, R2, P, make_world

LEASE = 2 + 3.0  # fence_max_lag (default 2 s) + 3 s, as PrimarySettings.fence_lease


def test_fence_is_set_on_every_node_once_and_again_after_a_restart() -> None:
    world = make_world(fencing=True)
    world.run(2.0)
    assert {a for _, _, a in world.fences} == {P, R1, R2}
    assert all(node.fence == (1, 2) for node in world.nodes.values())
    sent = len(world.fences)
    world.run(10.0)
    assert len(world.fences) == sent, "INFO shows the fence in place: nothing is re-sent"

    world.kill(R2)
    world.run(0.5)
    world.restart(R2)  # a restarted Redis has forgotten every CONFIG SET
    world.run(3.0)
    assert world.nodes[R2].fence == (1, 2)
    assert len(world.fences) > sent


def test_no_fence_actions_when_fencing_is_off() -> None:
    world = make_world(fencing=False)
    world.run(5.0)
    assert world.fences == []
    assert all(node.fence is None for node in world.nodes.values())


def _hang_and_fail_over(fencing: bool) -> tuple[float, float]:
    world = make_world(fencing=fencing)
    world.run(2.0)
    hung_at = world.now
    world.pause(P)  # a silent hang: replicas keep the link "up" and stop hearing from it
    world.run(12.0)
    assert [a for _, _, a, _ in world.promotions] == [R1]
    promoted_at = world.promotions[0][0]
    return hung_at, promoted_at


def test_a_hung_primary_is_not_replaced_before_its_lease_ran_out() -> None:
    hung_at, promoted_at = _hang_and_fail_over(fencing=True)
    # The replicas last heard from it at hung_at (their last-io counts from there): with
    # fencing, nobody is promoted until it has surely refused writes for lack of acks.
    assert promoted_at >= hung_at + LEASE


def test_without_fencing_the_same_hang_fails_over_before_the_lease() -> None:
    # The control for the test above: the wait is fencing's doing, not detection's.
    hung_at, promoted_at = _hang_and_fail_over(fencing=False)
    assert promoted_at < hung_at + LEASE


def test_a_dead_primary_is_not_waited_for() -> None:
    # Connection refused: nothing listens on its port, so nothing can write to it.
    world = make_world(fencing=True)
    world.run(2.0)
    killed_at = world.now
    world.kill(P)
    world.run(6.0)
    assert world.primaries() == [R1]
    assert world.promotions[0][0] < killed_at + LEASE
    assert world.events("+fence-wait") == []


def test_the_lease_wait_is_announced_once() -> None:
    world = make_world(fencing=True)
    world.run(2.0)
    world.pause(P)
    world.run(12.0)
    waits = world.events("+fence-wait")
    assert len(waits) == 1
    assert waits[0][3].startswith("master mymaster 10.0.0.1 6379 ")


def test_an_old_primary_back_during_the_wait_keeps_its_place() -> None:
    # The fence wait makes SELECT last seconds; a primary that answers again in that time
    # is no reason for a failover any more (a simulator finding: the leader used to pause
    # and demote a primary the other watchers had been reaching for a second).
    world = make_world(fencing=True)
    world.run(2.0)
    world.pause(P)
    world.run(1.8)  # down, agreed and elected; the leader now waits out the lease
    assert world.promotions == []
    assert len(world.events("+fence-wait")) == 1
    world.resume(P)  # it answers again before the promotion
    world.run(6.0)
    assert world.promotions == []
    assert len(world.events("-failover-abort-primary-recovered")) == 1
    assert world.nodes[P].role is Role.PRIMARY and not world.nodes[P].writes_paused
    assert world.fenced_old == []


def test_a_reachable_primary_being_replaced_is_paused_and_demoted_before_the_announcement() -> None:
    # Restarted empty, it answers but must go: with fencing, the promotion pauses its writes
    # first and demotes it before anyone is told of the new primary.
    world = make_world(fencing=True)
    world.run(3.0)
    world.kill(P)
    world.restart(P, empty=True)
    world.run(5.0)
    assert world.promotions
    promoted_at, leader, new, _ = world.promotions[0]
    assert world.fenced_old == [(promoted_at, leader, P, True)]
    switched = [e for e in world.events("+switch-master") if e[1] == leader]
    assert switched and switched[0][0] >= promoted_at
    assert world.primaries() == [new]
    assert world.nodes[P].role is Role.REPLICA and world.nodes[P].master == new
    assert not world.nodes[P].writes_paused


def _replica_repointed_after(fencing: bool) -> float:
    """R2 turns up following R1, not our primary (as a replica restarted with an old primary
    in its config does): seconds until a watcher sends it back to P."""
    world = make_world(fencing=fencing)
    world.run(3.0)
    world.nodes[R2].master = R1
    turned_at = world.now
    world.run(6.0)
    fixes = [t for t, _, a, target, ok in world.replicaofs if a == R2 and target == P and ok]
    assert fixes, "the misdirected replica was never repointed"
    assert world.nodes[R2].master == P
    return fixes[0] - turned_at


def test_with_fencing_a_replica_following_another_node_is_repointed_without_settling() -> None:
    # Its acks keep that node's fence open, so it may take writes beside our primary
    # (simulator seed 1009680): repointed as soon as a current majority vouches for our
    # topology, well before convert_after.
    convert_after = make_world().settings[0].primaries[0].convert_after
    assert _replica_repointed_after(fencing=True) < convert_after


def test_without_fencing_the_same_replica_is_repointed_after_convert_after_control() -> None:
    convert_after = make_world().settings[0].primaries[0].convert_after
    assert _replica_repointed_after(fencing=False) >= convert_after


# -- a primary restarting empty (no persistence) must not wipe its replicas -----------------


def test_a_primary_restarted_empty_is_failed_over_to_a_replica_that_kept_the_data() -> None:
    world = make_world()
    world.run(3.0)
    world.kill(P)
    world.restart(P, empty=True)  # back before anyone saw it down: only INFO tells
    world.run(5.0)
    assert [a for _, _, a, _ in world.promotions] == [R1]
    assert {w for _, w, _, _ in world.events("+reboot-empty")} == {"w1", "w2", "w3"}
    assert world.primaries() == [R1]
    # The empty node now follows the replica that kept the data, not the other way round.
    assert world.nodes[P].role is Role.REPLICA and world.nodes[P].master == R1
    assert world.nodes[R2].master == R1


def test_a_primary_restarted_with_its_data_is_left_alone() -> None:
    # The control: same restart, data kept (replid loaded from its RDB, keys present).
    world = make_world()
    world.run(3.0)
    world.kill(P)
    world.restart(P)
    world.run(5.0)
    assert world.promotions == []
    assert world.events("+reboot-empty") == []


def test_an_empty_restart_already_taking_writes_is_still_caught() -> None:
    world = make_world()
    world.run(3.0)
    world.kill(P)
    world.restart(P, empty=True)
    world.nodes[P].keys = 3  # clients found it and wrote a little before our INFO
    world.run(5.0)
    assert [a for _, _, a, _ in world.promotions] == [R1]


def test_a_restart_from_an_append_only_file_is_left_alone() -> None:
    # An AOF restart gets a new replication id, like an empty one, but has its keys.
    world = make_world()
    world.run(3.0)
    world.kill(P)
    world.restart(P, empty=True)
    world.nodes[P].keys = 10
    world.run(5.0)
    assert world.promotions == []
