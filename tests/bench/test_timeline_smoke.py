"""Smoke test of the failover timeline: ``python -m bench.timeline --smoke`` (haredis only, one
kill -9 failover under a writer) records the watchers' pub/sub events, draws the PNG, writes
the raw events as JSON and ends with the line that scripts parse. Speed is never asserted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import run_smoke

SECONDS = r"nan|\d+\.\d{2}"
LAST_LINE = re.compile(
    rf"timeline haredis_switch_s=(?P<switch>{SECONDS}) haredis_resumed_s=(?P<resumed>{SECONDS}) "
    rf"sentinel_switch_s=(?P<sentinel_switch>{SECONDS}) sentinel_resumed_s=(?P<sentinel_resumed>{SECONDS}) "
    r"events=(?P<events>\d+)"
)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server on PATH")
def test_timeline_smoke(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the bench extra (pip install -e '.[bench]') draws the PNG")
    done = run_smoke(tmp_path, "bench.timeline")
    assert done.returncode == 0, (
        f"exit code {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )

    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    match = LAST_LINE.fullmatch(lines[-1])
    assert match is not None, f"unexpected last line {lines[-1]!r}"
    assert match["switch"] != "nan" and match["resumed"] != "nan"
    assert match["sentinel_switch"] == match["sentinel_resumed"] == "nan"  # --smoke: haredis only

    png = tmp_path / "failover-timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "failover-timeline.json").read_text())
    assert record["last_line"] == lines[-1]
    [timeline] = record["timelines"]
    events = timeline["events"]
    assert len(events) == int(match["events"])
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    channels = {e["channel"] for e in events}
    # A kill -9 failover goes through these, and some watcher must have published each one.
    assert {"+sdown", "+odown", "+elected-leader", "+switch-master"} <= channels, channels
    assert timeline["new_primary"] not in ("", timeline["old_primary"])
    # The last write sent before the kill may be acked (or timestamped by the writer's thread)
    # a moment after it: only the order of the two acks and a resumption after the kill are facts.
    writer = timeline["writer"]
    assert writer["last_ack_before_kill_s"] < writer["resumed_s"]
    assert writer["resumed_s"] > 0
    assert lines[-1] in (tmp_path / "failover-timeline.md").read_text()
