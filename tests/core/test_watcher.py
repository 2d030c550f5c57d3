"""One watcher's whole decision logic (haredis/core/watcher.py), fed events by hand (Rig) or
living with two peers in the instant world (tests/core/world.py).

Every watcher here is a `CheckedWatcher`: each batch it returns is checked against the
executor contract (PersistState first and only when durable state changed; no vote,
candidacy, gossip or +switch-master ahead of the disk), so every test below also tests that.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import replace
from typing import cast

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from haredis.core.actions import (
    PersistState,
    Probe,
    Publish,
    RequestVotes,
    SendGossip,
    SendVoteReply,
)
from haredis.core.events import FailoverCommand, InfoReply, Tick, VoteRequested
from haredis.core.messages import VoteReply, VoteRequest
from haredis.core.model import Address, DurableState, PrimaryDurable, Role

from .helpers import (
    NAME,
    R1,
    R2,
    CheckedWatcher,
    ContractViolation,
    FakeRedis,
    P,
    Rig,
    check_batch,
    primary_info,
    primary_settings,
    replica_info,
    watcher_settings,
)
from .world import Node, World, make_world


def checked(world: World) -> World:
    """Swap the world's watchers for checked ones (same settings, same disks)."""
    for ws in world.settings:
        world.watchers[ws.name] = CheckedWatcher(ws, world.disks[ws.name], world.now)
    return world


def crashed_and_odown(rig: Rig) -> None:
    """Healthy for 2 s, then the primary is refused; w2 agrees; we become a candidate."""
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.gossip("w3", says_down=False)
    rig.crash_primary()


def fail_over(rig: Rig) -> None:
    """An automatic failover led by us, w2 voting for us."""
    crashed_and_odown(rig)
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)
    rig.gossip("w2", says_down=True)  # its heartbeat: the leader promotes only on fresh word
    rig.run_until(lambda: rig.events("+failover-end"), limit=3.0)


# ------------------------------------------------------------------- durability contract


def test_a_granted_vote_is_persisted_first_in_its_batch() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    batch = rig.handle(VoteRequested(now=rig.now, request=VoteRequest("w2", NAME, 4)))
    assert isinstance(batch[0], PersistState)
    held = batch[0].state.get(NAME)
    assert (held.voted_epoch, held.voted_for, held.current_epoch) == (4, "w2", 4)
    [reply] = [a for a in batch if isinstance(a, SendVoteReply)]
    assert reply.to == "w2" and reply.reply.granted and batch.index(reply) > 0
    # Asked again: the same answer, and nothing new to persist.
    again = rig.request_vote("w2", 4)
    assert again.granted and not any(isinstance(a, PersistState) for a in rig.watcher.batches[-1])


def test_a_restarted_watcher_refuses_a_second_vote_in_the_same_epoch() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    assert rig.request_vote("w2", 3).granted
    rig.restart()  # from what is on disk; it has not even probed the primary yet
    view = rig.view()
    assert view.current_epoch == 3 and view.leader == "w2"
    refused = rig.request_vote("w3", 3)
    assert not refused.granted and refused.voted_for == "w2" and refused.current_epoch == 3
    assert rig.request_vote("w2", 3).granted  # the same candidate hears the same answer
    # A new epoch is a new vote, once this watcher has its own evidence again: fresh from a
    # restart it has not probed the primary, and a voter without evidence refuses.
    assert not rig.request_vote("w3", 4).granted
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    assert rig.request_vote("w3", 5).granted


def test_restart_from_an_empty_disk_would_vote_again_which_is_why_the_disk_matters() -> None:
    # Contrast for the test above: the refusal comes from the durable state, nothing else.
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    assert rig.request_vote("w2", 3).granted
    amnesiac = Rig.standard(now=rig.now)
    amnesiac.nodes[P].mode = "refused"
    amnesiac.run_until(lambda: amnesiac.view().sdown, limit=2.0)  # its own evidence, as above
    assert amnesiac.request_vote("w3", 3).granted


_peer = st.sampled_from(["w2", "w3"])
_step = st.one_of(
    st.tuples(st.just("run"), st.sampled_from([0.05, 0.2, 0.5, 1.0])),
    st.tuples(st.just("mode"), st.sampled_from(["up", "refused", "hang"])),
    st.tuples(
        st.just("gossip"),
        st.tuples(_peer, st.booleans(), st.integers(0, 6), st.integers(0, 3), st.sampled_from([P, R1])),
    ),
    st.tuples(st.just("ask"), st.tuples(_peer, st.integers(1, 7), st.booleans())),
    st.tuples(st.just("grant"), _peer),
    st.tuples(st.just("command"), st.none()),
    st.tuples(st.just("jump"), st.sampled_from([-1.0, 5.0])),
    st.tuples(st.just("restart"), st.none()),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, max_size=30), crashed=st.booleans())
