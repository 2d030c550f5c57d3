"""Smoke test of the scale benchmark: ``python -m bench.scale --n 3 --window 3 --warmup 1`` starts
3 primaries with a replica each, one haredis watcher and one redis-sentinel on them, waits until
both see every name healthy, samples both processes, writes its results files and ends with the
line that scripts parse. CPU figures and ratios are never asserted: speed is the benchmark's
business, not a test's."""

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
TIMEOUT = 180.0

LAST_LINE = re.compile(r"scale n=(?P<n>\d+) cpu_ratio=(?P<ratio>nan|\d+\.\d{2}) rss_mb=(?P<rss>\d+\.\d)")


def run_scale(results_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the benchmark; on timeout, SIGTERM it first so it stops every process it started."""
    argv = [sys.executable, "-m", "bench.scale", "--n", "3", "--window", "3", "--warmup", "1"]
    argv += ["--slices", "3", "--results-dir", str(results_dir)]
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
            pytest.fail(f"bench.scale did not finish within {TIMEOUT:.0f}s:\n{out}\n{err}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-sentinel") is None,
    reason="needs Debian's redis-server and redis-sentinel on PATH",
)
def test_scale_smoke(tmp_path: Path) -> None:
    done = run_scale(tmp_path)
    assert done.returncode == 0, (
        f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )

    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    match = LAST_LINE.fullmatch(lines[-1])
    assert match is not None, f"unexpected last line {lines[-1]!r}"
    assert int(match["n"]) == 3
    # A Python process that imported redis-py and asyncio holds more than 5 MB resident.
    assert float(match["rss"]) > 5.0

    runs = json.loads((tmp_path / "scale.json").read_text())
    assert len(runs) == 1
    assert runs[0]["last_line"] == lines[-1]
    measured = {(r["system"], r["n"]) for r in runs[0]["results"]}
    assert measured == {("haredis", 3), ("sentinel", 3)}
    for result in runs[0]["results"]:
        assert result["rss_mb"] > 0, result
        assert result["cpu_s_per_min"]["count"] == 3, result
    assert lines[-1] in (tmp_path / "scale.md").read_text()
