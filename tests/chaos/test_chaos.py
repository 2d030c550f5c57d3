"""The chaos rig under pytest.

``test_jepsen_2013_partition`` and ``test_watcher_split_loses_no_confirmed_write`` run two
real schedules (about 30 s each) in network namespaces when this machine allows it (root,
``ip netns``, iptables inside a namespace); otherwise they skip and say why. They assert
invariants, never timings.

The other tests check the checker's arithmetic on hand-made timelines and run anywhere.
"""

from __future__ import annotations

import os

import pytest

from . import harness
from .checker import (
    Result,
    WriteLog,
    check_epochs,
    check_writes,
    empty_restarts,
    longest_split_brain,
    parse_logfmt,
)
from .rig import RigConfig, environment_problem, our_namespaces, teardown_on_signals
from .scenarios import jepsen_2013, watcher_split
from .schedule import make_schedule


def test_split_brain_is_the_longest_overlap_of_two_accepting_nodes() -> None:
    a = [(0.0, True), (0.05, True), (0.10, True), (0.15, False), (2.0, True), (2.05, True)]
    b = [(0.08, True), (0.13, True), (0.18, True), (2.02, True), (2.07, False)]
    # overlap 1: a accepts [0, 0.15), b accepts [0.08, 0.23): 0.07; overlap 2: [2.02, 2.07)
    # where a accepts [2.0, 2.10) and b [2.02, 2.07): 0.05.
    assert longest_split_brain({"a": a, "b": b}) == pytest.approx(0.07)
    assert longest_split_brain({"a": a}) == 0.0
    assert longest_split_brain({"a": a, "b": [(t, False) for t, _ in b]}) == 0.0


def test_a_confirmed_write_counts_as_destroyed_only_after_two_nodes_restarted_empty() -> None:
    """WAIT 1 keeps a write on two nodes; when the schedule then restarts two different
    nodes without their data, both copies may be gone: counted apart, still counted lost."""
    log = WriteLog(total=3, acked={1, 2, 3}, wait_acked={1, 2, 3}, wait_acked_at={1: 10.0, 2: 20.0, 3: 30.0})
    events = [
        (12.0, "start redis r2 empty as primary"),
        (15.0, "kill -9 r3"),
        (22.0, "start redis r3 empty replicaof r1"),
        (25.0, "start redis r2 empty as primary"),
    ]
    restarts = empty_restarts(events)
    assert restarts == [(12.0, "r2"), (22.0, "r3"), (25.0, "r2")]
    result = Result("t")
    check_writes(result, log, final_keys=set(), restarts=restarts)
    # Acked at 10: r2 (12) and r3 (22) restarted empty after it; at 20: r3 (22) and r2 (25);
    # at 30: no restart after it.
    assert result.lost_wait_acked == 3
    assert result.lost_wait_acked_destroyed == 2
    kept = Result("t")
    check_writes(kept, log, final_keys={1, 2, 3}, restarts=restarts)
    assert kept.lost_wait_acked == kept.lost_wait_acked_destroyed == 0


def test_epoch_going_back_is_a_violation_and_steady_epochs_are_not() -> None:
    assert check_epochs({"w1": [(0.0, 1, 1), (1.0, 2, 2), (2.0, 2, 2)]}) == []
    found = check_epochs({"w1": [(0.0, 3, 2), (1.0, 2, 2)]})
    assert len(found) == 1 and "w1" in found[0]


def test_logfmt_lines_of_the_daemon_parse() -> None:
    line = (
        'ts=2026-01-01T00:00:00.000Z level=info logger=haredis.runtime msg=promote epoch=4 ok=True detail=""'
    )
    fields = parse_logfmt(line)
    assert fields["msg"] == "promote" and fields["epoch"] == "4" and fields["detail"] == ""
    assert parse_logfmt('msg="+new-epoch 7" event=+new-epoch')["msg"] == "+new-epoch 7"


def test_a_seed_always_gives_the_same_schedule() -> None:
    assert make_schedule(1234) == make_schedule(1234)
    assert any(make_schedule(s) != make_schedule(1234) for s in range(1, 5))


def test_jepsen_2013_partition() -> None:
    problem = environment_problem()
    if problem is not None:
        pytest.skip(f"chaos rig unavailable: {problem}")
    with teardown_on_signals():  # SIGTERM/Ctrl-C still remove every namespace and process
        result = harness.run("jepsen_2013", jepsen_2013, RigConfig(), replay="(pytest)")
    details = "\n".join([*result.violations, *result.notes, *result.events])
    assert result.violations == [], details
    # After healing, every Redis node and every watcher name one and the same primary.
    assert result.final_primary is not None, details
    assert result.acked > 0, "the writer never got a write acknowledged: nothing was checked"
    # The teardown removed every namespace of this process.
    assert not [ns for ns in our_namespaces() if ns.startswith(f"hrc{os.getpid()}")]


def test_watcher_split_loses_no_confirmed_write() -> None:
    """Without fencing: the primary is cut off from the watchers only and keeps streaming to
    its replicas while the majority fails it over. The leader freezes the replicas before it
    chooses, so no write a client confirmed with WAIT 1 is lost (this lost some before)."""
    problem = environment_problem()
    if problem is not None:
        pytest.skip(f"chaos rig unavailable: {problem}")
    with teardown_on_signals():
        result = harness.run("watcher_split", watcher_split, RigConfig(), replay="(pytest)")
    details = "\n".join([*result.violations, *result.notes, *result.events])
    assert result.violations == [], details
    assert result.failovers >= 1, details
    assert result.wait_acked > 0, "no write was confirmed with WAIT: nothing was checked"
    assert result.blind_promotions == 0, details  # the leader saw every replica
    assert result.lost_wait_acked == 0, details