def test_durability_contract_and_one_vote_per_epoch_under_any_event_sequence(
    steps: list[tuple[str, object]], crashed: bool
) -> None:
    rig = Rig.standard()
    rig.run(1.0)
    if crashed:  # start where elections happen: the primary is gone and w2 agrees
        rig.nodes[P].mode = "refused"
        rig.run(0.5)
        rig.gossip("w2", says_down=True)
        rig.run_until(lambda: rig.vote_requests(), limit=2.0)
    granted: dict[int, set[str]] = defaultdict(set)
    last_disk = rig.watcher.disk.get(NAME)
    for kind, arg in steps:
        if kind == "run":
            assert isinstance(arg, float)
            rig.run(arg)
        elif kind == "mode":
            rig.nodes[P].mode = str(arg)
        elif kind == "gossip":
            sender, down, epoch, config, address = cast(tuple[str, bool, int, int, Address], arg)
            rig.gossip(sender, says_down=down, current_epoch=epoch, config_epoch=config, address=address)
        elif kind == "ask":
            sender, epoch, forced = cast(tuple[str, int, bool], arg)
            rig.request_vote(sender, epoch, forced=forced)
        elif kind == "grant":
            mine = rig.vote_requests()
            if mine:
                rig.grant(str(arg), mine[-1].epoch)
                rig.run(0.05)
        elif kind == "command":
            rig.command_failover()
        elif kind == "jump":
            assert isinstance(arg, float)
            rig.now += arg
            rig.run(0.05)
        elif kind == "restart":
            rig.restart()
        # Everything the watcher said, across restarts: one candidate per epoch.
        for batch in rig.watcher.batches:
            for action in batch:
                if isinstance(action, SendVoteReply) and action.reply.granted:
                    granted[action.reply.epoch].add(action.to)
                if isinstance(action, RequestVotes):
                    granted[action.request.epoch].add("w1")
        rig.watcher.batches.clear()
        assert all(len(c) == 1 for c in granted.values()), granted
        for flag, seen in (
            ("granted a vote", any(c != {"w1"} for c in granted.values())),
            ("was a candidate", any("w1" in c for c in granted.values())),
            ("led a promotion", bool(rig.promotes)),
            ("entered hold", bool(rig.events("+tilt"))),
            ("adopted a topology", bool(rig.events("+config-update-from"))),
        ):
            if seen:
                event(flag)
        # Durable epochs never go back.
        disk = rig.watcher.disk.get(NAME)
        assert disk.current_epoch >= last_disk.current_epoch
        assert disk.voted_epoch >= last_disk.voted_epoch
        assert disk.config_epoch >= last_disk.config_epoch
        assert disk.current_epoch >= max(disk.voted_epoch, disk.config_epoch)
        last_disk = disk


def test_whole_failovers_in_the_world_obey_the_contract_on_every_watcher() -> None:
    world = checked(make_world(offsets=(90, 100)))
    world.run(3.0)
    world.kill(P)
    world.run(3.0)
    assert [p[2] for p in world.promotions] == [R2]
    # Restart one voter from its disk, then lose the new primary too.
    world.restart_watcher("w2")
    ws2 = world.settings[1]
    world.watchers["w2"] = CheckedWatcher(ws2, world.disks["w2"], world.now)
    world.kill(R2)
    world.run(10.0)
    assert [p[2] for p in world.promotions] == [R2, R1]
    epochs = [p[3] for p in world.promotions]
    assert epochs[0] < epochs[1]
    for w in world.watchers.values():
        assert isinstance(w, CheckedWatcher)
        assert w.disk == w.durable  # the executor's disk and the core agree at rest
        view = w.snapshot().primary(NAME)
        assert view is not None and view.address == R1


# ------------------------------------------------------------------------------- hold mode


