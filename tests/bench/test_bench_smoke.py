"""Smoke test of the failover benchmark: ``python -m bench.failover --smoke`` (haredis only, one
kill -9 round) runs end to end, cleans up, writes its results files and ends with the line that
scripts parse. Speed is never asserted: timings are the benchmark's business, not a test's."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0
RATIO = r"nan|\d+\.\d{2}"
LAST_LINE = re.compile(
    rf"failover crash_ratio=(?P<crash>{RATIO}) hang_ratio=(?P<hang>{RATIO}) lost=(?P<lost>\d+)"
)


def run_smoke(results_dir: Path, module: str = "bench.failover") -> subprocess.CompletedProcess[str]:
    """Run the benchmark; on timeout, SIGTERM it first so it stops every process it started."""
    argv = [sys.executable, "-m", module, "--smoke", "--results-dir", str(results_dir)]
    with subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            pytest.fail(f"{module} --smoke did not finish within {TIMEOUT:.0f}s:\n{out}\n{err}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server on PATH")
def test_failover_smoke(tmp_path: Path) -> None:
    done = run_smoke(tmp_path)
    assert done.returncode == 0, (
        f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )

    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    match = LAST_LINE.fullmatch(lines[-1])
    assert match is not None, f"unexpected last line {lines[-1]!r}"
    # --smoke runs no Sentinel round, so there is nothing to divide by.
    assert match["crash"] == "nan"
    assert match["hang"] == "nan"
    # Only lost >= 0, not lost == 0. With asynchronous replication Redis acks a write to the
    # client and streams it to the replicas in two separate writes; a kill -9 landing between
    # them loses an acked write that no failover system (haredis or Sentinel) can bring back.
    # On loopback that window is microseconds, so the benchmark reports 0 in practice, but this
    # test would then assert a guarantee nobody makes and flake on the day the kill lands
    # there. Choosing the freshest replica is asserted in tests/core, tests/sim and
    # tests/integration; lost writes are measured and reported by the benchmark itself.
    assert int(match["lost"]) >= 0

    runs = json.loads((tmp_path / "failover.json").read_text())
    assert len(runs) == 1
    assert runs[0]["last_line"] == lines[-1]
    assert [(r["system"], r["fault"]) for r in runs[0]["rounds"]] == [("haredis", "crash")]
    assert lines[-1] in (tmp_path / "failover.md").read_text()


SWITCHOVER_LINE = re.compile(
    r"switchover haredis_lost=(?P<haredis_lost>\d+) haredis_unavailable_s=(?P<haredis_unavailable>\d+\.\d{3})"
    r" sentinel_lost=(?P<sentinel_lost>nan) sentinel_unavailable_s=(?P<sentinel_unavailable>nan)"
)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server on PATH")
def test_switchover_smoke(tmp_path: Path) -> None:
    """``python -m bench.switchover --smoke``: one haredis switchover round under writes runs end
    to end, writes its results files and ends with the line that scripts parse."""
    done = run_smoke(tmp_path, "bench.switchover")
    assert done.returncode == 0, (
        f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )

    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    match = SWITCHOVER_LINE.fullmatch(lines[-1])
    assert match is not None, f"unexpected last line {lines[-1]!r}"
    # A switchover of a live primary goes through Redis's FAILOVER TO, which waits for the
    # target to hold every acknowledged write: unlike a kill -9, nothing excuses a loss here.
    assert int(match["haredis_lost"]) == 0, done.stderr

    runs = json.loads((tmp_path / "switchover.json").read_text())
    assert len(runs) == 1
    assert runs[0]["last_line"] == lines[-1]
    assert [(r["system"], r["error"]) for r in runs[0]["rounds"]] == [("haredis", "")]
    assert lines[-1] in (tmp_path / "switchover.md").read_text()
