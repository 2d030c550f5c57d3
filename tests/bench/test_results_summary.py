"""How the benchmarks summarise rounds and runs, without running any: a failed round must push a
median up rather than vanish from it, and a quick run's figures must never replace the
full-size ones that ``bench/results/summary.md`` reports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench import all as bench_all
from bench import mass_failover, switchover
from bench.common import Spread, machine_info


def test_a_failed_round_counts_as_the_slowest_not_as_a_missing_one() -> None:
    spread = Spread.over_rounds([2.0, math.nan, 3.0])
    # Dropping the failed round would give 2.50 over 2 rounds; it is the slowest of 3 instead.
    assert spread.median == 3.0
    assert (spread.low, spread.high, spread.count, spread.failed) == (2.0, math.inf, 2, 1)
    assert spread.render() == "3.00 [2.00-inf] (1 failed)"
    assert spread.as_json() == {"median": 3.0, "min": 2.0, "max": None, "count": 2, "failed": 1}
    assert Spread.over_rounds([1.0, 2.0]).render() == "1.50 [1.00-2.00]"


def test_mass_failover_median_is_over_every_round_asked_for() -> None:
    def round_of(switched: list[float]) -> mass_failover.RoundResult:
        result = mass_failover.RoundResult("haredis", 1, len(switched), 0.0)
        result.groups = [mass_failover.GroupTimes(t, t, t) for t in switched]
        return result

    # Round 2 left one group unswitched: its all_switched is unknown, i.e. later than any other.
    results = [round_of([1.0, 2.0]), round_of([1.5, math.nan]), round_of([1.0, 2.2])]
    summary = mass_failover.Summary.of("haredis", results)
    assert summary.all_switched.median == 2.2
    assert summary.all_switched.failed == 1
    assert mass_failover.last_line(2, [summary]).startswith("mass k=2 all_switched_s=2.20 ")
    assert mass_failover.last_line(2, [mass_failover.Summary.of("haredis", results[1:2])]).startswith(
        "mass k=2 all_switched_s=inf "
    )


def test_switchover_median_counts_a_round_that_never_switched() -> None:
    done = [
        switchover.RoundResult("haredis", i, "a", switch_s=1.0, unavailable_s=u)
        for i, u in ((1, 1.0), (2, 1.2))
    ]
    failed = switchover.RoundResult("haredis", 3, "a", error="no watcher named a primary other than a")
    summary = switchover.Summary.of("haredis", [*done, failed])
    assert (summary.rounds, summary.completed) == (3, 2)
    assert summary.unavailable.median == 1.2  # not 1.1, the median of the 2 rounds that worked
    assert summary.unavailable.failed == 1


def record(benchmark: str, command: str, last_line: str, size: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "benchmark": benchmark,
        "command": f"/venv/bin/python -m bench.{benchmark} {command}".strip(),
        "machine": {
            "date": "2026-11-26T15:00:00+00:00",
            "haredis_commit": "abc1234",
            "load_average_at_start": [1],
        },
        "last_line": last_line,
    }
    if size is not None:
        entry["size"] = size
    return entry


def test_summary_reports_the_latest_full_size_figures_whatever_ran_since(tmp_path: Path) -> None:
    full = "failover crash_ratio=0.20 hang_ratio=0.40 lost=0"
    quick = "failover crash_ratio=0.90 hang_ratio=0.90 lost=0"
    diagnosis = "mass k=50 all_switched_s=1.00 down_after_s=1.00 sentinel_all_switched_s=nan"
    mass_full = "mass k=50 all_switched_s=2.47 down_after_s=1.00 sentinel_all_switched_s=4.32"
    (tmp_path / "failover.json").write_text(
        json.dumps(
            [
                record("failover", "--rounds 5", full, "full"),
                record("failover", "--quick", quick, "quick"),
                record("failover", "--quick", quick),  # an older record, without "size"
            ]
        )
    )
    (tmp_path / "mass_failover.json").write_text(
        json.dumps(
            [
                record("mass_failover", "--rounds 3", mass_full),
                record("mass_failover", "--system haredis --haredis-setting x=1", diagnosis),
            ]
        )
    )
    # The timeline's --quick is its full run (one failover each), and it says so.
    timeline = "timeline haredis_switch_s=0.47 haredis_resumed_s=0.48 sentinel_switch_s=2.18"
    (tmp_path / "failover-timeline.json").write_text(
        json.dumps(record("timeline", "--quick", timeline, "full"))
    )
    run = {
        "benchmark": "all",
        "arguments": ["--quick"],
        "size": "quick",
        "machine": machine_info(),
        "outcomes": [{"name": "failover", "exit_code": 0, "seconds": 60.0, "last_line": quick}],
    }
    bench_all.write_summary(tmp_path, run)
    bench_all.write_summary(tmp_path, run)  # rewritten, not appended: one figures table

    text = (tmp_path / "summary.md").read_text()
    figures, runs = text.split("## `make bench` runs")
    assert text.count("## Latest full-size figures") == 1
    assert f"`{full}`" in figures and quick not in figures
    assert f"`{mass_full}`" in figures and diagnosis not in figures
    assert "| switchover | - |" in figures  # nothing recorded is said, not made up
    assert f"`{timeline}`" in figures
    assert runs.count("(QUICK run: a short check, not a full-size figure)") == 2
    assert runs.count(f"`{quick}`") == 2
    assert [r["size"] for r in json.loads((tmp_path / "summary.json").read_text())] == ["quick", "quick"]


def test_summary_only_rewrites_the_summary_and_runs_nothing(tmp_path: Path) -> None:
    full = "failover crash_ratio=0.20 hang_ratio=0.40 lost=0"
    (tmp_path / "failover.json").write_text(json.dumps([record("failover", "--rounds 5", full, "full")]))
    assert bench_all.main(["--summary-only", "--results-dir", str(tmp_path)]) == 0
    assert f"`{full}`" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "summary.json").exists()  # no run was recorded
