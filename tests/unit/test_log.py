"""haredis.log: one line per record, logfmt and JSON, journald priorities, a non-blocking queue."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from haredis.log import LogfmtFormatter, LogHandle, kv, setup_logging

LOGGER = "haredis.test"
_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict reader: the whole line must be key=value pairs, and quoted values unescape."""
    pairs = list(_PAIR.finditer(line))
    assert " ".join(m.group(0) for m in pairs) == line, f"not pure logfmt: {line!r}"
    out: dict[str, str] = {}
    for match in pairs:
        key, value = match.group(1), match.group(2)
        if value.startswith('"'):
            value = json.loads(value)  # our escapes are a subset of JSON's
        out[key] = value
    return out


@pytest.fixture(autouse=True)
def clean_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[LogHandle]]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    level = root.level
    handles: list[LogHandle] = []
    yield handles
    for handle in handles:
        handle.stop()
    root.setLevel(level)


def run(
    handles: list[LogHandle], level: str = "debug", fmt: str = "logfmt", journal: bool | None = None
) -> tuple[io.StringIO, LogHandle]:
    stream = io.StringIO()
    handle = setup_logging(level, fmt, stream, journal=journal)
    handles.append(handle)
    return stream, handle


def lines_of(stream: io.StringIO, handle: LogHandle) -> list[str]:
    handle.stop()
    return stream.getvalue().splitlines()


def test_logfmt_line(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root)
    logging.getLogger(LOGGER).info("failover started", extra=kv(master="mymaster", epoch=7, ok=True))
    (line,) = lines_of(stream, handle)
    assert re.fullmatch(
        r'ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info logger=haredis\.test msg="failover started"'
        r" master=mymaster epoch=7 ok=true",
        line,
    ), line


def test_values_are_quoted_and_escaped_so_one_record_is_one_line(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root)
    tricky = {
        "spaces": "two words",
        "quote": 'say "hi"',
        "equals": "a=b",
        "newline": "line1\nline2\r\n",
        "backslash": "C:\\x",
        "empty": "",
        "control": "bell\x07",
        "unicode_sep": "a\u2028b",
        "plain": "10.0.0.1:6379",
    }
    logging.getLogger(LOGGER).warning("multi\nline %s", "msg", extra=kv(**tricky))
    (line,) = lines_of(stream, handle)
    fields = parse_logfmt(line)
    assert fields["msg"] == "multi\nline msg"
    assert fields["level"] == "warning"
    for key, value in tricky.items():
        assert fields[key] == value, key
    assert " plain=10.0.0.1:6379" in line  # simple values stay unquoted
    assert ' empty=""' in line


def test_kv_allows_names_a_log_record_already_uses(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root)
    log = logging.getLogger(LOGGER)
    with pytest.raises(KeyError):  # what plain extra= does with such a name
        log.info("x", extra={"name": "mymaster"})
    log.info("primary added", extra=kv(name="mymaster", msg="shadow", level="shadow", module="m"))
    log.info("plain extra", extra={"epoch": 3, "peer": None, "lag": 0.5})
    first, second = (parse_logfmt(line) for line in lines_of(stream, handle))
    assert first["name"] == "mymaster"
    assert first["msg"] == "primary added"
    assert first["level"] == "info"
    assert first["msg_"] == "shadow" and first["level_"] == "shadow"
    assert first["module"] == "m"
    assert (second["epoch"], second["peer"], second["lag"]) == ("3", "null", "0.5")


def test_level_filtering_and_set_level(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root, level="info")
    log = logging.getLogger(LOGGER)
    log.debug("hidden")
    log.info("shown")
    handle.set_level("debug")
    log.debug("now shown")
    assert [parse_logfmt(line)["msg"] for line in lines_of(stream, handle)] == ["shown", "now shown"]


