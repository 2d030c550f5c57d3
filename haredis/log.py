"""Logging: stdlib logging, one record per line, logfmt (or JSON) fields from ``extra=``.

    log.info("failover started", extra=kv(master="mymaster", epoch=7))
    -> ts=2024-05-01T12:00:00.123Z level=info logger=haredis.x msg="failover started" master=mymaster epoch=7

Under systemd (``JOURNAL_STREAM`` names our stream) the timestamp is left to journald and each
line starts with its sd-daemon priority, ``<3>`` error … ``<7>`` debug, so ``journalctl -p``
filters work. Records go through a queue to a writer thread: a blocked stderr (a stalled
journald, a full pipe) stalls that thread, never the event loop; when the queue is full new
records are dropped and counted instead.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import queue
import re
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import IO, Final

__all__ = ["FORMATS", "LEVELS", "LogHandle", "LogfmtFormatter", "kv", "setup_logging"]

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS: Final = ("logfmt", "json")
_QUEUE_SIZE: Final = 10_000

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_FIELDS: Final = "haredis_fields"  # where kv() puts its fields on the record

_NEEDS_QUOTES: Final = re.compile(r'[\s"=\\\x00-\x1f\x7f\x85\u2028\u2029]')
_ESCAPE: Final = re.compile(r'["\\\x00-\x1f\x7f\x85\u2028\u2029]')
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BAD_KEY: Final = re.compile(r"[^A-Za-z0-9_.-]")

Plain = str | int | float | bool | None


def kv(**fields: object) -> dict[str, object]:
    """``extra=kv(master="m", epoch=7)``. Unlike plain ``extra=``, any field name is allowed,
    even those a LogRecord already uses (``name``, ``msg``, ``module``…), which would raise."""
    return {_FIELDS: fields}


class LogfmtFormatter(logging.Formatter):
    """Renders a record as one logfmt line (or one JSON object with ``json_output``)."""

    def __init__(self, *, journal: bool = False, json_output: bool = False) -> None:
        super().__init__()
        self.journal = journal
        self.json_output = json_output

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Plain] = {}
        if not self.journal:
            stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            fields["ts"] = stamp.replace("+00:00", "Z")
        fields["level"] = record.levelname.lower()
        fields["logger"] = record.name
        fields["msg"] = record.getMessage()
        for key, value in _extra_fields(record).items():
            # A field called "level" must not shadow the real level.
            while key in fields:
                key += "_"
            fields[key] = _plain(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = record.stack_info
        if self.json_output:
            line = json.dumps(fields, default=str)
        else:
            line = " ".join(f"{_key(key)}={_value(value)}" for key, value in fields.items())
        return f"<{_priority(record.levelno)}>{line}" if self.journal else line


class LogHandle:
    """The running log pipeline, as returned by ``setup_logging``."""

    def __init__(self, handler: _DroppingQueueHandler, listener: QueueListener, output: logging.Handler):
        self._handler = handler
        self._listener = listener
        self._output = output
        self._stopped = False

    @property
    def dropped(self) -> int:
        """Records lost because the writer could not keep up."""
        return self._handler.dropped

    def set_level(self, level: str) -> None:
        """Change the level in place (SIGHUP reload)."""
        logging.getLogger().setLevel(_level(level))

    def stop(self) -> None:
        """Write out every queued record, flush, and detach. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        logging.getLogger().removeHandler(self._handler)
        self._listener.stop()  # drains the queue before its thread exits
        self._output.flush()


_current: LogHandle | None = None


def setup_logging(
    level: str, fmt: str = "logfmt", stream: IO[str] | None = None, *, journal: bool | None = None
) -> LogHandle:
    """Send every logger's records (ours, redis-py's, asyncio's) to ``stream`` (stderr).

    ``journal`` defaults to detecting systemd's journal from ``JOURNAL_STREAM``. Calling this
    again replaces the previous setup. Raises ValueError for an unknown level or format.
    """
    global _current
    numeric = _level(level)
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}, expected one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    if journal is None:
        journal = _journal_attached(out)
    if _current is not None:
        _current.stop()

    output = logging.StreamHandler(out)
    output.setFormatter(LogfmtFormatter(journal=journal, json_output=fmt == "json"))
    records: queue.Queue[logging.LogRecord | None] = queue.Queue(_QUEUE_SIZE)
    handler = _DroppingQueueHandler(records)
    listener = _Listener(records, output)
    root = logging.getLogger()
    root.setLevel(numeric)
    root.addHandler(handler)
    listener.start()
    _current = LogHandle(handler, listener, output)
    return _current


class _DroppingQueueHandler(QueueHandler):
    def __init__(self, records: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__(records)
        self.records = records
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.records.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Resolve everything that could change or be mutated later while still on the caller's
        # thread, but keep the fields structured (the stdlib version flattens them into msg).
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        fields = record.__dict__.get(_FIELDS)
        if isinstance(fields, dict):
            record.__dict__[_FIELDS] = {key: _plain(value) for key, value in fields.items()}
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and key != _FIELDS:
                record.__dict__[key] = _plain(value)
        return record


class _Listener(QueueListener):
    def __init__(self, records: queue.Queue[logging.LogRecord | None], output: logging.Handler) -> None:
        super().__init__(records, output, respect_handler_level=True)
        self.records = records

    def enqueue_sentinel(self) -> None:
        # The stdlib uses put_nowait, which fails when the queue is full (a slow stream);
        # at shutdown, waiting for the writer to make room is exactly right.
        self.records.put(getattr(self, "_sentinel", None))


_TRACEBACKS: Final = logging.Formatter()


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    fields = {key: value for key, value in vars(record).items() if key not in _STANDARD and key != _FIELDS}
    bound = vars(record).get(_FIELDS)
    if isinstance(bound, dict):
        fields.update(bound)
    return fields


def _plain(value: object) -> Plain:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _key(key: str) -> str:
    return _BAD_KEY.sub("_", key) or "_"


def _value(value: Plain) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + _ESCAPE.sub(_escape_char, text) + '"'


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _priority(levelno: int) -> int:
    # sd-daemon(3): SD_CRIT 2, SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7.
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _level(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}, expected one of {', '.join(LEVELS)}") from None


def _journal_attached(stream: IO[str]) -> bool:
    # systemd sets JOURNAL_STREAM to "<device>:<inode>" of the stream it connected; a child whose
    # stderr was redirected elsewhere inherits the variable, so compare when we can.
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True  # not a real file (a test's StringIO): trust the variable
    return expected == f"{info.st_dev}:{info.st_ino}"