@pytest.mark.parametrize("jump", [-0.5, -100.0, 2.5, 300.0])
def test_a_clock_jump_enters_hold(jump: float) -> None:
    rig = Rig.standard()
    rig.run(3.0)
    assert not rig.watcher.in_hold and rig.events("+tilt") == []
    rig.now += jump
    rig.handle(Tick(now=rig.now))
    assert rig.watcher.in_hold
    [(_, _, message)] = rig.events("+tilt")
    assert f"{jump:+.3f}s" in message
    snap = rig.watcher.snapshot()
    assert snap.in_hold and snap.hold_until == pytest.approx(3.0 + rig.settings.hold_duration)


def test_a_gap_within_hold_trigger_is_normal_time() -> None:
    rig = Rig.standard()
    rig.run(3.0)
    rig.now += rig.settings.hold_trigger - 0.1
    rig.handle(Tick(now=rig.now))
    assert not rig.watcher.in_hold and rig.events("+tilt") == []


def test_hold_ends_after_hold_duration_of_observed_time() -> None:
    rig = Rig.standard()
    rig.run(3.0)
    rig.now += 100.0  # raw 103.0 is core time 3.0: the jump itself is not counted
    rig.handle(Tick(now=rig.now))
    rig.run(rig.settings.hold_duration - 0.1)
    assert rig.watcher.in_hold and rig.events("-tilt") == []
    rig.run(0.2)
    assert not rig.watcher.in_hold
    [(left_at, _, _)] = rig.events("-tilt")
    assert 103.0 + rig.settings.hold_duration - 1e-6 <= left_at <= 103.0 + rig.settings.hold_duration + 0.05
    assert len(rig.events("+tilt")) == 1
    # And its next heartbeat speaks as a watcher out of hold.
    rig.run(rig.settings.gossip_period)
    assert not rig.gossips()[-1].in_hold


def test_in_hold_the_watcher_refuses_votes_gives_no_opinion_and_starts_nothing() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.now += 5.0  # stall: hold
    rig.run(0.05)
    assert rig.watcher.in_hold
    rig.nodes[P].mode = "refused"
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.gossip("w3", says_down=True)
    rig.run(0.5)
    view = rig.view()
    assert view.sdown  # it still observes
    assert not view.odown and view.odown_votes == 2  # but its own opinion is withheld
    assert rig.vote_requests() == [] and rig.events("+try-failover") == []
    in_hold = [g for g in rig.gossips() if g.in_hold]
    assert in_hold and not any(v.says_down for g in in_hold for v in g.primaries)
    # Votes: refused, even forced ones, but the epoch is still learned.
    reply = rig.request_vote("w2", 5, forced=True)
    assert not reply.granted and reply.current_epoch == 5
    # Operator's failover: refused with a reason, and nothing is sent.
    refusal = rig.watcher.failover_refusal(NAME)
    assert refusal is not None and refusal.startswith("INPROG") and "hold" in refusal
    actions = rig.command_failover()
    assert not any(isinstance(a, RequestVotes) for a in actions)
    assert rig.view().failover_state == "none"


def test_an_election_in_progress_is_abandoned_on_entering_hold() -> None:
    rig = Rig.standard()
    crashed_and_odown(rig)
    assert rig.view().failover_state == "wait_start"
    rig.now += 5.0
    rig.run(0.05)
    assert rig.view().failover_state == "none"
    assert rig.events("-failover-abort-not-elected")
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)  # too late: it no longer leads anything
    assert rig.events("+elected-leader") == []


def test_after_hold_the_watcher_fails_over_again() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.now += 5.0
    rig.run(0.05)
    rig.nodes[P].mode = "refused"
    rig.run(rig.settings.hold_duration)
    assert not rig.watcher.in_hold
    rig.gossip("w2", says_down=True)
    rig.run_until(lambda: rig.vote_requests(), limit=2.0)
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)
    rig.run_until(lambda: rig.promotes, limit=2.0)
    assert rig.promotes[0][1] == R1


# ------------------------------------------------------------------------ topology gossip


def test_a_higher_config_epoch_from_a_peer_is_adopted() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    actions = rig.gossip("w2", current_epoch=4, config_epoch=4, address=R1)
    assert isinstance(actions[0], PersistState)
    persisted = actions[0].state.get(NAME)
    assert (persisted.current_epoch, persisted.config_epoch, persisted.address) == (4, 4, R1)
    assert persisted.voted_epoch == 0 and {P, R1} <= set(persisted.known)
    [(_, _, switch)] = rig.events("+switch-master")
    assert switch == f"{NAME} {P.host} {P.port} {R1.host} {R1.port}"
    assert rig.events("+config-update-from")[0][2] == f"sentinel w2 @ {NAME} {P.host} {P.port}"
    view = rig.view()
    assert view.address == R1 and view.config_epoch == 4 and view.current_epoch == 4
    assert view.last_failover_at == rig.now
    # Our next gossip spreads it.
    pushed = [a for a in actions if isinstance(a, SendGossip)]
    assert pushed and pushed[-1].gossip.primaries[0].config_epoch == 4
    assert pushed[-1].gossip.primaries[0].address == R1


