"""Whole-watcher scenarios in the friendly world (tests/core/world.py)."""

from __future__ import annotations

from haredis.core.model import Role

from .world import R1, R2, P, make_world


def test_healthy_cluster_never_fails_over() -> None:
    world = make_world()
    world.run(10.0)
    assert world.promotions == []
    assert world.events("+sdown") == []
    assert world.primaries() == [P]


def test_crash_promotes_the_freshest_replica_and_repoints_the_other() -> None:
    world = make_world(offsets=(90, 100))  # R2 is fresher
    world.run(3.0)
    world.kill(P)
    world.run(3.0)
    assert [p[2] for p in world.promotions] == [R2]
    assert world.nodes[R1].master == R2 and world.nodes[R1].role is Role.REPLICA
    for w in world.watchers.values():
        view = w.snapshot().primary("mymaster")
        assert view is not None and view.address == R2 and view.config_epoch >= 1
    # Every watcher published the switch, not only the leader.
    switched = {p[1] for p in world.events("+switch-master")}
    assert switched == {"w1", "w2", "w3"}
    assert world.events("+switch-master")[0][3] == f"mymaster {P.host} {P.port} {R2.host} {R2.port}"


def test_crash_is_detected_by_the_fast_path_well_before_down_after() -> None:
    world = make_world(down_after=5.0)
    world.run(3.0)
    killed_at = world.now
    world.kill(P)
    world.run(3.0)
    assert len(world.promotions) == 1
    # With down_after = 5 s the promotion came from refused connections, not the timeout.
    assert world.promotions[0][0] - killed_at < 5.0


def test_a_hang_is_detected_only_after_down_after() -> None:
    world = make_world(down_after=2.0)
    world.run(3.0)
    paused_at = world.now
    world.nodes[P].paused = True
    world.run(1.5)
    assert world.promotions == []
    world.run(3.0)
    # Down counts from the last good reply, which came at most one ping period (2/3 s)
    # before the pause.
    assert len(world.promotions) == 1 and world.promotions[0][0] - paused_at >= 2.0 - 2.0 / 3


def test_short_pause_causes_no_failover() -> None:
    world = make_world(down_after=2.0)
    world.run(3.0)
    world.nodes[P].paused = True
    world.run(1.2)
    world.nodes[P].paused = False
    world.run(5.0)
    assert world.promotions == []
    assert world.primaries() == [P]


def test_priority_zero_replica_is_never_promoted() -> None:
    world = make_world(offsets=(100, 50), priorities=(0, 100))
    world.run(3.0)
    world.kill(P)
    world.run(3.0)
    assert [p[2] for p in world.promotions] == [R2]


def test_one_of_three_watchers_down_still_fails_over() -> None:
    world = make_world()
    world.stop_watcher("w3")
    world.run(3.0)
    world.kill(P)
    world.run(4.0)
    assert len(world.promotions) == 1


def test_two_of_three_watchers_down_never_fails_over() -> None:
    world = make_world(quorum=1)
    world.stop_watcher("w2")
    world.stop_watcher("w3")
    world.run(3.0)
    world.kill(P)
    world.run(10.0)
    assert world.promotions == []
    # It tried (quorum 1 reached) but could not win a majority.
    assert world.events("-failover-abort-not-elected")


def test_returning_old_primary_is_demoted_to_replica_of_the_new_one() -> None:
    world = make_world()
    world.run(3.0)
    world.kill(P)
    world.run(3.0)
    new = world.promotions[0][2]
    world.nodes[P].alive = True  # back, still believing it is the primary
    world.run(6.0)
    assert world.nodes[P].role is Role.REPLICA and world.nodes[P].master == new
    assert world.events("+convert-to-slave")
    assert world.primaries() == [new]


def test_restarted_watcher_keeps_its_vote_and_epochs() -> None:
    world = make_world()
    world.run(3.0)
    world.kill(P)
    world.run(3.0)
    before = world.disks["w2"].get("mymaster")
    world.stop_watcher("w2")
    world.restart_watcher("w2")
    after = world.watchers["w2"].durable.get("mymaster")
    assert after == before and after.voted_epoch >= 1 and after.config_epoch >= 1
    world.run(3.0)
    assert len(world.promotions) == 1


def test_reconfigure_changes_timing_and_adds_and_removes_primaries() -> None:
    import dataclasses

    import pytest

    from haredis.core.actions import PersistState, Publish
    from haredis.core.model import Address, PrimarySettings

    world = make_world()
    world.run(2.0)
    w1 = world.watchers["w1"]
    old = w1.settings
    other = PrimarySettings(name="other", address=Address("10.0.0.9", 6379), quorum=2)
    slower = dataclasses.replace(old.primaries[0], down_after=30.0)
    actions = w1.reconfigure(dataclasses.replace(old, primaries=(slower, other)))
    assert isinstance(actions[0], PersistState)
    assert set(actions[0].state.primaries) == {"mymaster", "other"}
    assert any(isinstance(a, Publish) and a.channel == "+monitor" for a in actions)
    snap = w1.snapshot()
    view = snap.primary("mymaster")
    assert view is not None and view.settings.down_after == 30.0
    assert snap.primary("other") is not None
    actions = w1.reconfigure(dataclasses.replace(old, primaries=(slower,)))
    assert any(isinstance(a, Publish) and a.channel == "-monitor" for a in actions)
    assert w1.snapshot().primary("other") is None
    with pytest.raises(ValueError, match="restart"):
        w1.reconfigure(dataclasses.replace(old, electorate=5))


