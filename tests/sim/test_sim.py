"""The deterministic simulator: many random seeds with zero violations, replayable traces,
and small hand-made scenarios through the same world."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from haredis.core.actions import FREEZE_TARGET

from .config import Fault, scenario
from .runner import replay_command, run_many, run_one
from .toy_watcher import toy_factory
from .world import World
from .write_fence import SLACK

ROOT = Path(__file__).resolve().parents[2]


def run(cfg: object, factory: object = None) -> World:
    world = World(cfg.seed, cfg, factory)  # type: ignore[attr-defined, arg-type]
    world.run()
    return world


def violations(world: World) -> list[str]:
    return [v.line() for v in world.checker.violations]


def invariants_hit(world: World) -> set[str]:
    return {v.invariant for v in world.checker.violations}


def elected(world: World) -> list[tuple[float, str]]:
    return [(t, w) for t, w, channel, _ in world.publishes if channel == "+elected-leader"]


# -- random seeds ---------------------------------------------------------------------------


def test_random_seeds_have_no_violations(sim_seeds: int) -> None:
    failing = []
    for report in run_many(range(sim_seeds)):
        if report.violations:
            failing.append(f"{report.violations[0]}\n    replay: {replay_command(report.seed)}")
    assert not failing, f"{len(failing)} of {sim_seeds} seeds violate invariants:\n" + "\n".join(failing)


def test_same_seed_same_trace() -> None:
    a = World(12345).run()
    b = World(12345).run()
    c = World(12346).run()
    assert a.trace_hash == b.trace_hash
    assert a.timeline == b.timeline
    assert a.trace_hash != c.trace_hash


@pytest.mark.slow
def test_trace_hash_survives_another_process_and_hash_seed() -> None:
    """Nothing may depend on set order of strings (PYTHONHASHSEED) or on the process."""
    lines = []
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run(
            [sys.executable, "-m", "tests.sim", "--seeds", "3", "--start", "40", "--jobs", "2"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines.append(proc.stdout.strip().splitlines()[-1])
    assert lines[0] == lines[1]
    assert lines[0].startswith("seeds=3 ")


# -- scenarios with the real core -----------------------------------------------------------


def test_kill_primary_promotes_the_freshest_replica_and_others_follow() -> None:
    cfg = scenario(
        seed=1, replicas=3, repl_periods=(0.05, 0.29, 0.17), faults=(Fault(10.0, "kill", None, "r0"),)
    )
    world = run(cfg)
    assert not violations(world)
    assert world.promotions, "no failover after kill -9 of the primary"
    t, _leader, _epoch, node, offsets = world.promotions[0]
    assert t - 10.0 < cfg.down_after + 1.0
    replicas = {name: off for name, off in offsets.items() if name != "r0"}
    assert node == max(sorted(replicas), key=lambda name: replicas[name])
    new = world.node_by_name[node]
    assert all(n.master == new.address for n in world.nodes if n is not new)  # r0 too, demoted


def test_pause_shorter_than_down_after_never_fails_over() -> None:
    faults = tuple(Fault(at, "pause", 1.3, "r0") for at in (8.0, 12.0, 16.0, 20.0))
    world = run(scenario(seed=2, down_after=2.0, faults=faults, chaos_end=30.0))
    assert not violations(world)
    assert not world.promotions
    assert not [p for p in world.publishes if p[2] == "+odown"]


def test_pause_longer_than_down_after_fails_over() -> None:
    world = run(scenario(seed=3, down_after=1.0, faults=(Fault(8.0, "pause", 6.0, "r0"),)))
    assert not violations(world)
    assert world.promotions
    # The old primary comes back and is demoted under the new one.
    assert world.node_by_name["r0"].master == world.node_by_name[world.promotions[0][3]].address


def test_two_of_three_watchers_down_no_failover() -> None:
    faults = (
        Fault(6.0, "watcher-crash", None, "w2"),
        Fault(6.0, "watcher-crash", None, "w3"),
        Fault(10.0, "kill", None, "r0"),
    )
    world = run(scenario(seed=4, faults=faults, chaos_end=25.0))
    assert not violations(world)
    assert not [p for p in world.promotions if p[0] < 25.0]


def test_priority_zero_replica_is_never_chosen() -> None:
    # r1 (priority 0) replicates fastest, so it is the freshest; r2 must still be chosen.
    cfg = scenario(
        seed=5, priorities=(0, 100), repl_periods=(0.02, 0.3), faults=(Fault(10.0, "kill", None, "r0"),)
    )
    world = run(cfg)
    assert not violations(world)
    assert world.promotions
    assert {p[3] for p in world.promotions} == {"r2"}


def test_minority_side_watcher_never_leads() -> None:
    faults = (
        Fault(6.0, "partition", 20.0, target="w1", shape="isolate-watcher"),
        Fault(10.0, "kill", None, "r0"),
    )
    world = run(scenario(seed=6, faults=faults, chaos_end=30.0))
    assert not violations(world)
    assert world.promotions
    assert all(w != "w1" for t, w in elected(world) if 6.0 <= t <= 26.0)


def test_one_watcher_that_cannot_see_the_primary_never_fails_over_even_with_quorum_one() -> None:
    faults = (Fault(6.0, "partition", 15.0, target="r0>w1", shape="pairs"),)
    world = run(scenario(seed=7, quorum=1, faults=faults, chaos_end=25.0))
    assert not violations(world)
    assert not world.promotions


def test_old_primary_back_empty_is_demoted_without_wiping_data() -> None:
    world = run(scenario(seed=8, faults=(Fault(10.0, "kill", 8.0, "r0", empty=True),)))
    assert not violations(world)
    assert world.promotions
    new = world.node_by_name[world.promotions[0][3]]
    assert new.alive and world.node_by_name["r0"].master == new.address
    assert min(n.offset() for n in world.nodes) > 10_000  # nobody resynced from the empty node


def test_short_stall_with_a_cut_off_minority_does_not_fail_over() -> None:
    """w4 and w5 cannot hear r0 (one way): they see it down and reach quorum 2. w1-w3 reach
    it; r0 then stalls for 1.0 s, less than down_after (1.5 s). A majority sees no reason
    for a failover, so there must be none."""
    faults = (
        Fault(6.0, "partition", 30.0, target="r0>w4,r0>w5", shape="pairs"),
        *(Fault(10.0 + 2.13 * i, "pause", 1.0, "r0") for i in range(8)),
    )
    world = run(scenario(seed=18, watchers=5, quorum=2, down_after=1.5, faults=faults, chaos_end=35.0))
    assert not world.promotions, violations(world)


def test_clock_jumps_put_watchers_in_hold_without_a_failover() -> None:
    faults = (
        Fault(8.0, "clock-jump", target="w1", amount=30.0),
        Fault(9.0, "clock-jump", target="w2", amount=-20.0),
        Fault(9.5, "clock-jump", target="w3", amount=5.0),
    )
    world = run(scenario(seed=9, faults=faults, chaos_end=20.0))
    assert not violations(world)
    assert not world.promotions
    assert {w for _, w, channel, _ in world.publishes if channel == "+tilt"} == {"w1", "w2", "w3"}


def test_operator_failover_promotes_a_replica_and_demotes_the_old_primary() -> None:
    world = run(scenario(seed=10, faults=(Fault(8.0, "failover-command", target="w2"),), chaos_end=20.0))
    assert not violations(world)
    assert len(world.promotions) == 1
    new = world.node_by_name[world.promotions[0][3]]
    assert new.name != "r0" and world.node_by_name["r0"].master == new.address


def test_planned_switchover_moves_the_primary_and_the_old_one_follows() -> None:
    world = run(scenario(seed=16, faults=(Fault(8.0, "switchover-command", 5.0, "r2"),), chaos_end=20.0))
    assert not violations(world)
    assert world.checker.coverage.get("switchovers") == 1
    r0, r2 = world.node_by_name["r0"], world.node_by_name["r2"]
    assert r0.master == r2.address and world.node_by_name["r1"].master == r2.address
    assert world.lineage.is_prefix(r0.replid, r0.offset(), r2.replid, r2.offset())


def test_switchover_to_a_cut_off_replica_times_out_and_writes_resume() -> None:
    faults = (
        Fault(6.0, "partition", 6.0, target="r0>r1,r1>r0", shape="pairs"),
        Fault(8.0, "switchover-command", 1.0, "r1"),
    )
    world = run(scenario(seed=17, faults=faults, chaos_end=20.0))
    assert not violations(world)
    r0 = world.node_by_name["r0"]
    assert r0.role.value == "master" and not r0.writes_paused
    assert all(n.master == r0.address for n in world.nodes if n is not r0)


# -- the checkers catch what they should (the toy watcher with planted bugs) ----------------


KILL = (Fault(10.0, "kill", None, "r0"),)


@pytest.mark.parametrize(
    ("bug", "cfg", "expected"),
    [
        ("no-persist", scenario(seed=11, faults=KILL), "8-durable-first"),
        ("one-vote-wins", scenario(seed=12, faults=KILL), "4-election-quorum"),
        # (b) true offsets: r1 is cut off from the primary for 5 s before it dies.
        (
            "stale-pick",
            scenario(
                seed=13, faults=(Fault(5.0, "partition", 7.0, target="r0>r1,r1>r0", shape="pairs"), *KILL)
            ),
            "5-promotion-choice",
        ),
        # (a) exact INFO: a long pause freezes offsets well before the failover.
        (
            "stale-pick",
            scenario(
                seed=13,
                replicas=3,
                down_after=3.0,
                repl_periods=(0.05, 0.29, 0.17),
                faults=(Fault(10.0, "pause", 10.0, "r0"),),
            ),
            "5-promotion-choice",
        ),
        (
            "priority-zero",
            scenario(seed=14, priorities=(0, 100), repl_periods=(0.02, 0.3), faults=KILL),
            "5-promotion-choice",
        ),
        # Re-promoting the old primary is allowed only once it was demoted to a replica (seed
        # 1014004); one that is still a master (here paused) is not a promotion.
        (
            "promote-primary",
            scenario(seed=19, down_after=1.0, faults=(Fault(10.0, "pause", 10.0, "r0"),)),
            "5-promotion-choice",
        ),
        (
            "vote-while-up",
            scenario(
                seed=15,
                quorum=1,
                faults=(Fault(6.0, "partition", 15.0, target="r0>w1", shape="pairs"),),
                chaos_end=25.0,
            ),
            "6-no-false-failover",
        ),
    ],
)
def test_checker_catches_planted_bug(bug: str, cfg: object, expected: str) -> None:
    clean = run(cfg, toy_factory())
    assert expected not in invariants_hit(clean), violations(clean)
    buggy = run(cfg, toy_factory(frozenset({bug})))
    assert expected in invariants_hit(buggy), violations(buggy)


def test_checker_catches_double_vote() -> None:
    """Two operators start a failover on two watchers at the same instant: two candidates in
    one epoch. Voters that vote twice elect both; the checkers see two leaders."""
    faults = (Fault(10.0, "failover-command", target="w1"), Fault(10.0, "failover-command", target="w2"))
    cfg = scenario(seed=21, watchers=5, faults=faults, chaos_end=15.0, end=20.0)
    assert not ({"2-one-vote", "1-one-leader"} & invariants_hit(run(cfg, toy_factory())))
    hit = invariants_hit(run(cfg, toy_factory(frozenset({"double-vote"}))))
    assert {"2-one-vote", "1-one-leader"} <= hit


# -- write fencing (invariant 13) -----------------------------------------------------------

ISOLATE_PRIMARY = (Fault(10.0, "partition", 15.0, shape="isolate-primary"),)


def fenced(seed: int, faults: tuple[Fault, ...], *, fencing: bool = True, max_lag: int = 2) -> object:
    return scenario(seed=seed, fencing=fencing, fence_max_lag=max_lag, faults=faults, chaos_end=30.0)


def writes_stopped(world: World, node: str, after: float) -> float | None:
    """When `node` stopped accepting writes, the first time after `after`."""
    return next(
        (t for t, n, on in world.checker.write_fence.changes if n == node and t > after and not on), None
    )


def test_fenced_primary_cut_off_from_its_replicas_refuses_writes_by_itself() -> None:
    """The model: a primary whose replicas' acks stop counts them good while its whole-second
    lag is <= max_lag, and acts on that count at its once-a-second cron, so it stops taking
    writes between max_lag and max_lag + 2 s after the cut. Healed, it takes writes again."""
    cut = Fault(10.0, "partition", 8.0, target="r0>r1,r1>r0,r0>r2,r2>r0", shape="pairs")
    world = run(scenario(seed=33, fencing=True, fence_max_lag=2, faults=(cut,), chaos_end=30.0))
    r0 = world.node_by_name["r0"]
    assert r0.fence == (1, 2)  # set by the watchers (and kept: r0 never restarted)
    stopped = writes_stopped(world, "r0", 10.0)
    assert stopped is not None and 10.0 + 2 <= stopped <= 10.0 + 2 + 2.0
    resumed = [t for t, n, on in world.checker.write_fence.changes if n == "r0" and on and t > stopped]
    assert resumed and resumed[0] >= 18.0
    assert not world.promotions  # the watchers still reach r0: no failover


@pytest.mark.parametrize("config_file", [True, False])
def test_the_fence_survives_a_restart_only_on_a_node_with_a_config_file(config_file: bool) -> None:
    """CONFIG REWRITE keeps the fence in the config file: a restarted node comes back fenced
    and refuses writes until a replica acknowledges. Without a file it comes back unfenced
    (and takes writes at once), the documented limit the write-fence check excuses."""
    from dataclasses import replace

    cfg = fenced(30, ())
    cfg = replace(cfg, nodes=tuple(replace(n, config_file=config_file) for n in cfg.nodes))  # type: ignore[attr-defined]
    world = World(cfg.seed, cfg)  # type: ignore[attr-defined]
    world.sched.run_until(8.0)
    r0 = world.node_by_name["r0"]
    assert r0.fence == (1, 2)  # set by the watchers
    r0.kill()
    r0.restart(empty=True)
    if config_file:
        assert r0.fence == (1, 2)
        assert not r0.accepts_writes()  # no replica has acknowledged the new process yet
    else:
        assert r0.fence is None
        assert r0.accepts_writes()


def test_an_old_primary_back_unfenced_and_out_of_reach_is_excused_not_hidden() -> None:
    """Simulator seed 1224: the old primary restarts empty without a config file while the
    watchers cannot reach it; nothing can fence it, so its overlap with the new primary
    (5.1 s) is excused and counted as such, not a violation."""
    world = World(1224)
    result = world.run()
    assert not result.violations
    assert dict(result.coverage).get("fence-excused-restarted-unfenced") == 1
    assert world.checker.write_fence.longest > SLACK  # the overlap is real, only excused


def test_isolated_primary_with_fencing_stops_writing_before_the_promotion() -> None:
    """The primary alone is cut off from watchers and replicas (its clients still reach it).
    The leader waits out its lease (+fence-wait), so the new primary never takes writes
    while the old one still does (beyond Redis's rounding slack)."""
    world = run(fenced(30, ISOLATE_PRIMARY))
    assert not violations(world)
    assert world.promotions
    assert [p for p in world.publishes if p[2] == "+fence-wait"]
    assert world.checker.coverage.get("fence-promotions-after-lease-wait") == 1
    stopped = writes_stopped(world, "r0", 10.0)
    assert stopped is not None and stopped <= world.promotions[0][0]
    assert world.checker.write_fence.longest <= SLACK


def test_isolated_primary_without_fencing_keeps_taking_writes_control() -> None:
    """The control for the test above: the same world without fencing has two writable
    primaries for most of the partition, far beyond any lease."""
    world = run(fenced(30, ISOLATE_PRIMARY, fencing=False))
    assert not violations(world)  # invariant 13 applies only with fencing on
    assert world.promotions
    lease = world.config.primary_settings().fence_lease
    assert world.checker.write_fence.longest > lease + 1.0
    assert writes_stopped(world, "r0", 10.0) is not None  # only when it is demoted after the heal


def test_operator_failover_with_fencing_pauses_and_demotes_the_old_primary_first() -> None:
    """A reachable old primary: CLIENT PAUSE WRITE, promote, REPLICAOF, unpause, then the
    PromoteDone. No moment with two writable primaries."""
    world = run(fenced(10, (Fault(8.0, "failover-command", target="w2"),)))
    assert not violations(world)
    assert len(world.promotions) == 1
    assert world.checker.coverage.get("fence-old-paused") == 1
    assert not world.checker.write_fence.intervals
    new = world.node_by_name[world.promotions[0][3]]
    r0 = world.node_by_name["r0"]
    assert r0.master == new.address and r0.client_pause_until == 0.0


def test_fencing_seed_replays_exactly() -> None:
    seed = next(s for s in range(100, 200) if World(s).config.fencing)
    a, b = World(seed).run(), World(seed).run()
    assert a.trace_hash == b.trace_hash
    assert dict(a.coverage).get("fencing-on") == 1


def test_checker_catches_promotion_without_lease_wait() -> None:
    """The toy watcher fences like the core; with `no-lease-wait` it promotes as soon as it
    wins, while the isolated old primary still counts its replicas' last acks as good."""
    cfg = fenced(30, ISOLATE_PRIMARY)
    clean = run(cfg, toy_factory())
    assert "13-write-fence" not in invariants_hit(clean), violations(clean)
    assert clean.promotions
    buggy = run(cfg, toy_factory(frozenset({"no-lease-wait"})))
    assert "13-write-fence" in invariants_hit(buggy), violations(buggy)
    # Why the bound is 1 s and not fence_lease + 1 s: even with no lease wait at all the
    # overlap stays under the lease, so that bound could never catch this bug.
    lease = cfg.primary_settings().fence_lease  # type: ignore[attr-defined]
    assert SLACK < buggy.checker.write_fence.longest < lease + 1.0


def test_restarted_old_primary_with_a_following_replica_is_fenced_at_once() -> None:
    faults = (
        Fault(8.0, "kill", 3.7, "r2"),  # back at 11.7, following r0
        Fault(8.0, "partition", 4.2, target="r1>r3,r3>r1", shape="pairs"),  # r1 gets no ack until 12.2
        Fault(10.0, "kill", 1.6, "r0"),  # back at 11.6, a master again
    )
    cfg = scenario(seed=41, replicas=3, priorities=(100, 0, 0), fencing=True, faults=faults, chaos_end=30.0)
    world = run(cfg)
    assert [p[3] for p in world.promotions] == ["r1"]
    assert "13-write-fence" not in invariants_hit(world), violations(world)


def test_failed_pause_of_the_old_primary_waits_its_lease_before_promoting() -> None:
    faults = (
        Fault(8.0, "failover-command", target="w2"),
        Fault(7.995, "partition", 10.0, shape="isolate-primary"),
    )
    world = run(fenced(10, faults))
    assert world.checker.coverage.get("fence-old-pause-failed") == 1  # the case in question
    assert "13-write-fence" not in invariants_hit(world), violations(world)


def test_fence_wait_does_not_outlive_the_primarys_recovery() -> None:
    faults = (
        Fault(10.0, "partition", 2.0, target="r0>w2,w2>r0", shape="pairs"),
        Fault(10.0, "partition", 4.0, target="r0>w1,w1>r0", shape="pairs"),
    )
    world = run(scenario(seed=50, fencing=True, faults=faults, chaos_end=30.0))
    assert [p for p in world.publishes if p[2] == "+fence-wait"]
    assert "6-no-false-failover" not in invariants_hit(world), violations(world)


# -- the pre-selection freeze and WAIT-confirmed writes (invariant 14) ----------------------

# r0 is cut off from the watchers only: it keeps writing and streaming to r1 and r2, whose
# acknowledgements confirm its writes to clients blocked in WAIT 1. Fast replication and a
# 5 ms watcher<->Redis link make the window between the leader's selection and the
# repointing of the other replica long enough to matter (an unfrozen replica applies several
# more chunks of r0's stream in it).
CUT_FROM_WATCHERS = Fault(
    10.0, "partition", 12.0, target="r0>w1,w1>r0,r0>w2,w2>r0,r0>w3,w3>r0", shape="pairs"
)


def cut_from_watchers(seed: int, *, ignore_freeze: bool = False, extra: tuple[Fault, ...] = ()) -> object:
    return scenario(
        seed=seed,
        repl_periods=(0.005, 0.005),
        write_rate=20000,
        redis_delay=0.005,
        faults=(CUT_FROM_WATCHERS, *extra),
        chaos_end=30.0,
        ignore_freeze=ignore_freeze,
    )


@pytest.mark.parametrize("seed", [60, 61, 62])
def test_frozen_replicas_keep_every_wait_confirmed_write(seed: int) -> None:
    world = run(cut_from_watchers(seed))
    assert not violations(world)
    assert len(world.promotions) == 1
    assert world.checker.coverage.get("wait-acked-promotions-checked") == 1  # the check ran
    assert world.checker.coverage.get("freezes", 0) >= 2  # both replicas were detached
    old = world.lineage.canonical(world.node_by_name["r0"].replid, 0)[0]
    assert world.checker.wait_acks.confirmed[old]  # r0's writes were being confirmed
    promoted = world.node_by_name[world.promotions[0][3]]
    other = next(n for n in world.nodes if n.name not in ("r0", promoted.name))
    # Repointed from its frozen offset by a partial resync: it still names r0's history as
    # the one it continued from (a full resync would have cleared replid2).
    assert other.replid == promoted.replid and other.replid2 == old


@pytest.mark.parametrize("seed", [60, 61, 62])
def test_without_the_freeze_wait_confirmed_writes_are_lost_control(seed: int) -> None:
    """The control: the executor ignores QueryInfo.freeze, so the other replica goes on
    applying (and acknowledging) r0's writes after the leader chose, gets ahead of the
    promoted one and loses them in its full resync."""
    world = run(cut_from_watchers(seed, ignore_freeze=True))
    assert "14-wait-acked-kept" in invariants_hit(world), violations(world)


def test_a_promotion_that_could_not_see_every_replica_is_exempt() -> None:
    """r2 is cut off from the watchers too: the leader cannot freeze it, it keeps
    confirming r0's writes until the heal, and loses them; the rule exempts that promotion."""
    cut_r2 = Fault(5.0, "partition", 20.0, target="r2>w1,w1>r2,r2>w2,w2>r2,r2>w3,w3>r2", shape="pairs")
    world = run(cut_from_watchers(60, extra=(cut_r2,)))
    assert "14-wait-acked-kept" not in invariants_hit(world), violations(world)
    assert world.checker.coverage.get("wait-acked-promotions-exempt") == 1
    assert world.checker.coverage.get("wait-acked-lost-exempt-unreachable") == 1


def test_controls_change_nothing_else_the_seed_draws() -> None:
    """--ignore-freeze adjusts the generated world after the seed's generator ran, so the
    run draws what it would have: an adjustment that changes nothing replays the seed."""
    plain = run_one(0)  # seed 0: two promotions, their selections froze replicas
    assert not plain.violations and dict(plain.coverage).get("freezes", 0) > 0
    assert World(0, adjust=lambda cfg: cfg).run().trace_hash == plain.trace_hash
    unfrozen = run_one(0, ignore_freeze=True)
    assert "freezes" not in dict(unfrozen.coverage)
    assert unfrozen.config == plain.config and unfrozen.faults == plain.faults  # the same world


def test_selection_ranks_on_the_frozen_offsets_not_on_an_earlier_info_in_flight() -> None:
    """Found here (fixed in d7be88e): a plain INFO requested just before the freeze, in flight
    on a 20 ms link, was taken as the selection's answer, with its stale (unfrozen) offset."""
    cfg = scenario(
        seed=63,
        repl_periods=(0.02, 0.02),
        write_rate=20000,
        redis_delay=0.02,
        faults=(CUT_FROM_WATCHERS,),
        chaos_end=30.0,
    )
    world = run(cfg)
    assert "14-wait-acked-kept" not in invariants_hit(world), violations(world)


def test_selection_waits_for_every_frozen_replica_on_a_slow_link() -> None:
    """Found here (fixed in d7be88e): the selection waited one ping period (0.1 s here) for
    the frozen replicas' answers; on a 50 ms link it chose from the first one (seen=1/2)."""
    cfg = scenario(
        seed=60,
        repl_periods=(0.02, 0.02),
        write_rate=20000,
        redis_delay=0.05,
        faults=(CUT_FROM_WATCHERS,),
        chaos_end=30.0,
    )
    world = run(cfg)
    assert "14-wait-acked-kept" not in invariants_hit(world), violations(world)


def _repointed_after(freeze: str) -> tuple[World, int]:
    """r1 is frozen at 5.0 (by CLIENT PAUSE WRITE, or detached as the selection does), r2 is
    promoted at 6.0 and r1 repointed to it (without an unpause); returns the world at 7.0
    and r1's offset when it was frozen."""
    world = World(70, scenario(seed=70, chaos_end=10.0, end=20.0))
    r0, r1, r2 = (world.node_by_name[n] for n in ("r0", "r1", "r2"))
    world.sched.run_until(5.0)
    if freeze == "pause":
        r1.pause_writes(10.0)
    else:
        r1.replicaof(FREEZE_TARGET)
    frozen_at = r1.offset()
    world.sched.run_until(6.0)
    assert r1.offset() == frozen_at  # neither applies r0's stream any more
    confirmed = world.checker.wait_acks.confirmed[r0.replid]
    assert all(c.offset <= frozen_at for c in confirmed if c.replica == "r1" and c.t > 5.0)  # nor acks it
    r2.replicaof_no_one()  # a new history r1's data is a prefix of: a partial resync is possible
    r1.replicaof(r2.address)
    if freeze == "pause":
        r1.unpause_writes()
    world.sched.run_until(7.0)
    assert r1.master == r2.address and r1.link_up and r1.replid == r2.replid
    return world, frozen_at


def test_a_client_paused_replica_loses_its_cached_master_a_detached_one_keeps_it() -> None:
    """Redis 7.0: a replica under CLIENT PAUSE WRITE reads its primary's stream without
    applying it, and a REPLICAOF while unapplied data waits drops the blocked master link
    uncached: a full resync (replid2 cleared). The selection's freeze (REPLICAOF
    127.0.0.1:0) keeps it cached: a partial resync (r1 names r0's history as its replid2).
    (The fence pauses, then demotes, an old primary: the paused state is that node's.)"""
    paused, _ = _repointed_after("pause")
    r0_history = paused.lineage.canonical(paused.node_by_name["r0"].replid, 0)[0]
    assert paused.checker.coverage.get("paused-link-dropped-uncached") == 1
    assert paused.node_by_name["r1"].replid2 == ""
    detached, _ = _repointed_after("detach")
    assert "paused-link-dropped-uncached" not in detached.checker.coverage
    assert detached.node_by_name["r1"].replid2 == r0_history


def test_a_primary_answering_again_during_selection_is_read_before_it_is_replaced() -> None:
    """Seed 1155: the primary came back from a long partition just as an election started;
    the leader's last INFO of it was from before it was promoted (role replica), so the
    recovered-primary abort did not fire and a live, reachable primary was replaced. The
    selection now reads its INFO first."""
    result = World(1155).run()
    assert not [v for v in result.violations if "no-false-failover" in v], result.violations


def test_a_late_unfreeze_does_not_undo_a_newer_leaders_work() -> None:
    """Seed 380: a leader stopped mid-selection resumed after another leader had promoted a
    replica; its abort reattached every replica it had frozen to the OLD primary, the new
    primary included. Unfreeze now reattaches only a replica that is still detached."""
    result = World(380).run()
    assert result.violations == (), result.violations


def test_a_superseded_leader_thaws_its_replicas_to_the_new_primary_not_the_old() -> None:
    """Seed 1000105 (a 20,000-seed soak): the leader of epoch 2 froze r1 just after epoch 1's
    leader had repointed it to the new primary, then learned that promotion and aborted; its
    thaw pointed r1 back at the old primary, which r1 then acknowledged again (WAIT-confirmed
    writes lost, invariant 14). A thaw now follows the current topology."""
    result = World(1000105).run()
    assert result.violations == (), result.violations


def test_a_new_primary_demoted_by_a_watcher_that_had_not_heard_of_it_is_recovered() -> None:
    """Seed 1405: a watcher that had not learned epoch 4's promotion (its leader crashed
    before telling anyone) demoted the new primary under the old one; then epoch 4 was
    agreed, with its primary a replica and nothing eligible on its history: no failover
    for good. The old primary, which the configured one resynced from, is adopted now."""
    result = World(1405).run()
    assert result.violations == (), result.violations


def test_a_stray_primary_is_not_demoted_on_an_info_of_ours_older_than_it() -> None:
    """Seed 1000423: an operator's switchover gave up, then the paused primary ran its late
    FAILOVER TO and followed the new one; a watcher demoted the new one on an INFO of the
    old primary read before that, and each followed the other for good."""
    result = World(1000423).run()
    assert result.violations == (), result.violations


def test_a_paused_and_cut_off_primary_reading_buffered_acks_is_excused_not_hidden() -> None:
    """Seed 1000656: the old primary was stopped and isolated, resumed just before the
    promotion and counted the acks buffered while it was stopped as fresh (Redis does): 1.9 s
    of overlap that no lease wait can prevent, excused and counted."""
    world = World(1000656)
    result = world.run()
    assert result.violations == (), result.violations
    assert dict(result.coverage).get("fence-excused-paused-buffered-acks") == 1
    assert world.checker.write_fence.longest > SLACK


def test_a_confirmed_write_held_only_by_a_diverged_ex_primary_is_not_charged_to_the_leader() -> None:
    """Seed 26: the only live node holding a confirmed write was an ex-primary that had
    taken writes past the fork, which invariant 5 forbids promoting; invariant 14 must not
    blame the leader for choosing a node on the old primary's history instead."""
    result = World(26).run()
    assert result.violations == (), result.violations
    assert dict(result.coverage).get("wait-acked-lost-exempt-unpromotable", 0) >= 1


@pytest.mark.parametrize("config_file", [False, True])
def test_an_old_primary_restarted_unfenced_after_the_promotion_is_excused_too(config_file: bool) -> None:
    """First found as seed 320: the isolated old primary restarts empty just after the
    promotion (15.13 s), before the new primary takes writes. Without a config file it comes
    back unfenced and takes writes until the heal: excused as restarted-unfenced, judged when
    the overlap ends (the restart came after the promotion). With a config file (the control)
    it keeps its fence and takes no writes beside the new primary."""
    from dataclasses import replace

    cfg = fenced(30, (*ISOLATE_PRIMARY, Fault(14.86, "kill", 0.3, "r0", empty=True)))
    cfg = replace(cfg, nodes=tuple(replace(n, config_file=config_file) for n in cfg.nodes))  # type: ignore[attr-defined]
    world = World(cfg.seed, cfg)  # type: ignore[attr-defined]
    result = world.run()
    assert result.violations == (), result.violations
    promoted_at = world.promotions[0][0]
    restarted = world.node_by_name["r0"]
    assert restarted.restarts == 1
    if config_file:
        assert world.checker.write_fence.longest <= SLACK
        assert not dict(result.coverage).get("fence-excused-restarted-unfenced")
    else:
        assert dict(result.coverage).get("fence-excused-restarted-unfenced") == 1
        assert world.checker.write_fence.longest > SLACK
        (p,) = [p for _, _, p in world.checker.write_fence.intervals if p is not None]
        assert abs(p.t - promoted_at) < 0.01 and p.old == "r0"
        assert p.exception.endswith("restarted without a config file")  # judged at the end


def test_a_replica_restarted_onto_the_old_primary_is_repointed_before_it_extends_its_fence() -> None:
    """Seed 1009680: a replica restarted after the promotion rejoined the unreachable old
    primary from its config; its acks kept the old primary's fence open for 1.9 s until the
    steady-state repoint after convert_after. With fencing it is repointed without settling."""
    world = World(1009680)
    result = world.run()
    assert result.violations == (), result.violations
    assert world.checker.write_fence.longest <= SLACK


def test_a_replica_joining_the_old_primary_out_of_the_leaders_reach_is_excused_not_hidden() -> None:
    """Seed 1010423: a replica restarted just after the promotion on the old primary's side of
    a watcher partition and acked it for 6.9 s; the leader could not read it until the heal
    (README, fencing limits). Excused as late-unread-replica, and the overlap stays measured."""
    world = World(1010423)
    result = world.run()
    assert result.violations == (), result.violations
    assert dict(result.coverage).get("fence-excused-late-unread-replica") == 1
    assert world.checker.write_fence.longest > SLACK


def test_a_primary_stranded_in_a_loop_of_replicas_is_promoted_again() -> None:
    """Seed 1014004 (a 20,000-seed soak): epoch 3's leader demoted epoch 4's fresh primary r2
    to follow its own pick r3, which epoch 4's leader then repointed to r2. The fake Redis let
    each sync from the other (Redis refuses: -NOMASTERLINK), which no watcher could repair
    (liveness). Modelled as Redis does, neither moves and r2 alone holds epoch 4's history:
    it is promoted again, and r3, promoted from the same parent later, is not (invariant 5)."""
    world = World(1014004)
    world.faults.schedule()
    world.sched.run_until(13.0)
    r2, r3 = world.node_by_name["r2"], world.node_by_name["r3"]
    assert (r2.master, r3.master) == (r3.address, r2.address)
    assert not r2.link_up and not r3.link_up and r2.replid != r3.replid
    world.sched.run_until(world.config.end)
    world.checker.final()
    assert world.checker.violations == [], world.checker.violations
    promoted = [(epoch, node) for _, _, epoch, node, _ in world.promotions]
    assert promoted[:4] == [(2, "r1"), (3, "r3"), (4, "r2"), (5, "r2")], promoted


def test_a_leader_cut_off_with_a_minority_during_its_fence_wait_does_not_promote() -> None:
    """Seed 1016693 (a 20,000-seed soak): w1 won epoch 3 with a majority, then waited out the
    old primary's lease for 3.8 s; a partition meanwhile left it hearing 2 of 5 watchers
    while the old primary woke up on the other side, and it promoted a replica of a primary
    three watchers reached (invariant 6). It now waits for a fresh majority, then gives up."""
    world = World(1016693)
    result = world.run()
    assert result.violations == (), result.violations
    coverage = dict(result.coverage)
    assert coverage.get("majority-waits") == 1 and coverage.get("majority-lost") == 1