def test_a_lower_or_equal_config_epoch_is_ignored() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.gossip("w2", current_epoch=4, config_epoch=4, address=R1)
    for config, address in ((3, P), (4, R2), (0, P)):
        actions = rig.gossip("w3", current_epoch=4, config_epoch=config, address=address)
        assert not any(isinstance(a, PersistState) for a in actions)
    assert len(rig.events("+switch-master")) == 1
    view = rig.view()
    assert view.address == R1 and view.config_epoch == 4
    assert rig.watcher.disk.get(NAME).address == R1


def test_a_higher_current_epoch_alone_is_adopted_without_a_switch() -> None:
    rig = Rig.standard()
    rig.run(1.0)
    actions = rig.gossip("w2", current_epoch=9, config_epoch=0)
    assert isinstance(actions[0], PersistState) and actions[0].state.get(NAME).current_epoch == 9
    assert rig.events("+new-epoch")[-1][2] == "9"
    assert rig.events("+switch-master") == [] and rig.view().address == P


def test_a_restarted_watcher_remembers_the_adopted_topology() -> None:
    rig = Rig.standard()
    rig.run(1.0)
    rig.gossip("w2", current_epoch=2, config_epoch=2, address=R2)
    rig.restart()
    view = rig.view()
    assert view.address == R2 and view.config_epoch == 2
    # It probes the new primary, not the configured one.
    rig.run(0.5)
    probed = {a.address for b in rig.watcher.batches for a in b if isinstance(a, Probe)}
    assert R2 in probed


# -------------------------------------------------------------------- operator's failover


def test_failover_command_starts_a_forced_election_and_promotes() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    assert rig.watcher.failover_refusal(NAME) is None
    rig.command_failover()
    [request] = rig.vote_requests()
    assert request.forced and request.sender == "w1" and request.epoch == 1
    assert rig.watcher.failover_refusal(NAME) == "INPROG Failover already in progress"
    # A second command changes nothing.
    assert not any(isinstance(a, RequestVotes) for a in rig.command_failover())
    rig.grant("w2", request.epoch)
    rig.run_until(lambda: rig.events("+failover-end"), limit=3.0)
    assert [(a, e) for _, a, e in rig.promotes] == [(R1, 1)]  # R1 has the higher offset
    view = rig.view()
    assert view.address == R1 and view.config_epoch == 1 and view.failover_state == "none"
    # The old primary, alive, was repointed at the new one.
    assert rig.nodes[P].info.role is Role.REPLICA and rig.nodes[P].info.master == R1


def test_peers_grant_a_forced_request_while_the_primary_is_alive() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    assert not rig.view().sdown
    assert not rig.request_vote("w2", 1).granted  # nobody sees a reason for it
    assert rig.request_vote("w2", 2, forced=True).granted  # the operator does


def test_failover_refusal_texts() -> None:
    rig = Rig.standard()
    assert rig.watcher.failover_refusal("nope") == "ERR No such master with that name"
    assert rig.handle(FailoverCommand(now=rig.now, primary="nope")) == []
    # Before the primary's INFO named any replica, there is nobody to promote.
    assert rig.watcher.failover_refusal(NAME) == "NOGOODSLAVE No suitable replica to promote"
    assert not any(isinstance(a, RequestVotes) for a in rig.command_failover())
    assert rig.view().failover_state == "none"


def test_no_good_replica_when_every_replica_is_down() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    assert rig.watcher.failover_refusal(NAME) is None
    rig.nodes[R1].mode = "refused"
    rig.nodes[R2].mode = "refused"
    rig.run(1.0)
    assert rig.watcher.failover_refusal(NAME) == "NOGOODSLAVE No suitable replica to promote"


def test_a_primary_without_replicas_has_no_good_slave() -> None:
    rig = Rig(watcher_settings(), {P: FakeRedis(primary_info(replicas=()))})
    rig.run(2.0)
    assert rig.watcher.failover_refusal(NAME) == "NOGOODSLAVE No suitable replica to promote"


# --------------------------------------------------------------------- failover interval


