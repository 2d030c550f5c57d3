"""The shipped systemd units: valid, hardened at least as well as Debian's redis-sentinel."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def exposure(unit: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("name", ["haredis.service", "haredis@.service"])
def test_units_are_rated_at_most_1_2_by_systemd_analyze_security(name: str) -> None:
    assert exposure(UNITS / name) <= 1.2


@pytest.mark.parametrize("name", ["haredis.service", "haredis@.service"])
def test_units_use_sd_notify_a_watchdog_and_a_bounded_restart_policy(name: str) -> None:
    text = (UNITS / name).read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StartLimitBurst=",
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "NoNewPrivileges=yes",
    ):
        assert line in text, line
    assert "TimeoutStopSec=0" not in text  # a finite stop timeout, unlike Debian's Sentinel
