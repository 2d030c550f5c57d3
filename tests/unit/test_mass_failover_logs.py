"""bench.mass_failover's reading of the watchers' logs: which lines count for which group and
phase, in both systems' formats, and the per-group summary of one round."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from bench.mass_failover import PHASES, PhaseTimes, log_events

KILL = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC).timestamp()

# (seconds from the kill, level, message) as a haredis watcher logs them.
HAREDIS_LINES = [
    (-2.0, "info", "+sdown slave 127.0.0.1:7002 127.0.0.1 7002 @ g001 127.0.0.1 7001"),
    (-1.0, "info", "+sdown master g002 127.0.0.1 7003"),  # a flap before the kill
    (0.10, "info", "+sdown master g001 127.0.0.1 7001"),
    (0.15, "info", "+sdown master g002 127.0.0.1 7003"),
    (0.20, "warning", "+odown master g001 127.0.0.1 7001 #quorum 2/2"),
    (0.25, "warning", "+odown master g002 127.0.0.1 7003 #quorum 2/2"),
    (0.30, "info", "+try-failover master g001 127.0.0.1 7001"),
    (0.31, "info", "+try-failover master g002 127.0.0.1 7003"),
    (0.90, "warning", "-failover-abort-not-elected master g002 127.0.0.1 7003"),
    (1.00, "info", "+try-failover master g002 127.0.0.1 7003"),
    (0.50, "info", "+elected-leader master g001 127.0.0.1 7001"),
    (0.70, "info", "+promoted-slave slave 127.0.0.1:7002 127.0.0.1 7002 @ g001 127.0.0.1 7001"),
    (0.70, "info", "+switch-master g001 127.0.0.1 7001 127.0.0.1 7002"),
    (1.00, "info", "g001 ok primary=127.0.0.1:7002 epoch=1 replicas=0/1"),
]
HAREDIS_LOG = "".join(
    f"ts={datetime.fromtimestamp(KILL + dt, UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z level={level} "
    f'logger=haredis.daemon msg="{text}" event={text.split()[0]}\n'
    for dt, level, text in HAREDIS_LINES
)

# Sentinel logs its local time; written here from the same instants in this process's zone.
SENTINEL_LOG = "".join(
    f"16064:X {datetime.fromtimestamp(KILL + dt).strftime('%d %b %Y %H:%M:%S.%f')[:-3]} {mark} {text}\n"
    for dt, mark, text in [
        (1.05, "#", "+sdown master g001 127.0.0.1 7001"),
        (1.05, "#", "+sdown sentinel 536e65 127.0.0.1 51091 @ g001 127.0.0.1 7001"),
        (1.20, "#", "+odown master g001 127.0.0.1 7001 #quorum 2/2"),
        (1.20, "#", "+new-epoch 1"),
        (1.21, "#", "+try-failover master g001 127.0.0.1 7001"),
        (1.30, "#", "+elected-leader master g001 127.0.0.1 7001"),
        (2.40, "#", "+promoted-slave slave 127.0.0.1:7002 127.0.0.1 7002 @ g001 127.0.0.1 7001"),
        (2.50, "#", "+switch-master g001 127.0.0.1 7001 127.0.0.1 7002"),
    ]
)


def test_haredis_lines_are_read_by_group_and_phase(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_text(HAREDIS_LOG)
    events = log_events("haredis", log)
    assert {event for _, event, _ in events} == set(PHASES)  # aborts and status lines are not phases
    assert ("+promoted-slave", "g001") in {(e, g) for _, e, g in events}
    assert ("+sdown", "g001") in {(e, g) for _, e, g in events}
    assert all(
        not (e == "+sdown" and at < KILL - 1.5) for at, e, _ in events
    )  # the slave's +sdown is not the primary's


def test_a_round_summary_counts_from_the_kill_and_flags_groups_that_never_got_there(tmp_path: Path) -> None:
    log = tmp_path / "w1.log"
    log.write_text(HAREDIS_LOG)
    phases = PhaseTimes.of(log_events("haredis", log), ["g001", "g002"], KILL)
    assert math.isclose(
        phases.median["+sdown"], 0.125, abs_tol=1e-6
    )  # the +sdown before the kill does not count
    assert math.isclose(phases.last["+odown"], 0.25, abs_tol=1e-6)
    assert math.isclose(phases.last["+try-failover"], 0.31, abs_tol=1e-6)  # the first try of each group
    assert (phases.tries_median, phases.tries_max) == (1.5, 2)
    # g002 was never elected: no median and no last group for the phases it never reached.
    assert math.isnan(phases.median["+elected-leader"]) and math.isnan(phases.last["+switch-master"])
    one = PhaseTimes.of(log_events("haredis", log), ["g001"], KILL)
    assert math.isclose(one.last["+switch-master"], 0.7, abs_tol=1e-6)


def test_sentinel_lines_in_local_time_give_the_same_instants(tmp_path: Path) -> None:
    log = tmp_path / "s1-sentinel.log"
    log.write_text(SENTINEL_LOG)
    phases = PhaseTimes.of(log_events("sentinel", log), ["g001"], KILL)
    expected = {
        "+sdown": 1.05,
        "+odown": 1.2,
        "+try-failover": 1.21,
        "+elected-leader": 1.3,
        "+promoted-slave": 2.4,
        "+switch-master": 2.5,
    }
    for phase, seconds in expected.items():
        assert math.isclose(phases.last[phase], seconds, abs_tol=0.002), phase
    assert phases.tries_max == 1
