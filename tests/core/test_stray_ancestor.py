"""An old primary replaced while it was paused, holding nothing past the fork point, is a
candidate when the primary after it is lost before any replica has its history (chaos
schedule:1014, fencing off: every WAIT-confirmed write was lost without this).

Built in the instant world: P is paused, R1 or R2 is promoted; the other replica is lost
and P resumes as a stray primary on the parent history; then the new primary dies (or comes
back empty). P is the only node left with the confirmed writes.
"""

from __future__ import annotations

from haredis.core.model import Role
from tests.core.world import R1, R2, P, World, make_world


def _replace_paused_primary(world: World) -> tuple[object, object]:
    world.run(2.0)
    world.pause(P)
    world.run(5.0)
    assert len(world.promotions) == 1
    new = world.promotions[0][2]
    other = R2 if new == R1 else R1
    return new, other


def test_a_stray_old_primary_at_the_fork_replaces_a_lost_successor() -> None:
    world = make_world(offsets=(100, 100))
    new, other = _replace_paused_primary(world)
    world.kill(other)
    world.resume(P)  # a primary again, on the history `new` forked from, at the fork point
    world.kill(new)
    world.run(6.0)
    assert [p[2] for p in world.promotions] == [new, P]
    assert world.nodes[P].role is Role.PRIMARY and world.nodes[P].offset == 100
    assert world.events("+selected-slave")[-1][3].startswith("slave 10.0.0.1:6379")


def test_a_stray_old_primary_past_the_fork_is_not_a_candidate() -> None:
    # It took writes of its own after the fork: its data is not a prefix of ours.
    world = make_world(offsets=(100, 100))
    new, other = _replace_paused_primary(world)
    world.kill(other)
    world.resume(P)
    world.nodes[P].offset += 50
    world.kill(new)
    world.run(6.0)
    assert [p[2] for p in world.promotions] == [new]
    verdict = next(v for v in world.watchers["w1"].rank_candidates("mymaster") if v.address == P)
    assert not verdict.eligible and verdict.reason.startswith("not a replica")


def test_a_successor_back_empty_is_replaced_by_the_stray_old_primary() -> None:
    # The new primary restarts without persistence: a new history and no keys, while the
    # old primary still holds the parent history: +reboot-empty, and P takes over.
    world = make_world(offsets=(100, 100))
    new, other = _replace_paused_primary(world)
    world.kill(other)
    world.resume(P)
    world.kill(new)
    world.restart(new, empty=True)
    world.run(6.0)
    assert world.events("+reboot-empty")
    assert [p[2] for p in world.promotions] == [new, P]


def test_past_the_fork_it_replaces_a_successor_only_once_that_came_back_empty() -> None:
    # It had writes its successor never received (sent too late, before the pause): while
    # the successor is only dead it may come back with its history, so no failover; once
    # it is back empty, nothing of that history survives and the old primary takes over
    # rather than be emptied by a resync from it (chaos schedule:1014, second variant).
    world = make_world(offsets=(100, 100))
    new, other = _replace_paused_primary(world)
    world.kill(other)
    world.resume(P)
    world.nodes[P].offset += 50
    world.kill(new)
    world.run(4.0)
    assert [p[2] for p in world.promotions] == [new]
    world.restart(new, empty=True)
    world.run(6.0)
    assert world.events("+reboot-empty")
    assert [p[2] for p in world.promotions] == [new, P]
    assert world.nodes[new].master == P  # the empty one follows the data, not the reverse
