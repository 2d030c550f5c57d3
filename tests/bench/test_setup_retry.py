"""A round whose fresh cluster never became ready is run once more, in a fresh directory; a
round that failed after its fault is never run again (that failure is a result)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import BenchError, SetupError, retry_setup_once, setting_up, setup_retry_notes


def test_a_failed_setup_is_run_once_more_in_a_fresh_directory(tmp_path: Path) -> None:
    tried: list[Path] = []
    said: list[str] = []

    def round_(workdir: Path) -> str:
        tried.append(workdir)
        if len(tried) == 1:
            with setting_up():
                raise BenchError("timed out waiting for every watcher to know the primary")
        return f"measured in {workdir.name}"

    result, discarded = retry_setup_once(round_, tmp_path / "02-hang-haredis", said.append)
    assert result == "measured in 02-hang-haredis-retry"
    assert tried == [tmp_path / "02-hang-haredis", tmp_path / "02-hang-haredis-retry"]
    assert discarded == "timed out waiting for every watcher to know the primary"
    assert len(said) == 1 and "nothing measured" in said[0]


def test_a_failure_after_the_fault_is_not_retried(tmp_path: Path) -> None:
    tried: list[Path] = []

    def round_(workdir: Path) -> str:
        tried.append(workdir)
        raise BenchError("no watcher named a primary other than the old one within 150s")

    with pytest.raises(BenchError, match="no watcher named") as raised:
        retry_setup_once(round_, tmp_path / "r", lambda _: None)
    assert not isinstance(raised.value, SetupError)
    assert tried == [tmp_path / "r"]


def test_a_second_setup_failure_ends_the_benchmark(tmp_path: Path) -> None:
    def round_(workdir: Path) -> str:
        with setting_up():
            raise BenchError(f"not ready in {workdir.name}")

    with pytest.raises(SetupError, match="not ready in r-retry"):
        retry_setup_once(round_, tmp_path / "r", lambda _: None)


def test_a_discarded_first_try_is_named_in_the_results() -> None:
    rounds = [
        {"round": 1, "system": "haredis", "fault": "crash", "setup_retried": ""},
        {"round": 2, "system": "haredis", "fault": "hang", "setup_retried": "timed out"},
        {"round": 2, "system": "sentinel", "setup_retried": "port taken"},
    ]
    assert setup_retry_notes(rounds) == (
        "- round 2 haredis hang: a first try failed before any fault and was discarded (timed out)\n"
        "- round 2 sentinel: a first try failed before any fault and was discarded (port taken)\n"
    )
    assert setup_retry_notes(rounds[:1]) == ""
