"""Smoke test of the simulator benchmark: ``python -m bench.sim --smoke`` (4 seeds in 2 chunks, 1 worker)
runs the simulator, parses its summary, writes its results files and ends with the line that
scripts parse; the same seeds give the same trace hash twice (the throughput figures are only
meaningful if the work measured is the same). Speed is never asserted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import run_smoke

LAST_LINE = re.compile(
    r"sim seeds=(?P<seeds>\d+) violations=(?P<violations>\d+) seeds_per_min=(?P<seeds_per_min>\d+) "
    r"sim_hours_per_min=(?P<hours_per_min>\d+\.\d{2})"
)


@pytest.mark.slow
def test_sim_smoke(tmp_path: Path) -> None:
    for _ in range(2):
        done = run_smoke(tmp_path, "bench.sim")
        assert done.returncode == 0, (
            f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        lines = done.stdout.strip().splitlines()
        assert lines, f"no output; stderr:\n{done.stderr}"
        match = LAST_LINE.fullmatch(lines[-1])
        assert match is not None, f"unexpected last line {lines[-1]!r}"
        assert match["seeds"] == "4"
        assert match["violations"] == "0"
        assert int(match["seeds_per_min"]) > 0
        assert float(match["hours_per_min"]) > 0

    runs = json.loads((tmp_path / "sim.json").read_text())
    assert len(runs) == 2
    assert runs[-1]["last_line"] == lines[-1]
    first, second = (r["run"] for r in runs)
    assert (first["seeds"], first["jobs"], first["violations"], first["complete"]) == (4, 1, 0, True)
    # --smoke runs its 4 seeds as 2 chunks of 2: the totals are the chunks' sums.
    assert [(c["start"], c["seeds"]) for c in first["chunks"]] == [(1_000_000, 2), (1_000_002, 2)]
    assert first["sim_hours"] == round(sum(c["sim_hours"] for c in first["chunks"]), 2)
    assert re.fullmatch(r"[0-9a-f]{64}", first["trace_hash"])
    assert first["trace_hash"] == second["trace_hash"]
    assert first["sim_hours"] == second["sim_hours"] > 0
    assert lines[-1] in (tmp_path / "sim.md").read_text()