def test_min_failover_interval_blocks_a_second_automatic_failover() -> None:
    world = checked(make_world(offsets=(90, 100)))  # interval 5 s
    world.run(3.0)
    world.kill(P)
    for _ in range(100):
        world.run(0.05)
        if world.promotions:
            break
    [(first_at, _, new, _)] = world.promotions
    assert new == R2
    world.run(0.5)
    world.kill(R2)  # the new primary dies right away
    world.run(3.0)
    # Objectively down everywhere, yet nobody even tries inside the interval.
    for w in world.watchers.values():
        view = w.snapshot().primary(NAME)
        assert view is not None and view.odown and view.failover_state == "none"
    assert len(world.promotions) == 1
    world.run(6.0)
    assert len(world.promotions) == 2
    second_at = world.promotions[1][0]
    assert second_at - first_at >= 5.0


def test_an_operator_failover_is_not_blocked_by_the_interval() -> None:
    rig = Rig.standard()
    fail_over(rig)
    assert rig.view().last_failover_at is not None
    assert rig.watcher.failover_refusal(NAME) is None
    rig.command_failover()
    assert rig.vote_requests()[-1].forced


# ----------------------------------------------------------------------------- lag gate


def lag_world(*, r1_offset: int, r2_offset: int, r1_priority: int = 100, r2_priority: int = 100) -> World:
    nodes = {
        P: Node(P, Role.PRIMARY, offset=1000),
        R1: Node(R1, Role.REPLICA, master=P, offset=r1_offset, priority=r1_priority),
        R2: Node(R2, Role.REPLICA, master=P, offset=r2_offset, priority=r2_priority),
    }
    ps = replace(primary_settings(), max_lag_bytes=100, lag_wait=2.0)
    settings_ = [watcher_settings(name=n, primary=ps) for n in ("w1", "w2", "w3")]
    return checked(World(nodes=nodes, settings=settings_))


def test_a_replica_lagging_beyond_the_gate_is_never_promoted() -> None:
    world = lag_world(r1_offset=500, r2_offset=400)  # 500 and 600 bytes behind, gate 100
    world.run(3.0)
    world.kill(P)
    world.run(10.0)
    assert world.promotions == []
    selects = world.events("+failover-state-select-slave")
    aborts = world.events("-failover-abort-no-good-slave")
    assert selects and aborts
    # Each attempt waited lag_wait for a catch-up before giving up.
    first_select = selects[0]
    first_abort = next(a for a in aborts if a[1] == first_select[1])
    assert first_abort[0] - first_select[0] >= 2.0


def test_a_lagging_replica_that_catches_up_within_lag_wait_is_promoted() -> None:
    world = lag_world(r1_offset=500, r2_offset=400)
    world.run(3.0)
    world.kill(P)
    for _ in range(200):
        world.run(0.05)
        if world.events("+failover-state-select-slave"):
            break
    selected_at = world.events("+failover-state-select-slave")[0][0]
    world.run(1.0)
    assert world.promotions == []  # still lagging: not promoted
    world.nodes[R1].offset = 950  # the relay log drained
    world.run(1.5)
    assert [p[2] for p in world.promotions] == [R1]
    promoted_at = world.promotions[0][0]
    assert selected_at + 1.0 <= promoted_at < selected_at + 2.0 + 0.1
    assert world.events("-failover-abort-no-good-slave") == []


def test_a_replica_within_the_gate_is_promoted_at_once() -> None:
    world = lag_world(r1_offset=950, r2_offset=400)
    world.run(3.0)
    world.kill(P)
    world.run(3.0)
    assert [p[2] for p in world.promotions] == [R1]
    selected_at = world.events("+failover-state-select-slave")[0][0]
    assert world.promotions[0][0] - selected_at < 1.0


def test_a_lagging_preferred_replica_does_not_block_one_within_the_gate() -> None:
    world = lag_world(r1_offset=100, r2_offset=1000, r1_priority=10, r2_priority=100)
    world.run(3.0)
    world.kill(P)
    world.run(10.0)
    assert [p[2] for p in world.promotions] == [R2]


# ------------------------------------------------------------------- promotion uncertainty


def test_an_unconfirmed_promotion_is_verified_through_info_and_committed() -> None:
    rig = Rig.standard()
    rig.nodes[R1].promote = "unconfirmed"  # REPLICAOF NO ONE happens, ROLE does not confirm it
    fail_over(rig)
    assert rig.events("+failover-state-wait-promotion")
    assert rig.view().address == R1 and rig.view().config_epoch == 1