def test_switchover_moves_a_healthy_primary_and_the_epoch_with_it() -> None:
    from haredis.core.events import SwitchoverCommand

    world = make_world(offsets=(100, 90))
    world.run(3.0)
    w1 = world.watchers["w1"]
    assert w1.switchover_refusal("mymaster", R2) is None
    for action in w1.handle(SwitchoverCommand(now=world.now, primary="mymaster", target=R2)):
        world._execute("w1", action)
    world.run(3.0)
    # Exactly one switchover, to the requested target; the old primary follows it.
    assert [p[2] for p in world.promotions] == [R2]
    assert world.nodes[P].role is Role.REPLICA and world.nodes[P].master == R2
    assert world.nodes[R1].master == R2
    assert world.primaries() == [R2]
    epochs = {w.snapshot().primary("mymaster").config_epoch for w in world.watchers.values()}  # type: ignore[union-attr]
    assert len(epochs) == 1 and epochs.pop() >= 1
    # Nobody failed over a second time afterwards (redis#13118).
    world.run(5.0)
    assert len(world.promotions) == 1


def test_switchover_is_refused_for_a_dead_primary_or_a_bad_target() -> None:
    from haredis.core.model import Address

    world = make_world(priorities=(100, 0))
    world.run(3.0)
    w1 = world.watchers["w1"]
    assert (
        w1.switchover_refusal("mymaster", Address("10.9.9.9", 1))
        == "ERR 10.9.9.9:1 is not a known replica of mymaster"
    )
    refusal = w1.switchover_refusal("mymaster", R2)
    assert refusal is not None and refusal.startswith("NOGOODSLAVE") and "priority 0" in refusal
    # A dead primary (quorum 3 with a watcher down: nobody fails over automatically).
    world = make_world(quorum=3)
    world.stop_watcher("w3")
    world.run(2.0)
    world.kill(P)
    world.run(1.5)
    assert world.promotions == []
    refusal = world.watchers["w1"].switchover_refusal("mymaster", None)
    assert refusal is not None and refusal.startswith("NOTREADY")


def test_pause_is_gossiped_and_blocks_automatic_failover_until_it_expires() -> None:
    from haredis.core.events import PauseCommand

    world = make_world()
    world.run(2.0)
    for action in world.watchers["w1"].handle(
        PauseCommand(now=world.now, primary="mymaster", ttl=6.0, reason="upgrade")
    ):
        world._execute("w1", action)
    world.run(0.5)
    for w in world.watchers.values():
        view = w.snapshot().primary("mymaster")
        assert view is not None and view.paused_until is not None and view.pause_reason == "upgrade"
    world.kill(P)
    world.run(4.0)
    assert world.promotions == []  # odown everywhere, but in maintenance
    world.run(4.0)  # the pause expired: the failover happens
    assert len(world.promotions) == 1
    assert world.events("-maintenance")


def test_resume_ends_a_pause_everywhere() -> None:
    from haredis.core.events import PauseCommand

    world = make_world()
    world.run(2.0)
    for ttl in (60.0, 0.0):
        for action in world.watchers["w2"].handle(PauseCommand(now=world.now, primary="mymaster", ttl=ttl)):
            world._execute("w2", action)
        world.run(0.5)
    for w in world.watchers.values():
        view = w.snapshot().primary("mymaster")
        assert view is not None and view.paused_until is None
    world.kill(P)
    world.run(3.0)
    assert len(world.promotions) == 1


def test_a_promotion_that_happened_behind_the_watchers_back_is_ratified() -> None:
    # A FAILOVER that Redis ran late (queued in a frozen primary): R1 is already the primary
    # and P follows it, while every watcher still names P. Nobody can be "promoted" the usual
    # way (R1 is not a replica); the watchers must adopt what Redis already did.
    world = make_world(down_after=1.0)
    world.run(3.0)
    p, r1 = world.nodes[P], world.nodes[R1]
    r1.role, r1.master = Role.PRIMARY, None
    r1.replid2, r1.replid = r1.replid, "history-late-failover"
    p.role, p.master = Role.REPLICA, R1
    p.replid2, p.replid = p.replid, r1.replid
    world.nodes[R2].master = R1
    world.run(10.0)
    for w in world.watchers.values():
        view = w.snapshot().primary("mymaster")
        assert view is not None and view.address == R1 and view.config_epoch >= 1
    assert world.primaries() == [R1]
