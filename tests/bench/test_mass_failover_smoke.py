"""Smoke test of the mass failover benchmark: ``python -m bench.mass_failover --smoke`` (haredis
only, 3 groups of 1 primary + 1 replica, all 3 primaries killed at once, at most 15 s of
waiting) runs end to end, cleans up, writes its results files and ends with the line that
scripts parse. Speed is never asserted: timings are the benchmark's business, not a test's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import run_smoke

SECONDS = r"nan|inf|\d+\.\d{2}"
LAST_LINE = re.compile(
    rf"mass k=(?P<k>\d+) all_switched_s=(?P<haredis>{SECONDS}) down_after_s=(?P<down_after>\d+\.\d{{2}}) "
    rf"sentinel_all_switched_s=(?P<sentinel>{SECONDS})"
)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server on PATH")
def test_mass_failover_smoke(tmp_path: Path) -> None:
    done = run_smoke(tmp_path, "bench.mass_failover")
    assert done.returncode == 0, (
        f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )

    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    match = LAST_LINE.fullmatch(lines[-1])
    assert match is not None, f"unexpected last line {lines[-1]!r}"
    assert match["k"] == "3"
    assert match["down_after"] == "1.00"
    assert match["sentinel"] == "nan"  # --smoke runs no Sentinel round

    runs = json.loads((tmp_path / "mass_failover.json").read_text())
    assert len(runs) == 1
    run = runs[0]
    assert run["last_line"] == lines[-1]
    assert lines[-1] in (tmp_path / "mass_failover.md").read_text()
    [round_] = run["rounds"]
    assert (round_["system"], round_["k"], len(round_["groups"])) == ("haredis", 3, 3)
    # The headline figure is the one the JSON holds: the last group's switch, all groups done.
    # A round with a group that never switched is the slowest possible: inf, never a figure.
    assert match["haredis"] != "nan"
    if match["haredis"] == "inf":
        assert round_["switched"] < 3, done.stderr
        assert run["summary"][0]["all_switched_s"]["failed"] == 1
    else:
        assert round_["switched"] == 3
        assert f"{round_['all_switched_s']:.2f}" == match["haredis"]
        for group in round_["groups"]:
            # A group is switched when its replica is master and a watcher names it; all three
            # watchers naming it cannot come before the first one does.
            assert group["first_named_s"] <= group["all_named_s"]
            assert max(group["promoted_s"], group["first_named_s"]) <= round_["all_switched_s"]