def test_a_refused_promotion_aborts_before_any_commit() -> None:
    rig = Rig.standard()
    rig.nodes[R1].promote = "refuse"  # the best replica, but REPLICAOF NO ONE fails on it
    crashed_and_odown(rig)
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)
    rig.gossip("w2", says_down=True)
    rig.run_until(lambda: rig.events("-failover-abort-slave-timeout"), limit=3.0)
    assert rig.events("+failover-state-wait-promotion")  # it checked INFO: still a replica
    assert rig.events("+switch-master") == [] and rig.promotes == []
    view = rig.view()
    assert view.address == P and view.config_epoch == 0 and view.failover_state == "none"


# ------------------------------------------------------------------------------ snapshot


def test_snapshot_fields_follow_a_failover() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    view = rig.view()
    assert (view.sdown, view.odown, view.odown_votes, view.failover_state, view.leader) == (
        False,
        False,
        0,
        "none",
        "",
    )
    crashed_and_odown(rig)
    view = rig.view()
    assert view.sdown and view.odown and view.odown_votes == 2 and view.quorum == 2
    assert view.failover_state == "wait_start" and view.failover_epoch == 1
    assert view.current_epoch == 1 and view.config_epoch == 0
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)
    assert rig.view().leader == "w1"
    assert rig.view().failover_state in ("select_slave", "send_slaveof_noone", "reconf_slaves")
    rig.gossip("w2", says_down=True)
    rig.run_until(lambda: rig.events("+failover-end"), limit=3.0)
    view = rig.view()
    assert view.failover_state == "none" and view.failover_epoch == 0
    assert view.config_epoch == 1 and view.address == R1
    assert not view.odown and not view.sdown  # the new primary answers
    assert view.primary.address == R1
    assert {r.address for r in view.replicas} == {P, R2}


def test_snapshot_leader_is_whom_a_voter_voted_for() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    rig.request_vote("w3", 2)
    view = rig.view()
    assert view.leader == "w3" and view.current_epoch == 2 and view.failover_state == "none"
    rig.gossip("w2", current_epoch=3)
    assert rig.view().leader == ""  # nobody known for the newer epoch


# ------------------------------------------------------------------------- role mismatch


def test_a_primary_that_reports_itself_a_replica_is_down_after_the_grace_period() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].info = replica_info(master=R1)
    mismatch_from = rig.now
    limit = rig.settings.primaries[0].down_after + 2 * rig.settings.primaries[0].info_period
    rig.run_until(lambda: rig.view().sdown, limit=limit + 2.0)
    # It answers PING, so only the role rule can make it down, and not before the grace period
    # (INFO is read every info_period, so the mismatch is noticed up to a period late).
    assert rig.now - mismatch_from > limit
    assert rig.view().primary.sdown is False


def test_info_from_an_unknown_address_is_ignored() -> None:
    rig = Rig.standard()
    rig.run(1.0)
    stranger = Address("10.9.9.9", 6379)
    actions = rig.handle(InfoReply(now=rig.now, primary=NAME, address=stranger, info=primary_info()))
    assert actions == [] and stranger not in {r.address for r in rig.view().replicas}
    assert all(stranger not in entry.known for entry in rig.watcher.disk.primaries.values())


# ------------------------------------------------------------------ the checker itself


def test_the_contract_checker_rejects_what_it_must() -> None:
    # Guards every test above against a vacuous checker.
    before = DurableState()
    voted = DurableState({NAME: PrimaryDurable(current_epoch=2, voted_epoch=2, voted_for="w2")})
    reply = SendVoteReply("w2", VoteReply("w1", NAME, 2, True, "w2", 2))
    with pytest.raises(ContractViolation, match="PersistState at \\[1\\]"):
        check_batch("w1", before, before, voted, [reply, PersistState(voted)])
    with pytest.raises(ContractViolation, match="but the disk holds"):
        check_batch("w1", before, before, before, [reply])
    with pytest.raises(ContractViolation, match="nothing changed"):
        check_batch("w1", before, before, before, [reply, PersistState(before)])
    with pytest.raises(ContractViolation, match="nothing changed"):
        check_batch("w1", before, before, before, [PersistState(voted)])
    switch = Publish("+switch-master", f"{NAME} {P.host} {P.port} {R1.host} {R1.port}")
    with pytest.raises(ContractViolation, match="switch-master"):
        check_batch("w1", before, before, before, [switch])
    assert check_batch("w1", before, before, voted, [PersistState(voted), reply]) == voted