def test_journal_stream_drops_the_timestamp_and_prefixes_the_priority(
    clean_root: list[LogHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    stream, handle = run(clean_root)
    log = logging.getLogger(LOGGER)
    log.debug("d")
    log.info("i", extra=kv(epoch=1))
    log.warning("w")
    log.error("e")
    log.critical("c")
    lines = lines_of(stream, handle)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    assert lines[1] == "<6>level=info logger=haredis.test msg=i epoch=1"
    assert not any("ts=" in line for line in lines)


def test_without_journal_stream_lines_have_a_timestamp_and_no_prefix(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root)
    logging.getLogger(LOGGER).error("e")
    (line,) = lines_of(stream, handle)
    assert line.startswith("ts=")
    assert "<3>" not in line


def test_journal_stream_is_ignored_when_it_names_another_file(
    clean_root: list[LogHandle], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A child of a systemd service inherits JOURNAL_STREAM even when its stderr goes elsewhere.
    with open(tmp_path / "out.log", "w") as file:
        info = os.fstat(file.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
        handle = setup_logging("info", "logfmt", file)
        clean_root.append(handle)
        logging.getLogger(LOGGER).info("elsewhere")
        handle.stop()
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        handle = setup_logging("info", "logfmt", file)
        clean_root.append(handle)
        logging.getLogger(LOGGER).info("journal")
        handle.stop()
    first, second = (tmp_path / "out.log").read_text().splitlines()
    assert first.startswith("ts=")
    assert second.startswith("<6>level=info")


def test_json_format(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root, fmt="json")
    logging.getLogger(LOGGER).info("hello\nworld", extra=kv(epoch=7, master="m", ok=False, peer=None))
    (line,) = lines_of(stream, handle)
    record = json.loads(line)
    assert record["level"] == "info"
    assert record["logger"] == LOGGER
    assert record["msg"] == "hello\nworld"
    assert (record["epoch"], record["master"], record["ok"], record["peer"]) == (7, "m", False, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])


def test_json_under_journal(clean_root: list[LogHandle], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")
    stream, handle = run(clean_root, fmt="json")
    logging.getLogger(LOGGER).warning("w")
    (line,) = lines_of(stream, handle)
    assert line.startswith("<4>{")
    assert "ts" not in json.loads(line[3:])


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_exceptions_stay_on_one_line(clean_root: list[LogHandle], fmt: str) -> None:
    stream, handle = run(clean_root, fmt=fmt)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger(LOGGER).exception("cycle failed", extra=kv(cycle=3))
    (line,) = lines_of(stream, handle)
    fields = parse_logfmt(line) if fmt == "logfmt" else json.loads(line)
    assert fields["msg"] == "cycle failed"
    assert fields["exc"].startswith("Traceback (most recent call last):\n")
    assert fields["exc"].endswith("RuntimeError: boom")


def test_fields_are_captured_when_logged_not_when_written(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root)
    replicas = ["a"]
    logging.getLogger(LOGGER).info("replicas %s", replicas, extra=kv(replicas=replicas))
    replicas.append("b")  # the writer thread may format later; it must see the old value
    (line,) = lines_of(stream, handle)
    fields = parse_logfmt(line)
    assert fields["msg"] == "replicas ['a']"
    assert fields["replicas"] == "['a']"


def test_stop_flushes_everything_and_is_idempotent(clean_root: list[LogHandle]) -> None:
    stream, handle = run(clean_root)
    log = logging.getLogger(LOGGER)
    for i in range(2000):
        log.info("n", extra=kv(i=i))
    handle.stop()
    handle.stop()
    lines = stream.getvalue().splitlines()
    assert [parse_logfmt(line)["i"] for line in lines] == [str(i) for i in range(2000)]
    log.info("after stop")  # detached: goes nowhere near the old stream
    assert len(stream.getvalue().splitlines()) == 2000


def test_setting_up_again_replaces_the_previous_pipeline(clean_root: list[LogHandle]) -> None:
    first, _ = run(clean_root)
    second, handle = run(clean_root)
    logging.getLogger(LOGGER).info("once")
    handle.stop()
    assert first.getvalue() == ""
    assert len(second.getvalue().splitlines()) == 1


class BlockedStream(io.StringIO):
    """A stderr that hangs until released, like a stalled journald."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait()
        return super().write(text)


def test_a_blocked_stream_never_blocks_the_caller(clean_root: list[LogHandle]) -> None:
    stream = BlockedStream()
    handle = setup_logging("info", "logfmt", stream)
    clean_root.append(handle)
    log = logging.getLogger(LOGGER)
    try:
        for i in range(12_000):  # more than the queue holds: the excess is dropped, not waited for
            log.info("n", extra=kv(i=i))
        assert handle.dropped > 0
    finally:
        stream.release.set()
    handle.stop()
    written = len(stream.getvalue().splitlines())
    assert written + handle.dropped == 12_000


def test_bad_level_or_format(clean_root: list[LogHandle]) -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        setup_logging("verbose")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        setup_logging("info", "xml")


def test_formatter_can_be_used_directly() -> None:
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "hi %s", ("there",), None)
    record.__dict__.update(kv(epoch=2))
    assert (
        LogfmtFormatter(journal=True).format(record)
        == '<6>level=info logger=haredis.test msg="hi there" epoch=2'
    )
