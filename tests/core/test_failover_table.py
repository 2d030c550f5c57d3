"""The failover state machine is data (haredis/core/failover.py): check the table as a table."""

from __future__ import annotations

from collections import Counter

import pytest

from haredis.core.failover import (
    TRANSITIONS,
    Failover,
    IllegalTransition,
    Phase,
    Transition,
    Trigger,
    accepts,
    transition,
)

# Triggers the watcher fires when a deadline passes or nothing good happens in time.
TIMEOUT_LIKE = {Trigger.LOST, Trigger.NO_CANDIDATE, Trigger.UNCERTAIN, Trigger.GAVE_UP}
BEFORE_COMMIT = {Phase.ELECTION, Phase.SELECT, Phase.PROMOTE, Phase.VERIFY}


def render(rows: tuple[Transition, ...]) -> str:
    header = ("phase", "trigger", "next", "event", "aborted")
    body = [
        (
            r.phase.name,
            r.trigger.name,
            r.next.name if r.next else "(end)",
            r.event or "-",
            "yes" if r.aborted else "",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    return "\n".join(lines)


def test_the_table_renders_as_text() -> None:
    text = render(TRANSITIONS)
    lines = text.splitlines()
    assert len(lines) == 1 + len(TRANSITIONS)
    assert lines[0].split() == ["phase", "trigger", "next", "event", "aborted"]
    # Read top to bottom: the happy path is there, row by row.
    happy = [
        "ELECTION WON SELECT +failover-state-select-slave",
        "SELECT SELECTED PROMOTE +failover-state-send-slaveof-noone",
        "PROMOTE PROMOTED RECONF +failover-state-reconf-slaves",
        "RECONF RECONFIGURED (end) +failover-end",
    ]
    squeezed = [" ".join(line.split()) for line in lines]
    for row in happy:
        assert row in squeezed, text
    assert "VERIFY GAVE_UP (end) -failover-abort-slave-timeout yes" in squeezed


def test_no_duplicate_phase_trigger_rows() -> None:
    counts = Counter((t.phase, t.trigger) for t in TRANSITIONS)
    assert [key for key, n in counts.items() if n > 1] == []


def test_phase_values_are_sentinels_state_names_and_distinct() -> None:
    values = [p.value for p in Phase]
    assert len(set(values)) == len(values)
    assert Phase.ELECTION.value == "wait_start" and Phase.RECONF.value == "reconf_slaves"


def test_every_phase_is_reachable_from_election() -> None:
    seen = {Phase.ELECTION}
    frontier = [Phase.ELECTION]
    while frontier:
        phase = frontier.pop()
        for row in TRANSITIONS:
            if row.phase is phase and row.next is not None and row.next not in seen:
                seen.add(row.next)
                frontier.append(row.next)
    assert seen == set(Phase)


def test_every_phase_has_an_exit_and_timeouts_always_end_the_attempt() -> None:
    for phase in Phase:
        rows = [t for t in TRANSITIONS if t.phase is phase]
        assert rows, f"{phase.name} has no way out"
        assert any(t.trigger in TIMEOUT_LIKE for t in rows), f"{phase.name} cannot time out"
    # Following only timeout-like triggers from any phase ends the attempt (no cycle).
    for start in Phase:
        current: Phase | None = start
        hops = 0
        while current is not None:
            row = next(t for t in TRANSITIONS if t.phase is current and t.trigger in TIMEOUT_LIKE)
            current = row.next
            hops += 1
            assert hops <= len(Phase), f"timeouts cycle from {start.name}"


def test_the_table_has_no_cycle() -> None:
    # Every path ends: an attempt is a finite sequence of phases.
    def longest(phase: Phase, stack: tuple[Phase, ...]) -> int:
        assert phase not in stack, f"cycle through {phase.name}"
        nexts = [t.next for t in TRANSITIONS if t.phase is phase and t.next is not None]
        return 1 + max((longest(n, (*stack, phase)) for n in nexts), default=0)

    assert longest(Phase.ELECTION, ()) == 5  # ELECTION, SELECT, PROMOTE, VERIFY, RECONF


def test_only_promoted_leads_into_reconf() -> None:
    into_reconf = [t for t in TRANSITIONS if t.next is Phase.RECONF]
    assert into_reconf and all(t.trigger is Trigger.PROMOTED for t in into_reconf)
    assert {t.phase for t in into_reconf} == {Phase.PROMOTE, Phase.VERIFY}


def test_every_exit_before_the_commit_is_an_abort_and_reconf_never_aborts() -> None:
    for t in TRANSITIONS:
        if t.next is None and t.phase in BEFORE_COMMIT:
            assert t.aborted and t.event.startswith("-failover-abort-"), t
        if t.phase is Phase.RECONF:
            assert not t.aborted and t.event.startswith("+failover-end"), t
        if t.next is not None:
            assert not t.aborted, t


def test_superseded_is_no_exit_once_promote_was_sent() -> None:
    for phase in (Phase.PROMOTE, Phase.VERIFY, Phase.RECONF):
        assert not accepts(phase, Trigger.SUPERSEDED)
        with pytest.raises(IllegalTransition, match=f"{phase.name} on SUPERSEDED"):
            transition(phase, Trigger.SUPERSEDED)
    assert transition(Phase.SELECT, Trigger.SUPERSEDED).next is None


def test_transition_raises_for_every_missing_row() -> None:
    present = {(t.phase, t.trigger) for t in TRANSITIONS}
    missing = [(p, g) for p in Phase for g in Trigger if (p, g) not in present]
    assert missing  # the table is not a complete matrix
    for phase, trigger in missing:
        assert not accepts(phase, trigger)
        with pytest.raises(IllegalTransition):
            transition(phase, trigger)
    for row in TRANSITIONS:
        assert accepts(row.phase, row.trigger) and transition(row.phase, row.trigger) is row


def test_every_row_has_an_event() -> None:
    assert all(t.event for t in TRANSITIONS)
    assert all(t.event[0] in "+-" for t in TRANSITIONS)


def test_failover_records_time_spent_in_each_phase() -> None:
    fo = Failover(epoch=3, forced=False, started_at=10.0, phase_since=10.0)
    fo.enter(Phase.SELECT, 10.4)
    fo.enter(Phase.PROMOTE, 10.5)
    assert fo.phase is Phase.PROMOTE and fo.phase_since == 10.5
    assert fo.phase_durations == pytest.approx({"wait_start": 0.4, "select_slave": 0.1})