# ---------------------------------------------------------------------------- reconfigure


def test_reconfigure_refuses_a_new_name_or_electorate_and_keeps_the_old_settings() -> None:
    rig = Rig.standard()
    rig.run(1.0)
    old = rig.watcher.settings
    for bad in (replace(old, name="w9"), replace(old, electorate=5)):
        with pytest.raises(ValueError, match="restart"):
            rig.watcher.reconfigure(bad)
        assert rig.watcher.settings is old


def test_reconfigure_applies_a_new_quorum_at_once() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    stricter = replace(rig.settings, primaries=(primary_settings(quorum=3),))
    actions = rig.watcher.reconfigure(stricter)
    assert isinstance(actions[0], PersistState)
    rig.nodes[P].mode = "refused"
    rig.run(0.6)
    rig.gossip("w2", says_down=True)
    view = rig.view()
    assert view.quorum == 3 and view.sdown and not view.odown  # 2 of 3 is no longer enough
    rig.gossip("w3", says_down=True)
    assert rig.view().odown


def test_reconfigure_adds_a_primary_that_is_then_probed() -> None:
    other = Address("10.0.0.9", 6379)
    rig = Rig.standard()
    rig.nodes[other] = FakeRedis(primary_info(replicas=()))
    rig.run(1.0)
    both = replace(
        rig.settings, primaries=(primary_settings(), primary_settings(name="other", address=other))
    )
    actions = rig.watcher.reconfigure(both)
    assert [a.message for a in actions if isinstance(a, Publish) and a.channel == "+monitor"] == [
        f"master other {other.host} {other.port} quorum 2"
    ]
    rig.run(1.0)
    probed = {a.address for b in rig.watcher.batches for a in b if isinstance(a, Probe)}
    assert other in probed and rig.watcher.snapshot().primary("other") is not None


def test_a_removed_then_readded_primary_does_not_vote_twice_in_an_epoch() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    assert rig.request_vote("w2", 3).granted
    ws = rig.settings
    other = primary_settings(name="other", address=Address("10.0.0.9", 6379))
    rig.watcher.reconfigure(replace(ws, primaries=(other,)))  # an operator's mistake...
    rig.watcher.reconfigure(ws)  # ...undone a moment later
    refused = rig.request_vote("w3", 3)
    assert not refused.granted and refused.voted_for == "w2"


def test_reconfigure_leaves_nothing_to_persist_for_the_next_event() -> None:
    rig = Rig.standard()
    rig.run(1.0)
    rig.watcher.reconfigure(rig.settings)
    actions = rig.handle(Tick(now=rig.now + 0.01))
    assert not any(isinstance(a, PersistState) for a in actions)


def test_a_restart_without_a_primary_does_not_erase_its_votes() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    assert rig.request_vote("w2", 3).granted
    full = rig.settings
    other = primary_settings(name="other", address=Address("10.0.0.9", 6379))
    rig.settings = replace(full, primaries=(other,))
    rig.restart()  # started with a config that lacks mymaster
    rig.handle(VoteRequested(now=rig.now, request=VoteRequest("w2", "other", 1)))  # any write
    rig.settings = full
    rig.restart()
    refused = rig.request_vote("w3", 3)
    assert not refused.granted and refused.voted_for == "w2"


def _stray_primary_rig() -> Rig:
    """w1 at config epoch 0 with a healthy primary P, and R1 reporting itself a primary (as a
    replica promoted by a failover that w1 has not heard of would)."""
    rig = Rig.standard()
    rig.run(1.0)
    rig.nodes[R1].info = primary_info(replicas=())
    return rig


def test_views_held_back_by_the_network_do_not_license_demoting_a_stray_primary() -> None:
    # Found by the chaos rig: after a partition healed, TCP delivered peers' gossip sent
    # before their failover (config epoch 0), and the cut-off watcher took it as a fresh
    # majority for its old topology and demoted the NEW primary. Such views echo only
    # stamps of ours from before the contradiction began.
    rig = _stray_primary_rig()
    old_stamp = int(rig.now * 1000)
    for _ in range(int(4.0 / 0.25)):
        rig.run(0.25)
        rig.gossip("w2", echo_ms=old_stamp)
        rig.gossip("w3", echo_ms=old_stamp)
    assert rig.events("+convert-to-slave") == []
    assert rig.nodes[R1].info.role is Role.PRIMARY  # nobody sent it REPLICAOF


