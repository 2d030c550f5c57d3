"""Smoke test of the ``make bench`` driver: ``python -m bench.all --only sim --smoke`` runs the
chosen benchmark with the pass-through argument, keeps its last line and writes the summary
files. Speed is never asserted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_all_runs_the_chosen_benchmark_with_pass_through_arguments(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.all", "--only", "sim", "--smoke", "--results-dir", str(tmp_path)]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (
        f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "bench ran=1 failed=0"

    # --smoke reached bench.sim (4 seeds) and --results-dir too: its own files are in tmp_path.
    sim_runs = json.loads((tmp_path / "sim.json").read_text())
    assert [r["run"]["seeds"] for r in sim_runs] == [4]
    summary = json.loads((tmp_path / "summary.json").read_text())
    [outcome] = summary[0]["outcomes"]
    assert (outcome["name"], outcome["exit_code"]) == ("sim", 0)
    assert outcome["last_line"] == sim_runs[0]["last_line"]
    assert re.fullmatch(r"sim seeds=4 violations=0 .*", outcome["last_line"])
    markdown = (tmp_path / "summary.md").read_text()
    assert outcome["last_line"] in markdown
    # A smoke run is listed as one, and its figures are never quoted as the full-size ones.
    assert summary[0]["size"] == "smoke"
    assert "(SMOKE run: a short check, not a full-size figure)" in markdown
    assert "| sim | - |" in markdown.split("## `make bench` runs")[0]