def test_a_stray_primary_is_demoted_when_peers_vouch_for_the_topology_after_it_appeared() -> None:
    # The control: the same peers, now echoing our latest gossip, are a current majority.
    rig = _stray_primary_rig()
    for _ in range(int(4.0 / 0.25)):
        rig.run(0.25)
        latest = max(g.sent_ms for g in rig.gossips())
        rig.gossip("w2", echo_ms=latest)
        rig.gossip("w3", echo_ms=latest)
    assert [m for _, _, m in rig.events("+convert-to-slave")] == [
        f"slave {R1.host}:{R1.port} {R1.host} {R1.port} @ {NAME} {P.host} {P.port}"
    ]
    assert rig.nodes[R1].info.role is Role.REPLICA and rig.nodes[R1].info.master == P


def test_the_retry_window_widens_while_attempts_keep_failing() -> None:
    # Nobody answers our vote requests (latency beyond the election timeout): each lost
    # attempt doubles the randomised retry window, so competing candidates spread out.
    rig = Rig.standard()
    rig.run(1.0)
    rig.nodes[P].mode = "refused"
    deadline = rig.now + 40.0
    while len(rig.vote_requests()) < 7 and rig.now < deadline:
        rig.gossip("w2", says_down=True, current_epoch=rig.view().current_epoch)
        rig.gossip("w3", says_down=True, current_epoch=rig.view().current_epoch)
        rig.run(0.1)
    starts = [t for t, a in rig.sent if isinstance(a, RequestVotes)]
    assert len(starts) >= 7
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    timeout = rig.settings.election_timeout
    backoff = rig.settings.retry_backoff
    assert gaps[0] <= timeout + backoff + 0.2  # the first retry within one window
    assert gaps[5] >= timeout + 0.25 * 16 * backoff  # the sixth after the window doubled 4 times


def test_no_vote_for_a_newer_epoch_while_our_promotion_is_in_flight() -> None:
    # A simulator finding (seed 1000545): a leader that voted for a newer candidate while its
    # own Promote was unanswered let that candidate promote a replica that had already
    # started a new history.
    rig = Rig.standard()
    rig.run(1.0)
    rig.nodes[P].mode = "refused"
    rig.run_until(lambda: rig.view().sdown, limit=2.0)
    rig.gossip("w2", says_down=True)
    rig.run_until(lambda: rig.vote_requests(), limit=2.0)
    epoch = rig.vote_requests()[-1].epoch
    rig.grant("w2", epoch)
    rig.run_until(lambda: rig.promotes, limit=3.0)  # Promote sent; its answer not delivered yet
    assert not rig.request_vote("w3", epoch + 1).granted
    rig.run(2.0)  # the promotion is confirmed and committed
    assert rig.view().address == rig.promotes[0][1] and rig.view().config_epoch == epoch


def test_the_fork_is_recorded_on_the_history_the_promoted_replica_was_on() -> None:
    # Chaos schedule:1014: the previous primary was lost before anyone read its new
    # replication id, so our record still names its predecessor's history. The promoted
    # replica had already resynced to the newer one (its replid), and that is what Redis
    # makes its replid2: the fork point must be recorded on it, not on our stale record.
    durable = DurableState(
        {
            NAME: PrimaryDurable(
                current_epoch=1,
                config_epoch=1,
                address=P,
                replid="",
                replid2="history-1",
                fork=500,
                known=(P, R1),
            )
        }
    )
    nodes = {
        P: FakeRedis(primary_info(), mode="refused"),
        R1: FakeRedis(replica_info(offset=700, run_id="run-r1", replid="history-2", replid2="history-1")),
    }
    rig = Rig(watcher_settings(), nodes, durable=durable)
    rig.run(0.5)
    rig.gossip("w2", says_down=True, current_epoch=1, config_epoch=1)
    rig.run_until(lambda: rig.vote_requests(), limit=3.0)
    rig.grant("w2", rig.vote_requests()[-1].epoch)
    rig.run_until(lambda: rig.promotes, limit=3.0, step=0.0005)  # the answer is 1 ms away
    rig.nodes[R1].mode = "hang"  # its next INFO (which would tell the truth anyway) stays out
    rig.run(0.01)  # the promotion is answered and committed
    history = rig.watcher.disk.get(NAME)
    assert history.address == R1
    assert (history.replid2, history.fork) == ("history-2", 701)
