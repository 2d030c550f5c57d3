"""Shared helpers for the benchmarks in ``bench/``: the systems under test, the probe clients, the
writer, statistics and the results files.

Everything runs on 127.0.0.1. Redis processes come from ``tests.integration.redis_procs`` and
haredis watchers from ``tests.integration.haredis_procs``; this module adds real Debian
``redis-sentinel`` processes (:class:`SentinelCluster`), so both systems are started, probed and
faulted through the same code.

Rules: every wait has a deadline and raises :class:`BenchError` with a clear message; every
process is stopped by a context manager (and by a finalizer at interpreter exit as a last
resort).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from haredis.core.model import Address
from tests.integration.haredis_procs import HaredisCluster
from tests.integration.redis_procs import LOOPBACK, RedisProc, free_port

System = Literal["haredis", "sentinel"]
MASTER_NAME = "mymaster"
REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0
READY_TIMEOUT = 30.0
POLL_INTERVAL = 0.01

T = TypeVar("T")


class BenchError(RuntimeError):
    """A bounded wait ran out, or a process did not behave: the benchmark cannot go on."""


class SetupError(BenchError):
    """A round's fresh cluster never became ready: no fault was injected and nothing was
    measured, so running the round again on fresh processes discards no figure."""


@contextlib.contextmanager
def setting_up() -> Iterator[None]:
    """Marks the part of a round before its fault: a BenchError there becomes a SetupError."""
    try:
        yield
    except SetupError:
        raise
    except BenchError as exc:
        raise SetupError(str(exc)) from exc


def retry_setup_once(
    run: Callable[[Path], T], workdir: Path, progress: Callable[[str], None]
) -> tuple[T, str]:
    """Run a round in ``workdir``; if its setup failed (another process on this shared machine
    can take a port or stall the start), run it once more in a fresh ``<workdir>-retry`` (no
    data dir of the first try is reused) and return why the first try was discarded. A
    failure after the fault is never retried: that is a result."""
    try:
        return run(workdir), ""
    except SetupError as exc:
        progress(f"  setup failed before any fault, nothing measured ({exc}); once more on fresh processes")
        return run(workdir.with_name(workdir.name + "-retry")), str(exc)


def setup_retry_notes(rounds: Sequence[Mapping[str, Any]]) -> str:
    """Markdown lines naming every round whose first try failed before its fault (one per
    line, each ending in a newline; empty when there was none)."""
    return "".join(
        f"- round {r['round']} {r['system']}{' ' + str(r['fault']) if 'fault' in r else ''}: a first "
        f"try failed before any fault and was discarded ({r['setup_retried']})\n"
        for r in rounds
        if r.get("setup_retried")
    )


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02) -> T:
    """Call ``predicate`` until it returns something truthy and return that; raise BenchError
    naming ``what`` (and the last exception, if any) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise BenchError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def plain_client(port: int, timeout: float = 0.5) -> redis.Redis:
    """A decoded RESP2 client to 127.0.0.1:port that never retries (one attempt, one answer)."""
    return redis.Redis(
        LOOPBACK,
        port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        protocol=2,
    )


# -- haredis ------------------------------------------------------------------------------------

# HaredisCluster writes test-friendly values for these keys; the benchmark removes them so that
# haredis runs with its documented defaults (failover_timeout_ms 60000 like the Sentinel side,
# min_failover_interval_ms 15000, log_level info).
_TEST_ONLY_KEYS = ("failover_timeout_ms", "min_failover_interval_ms", "log_level")


@contextlib.contextmanager
def haredis_watchers(
    primary: Address, workdir: Path, *, down_after_ms: int, quorum: int = 2, debug_logs: bool = False
) -> Iterator[list[int]]:
    """Three ``python -m haredis run`` watchers on ``primary``; yields their RESP ports. Their
    configs, data dirs and logs (``w1.log``…) stay in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = HaredisCluster(primary, quorum=quorum, down_after_ms=down_after_ms, workdir=str(workdir))
    dropped = _TEST_ONLY_KEYS[:-1] if debug_logs else _TEST_ONLY_KEYS
    for watcher in cluster.watchers:
        lines = watcher.config_path.read_text().splitlines()
        kept = [line for line in lines if line.split("=", 1)[0].strip() not in dropped]
        watcher.config_path.write_text("\n".join(kept) + "\n")
    with cluster:
        yield [w.port for w in cluster.watchers]


# -- redis-sentinel -----------------------------------------------------------------------------


def _reap(popen_box: list[subprocess.Popen[bytes]]) -> None:
    """Finalizer: SIGKILL (works on a stopped process too) and reap."""
    for popen in popen_box:
        if popen.poll() is None:
            with contextlib.suppress(OSError):
                popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
    popen_box.clear()


class SentinelProc:
    """One ``redis-sentinel <conf>`` on 127.0.0.1 with a writable config in its own directory."""

    def __init__(
        self, workdir: Path, primary: Address, *, quorum: int, down_after_ms: int, failover_timeout_ms: int
    ) -> None:
        self.workdir = workdir
        self.primary = primary
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.port = free_port()
        self._popens: list[subprocess.Popen[bytes]] = []
        self._finalizer = weakref.finalize(self, _reap, self._popens)

    @property
    def conf_path(self) -> Path:
        return self.workdir / "sentinel.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "sentinel.log"

    def config_text(self) -> str:
        return "\n".join(
            [
                f"port {self.port}",
                f"bind {LOOPBACK}",
                "daemonize no",
                "protected-mode no",
                f'dir "{self.workdir}"',
                f'logfile "{self.log_path}"',
                "sentinel resolve-hostnames no",
                f"sentinel monitor {MASTER_NAME} {self.primary.host} {self.primary.port} {self.quorum}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
                "",
            ]
        )

    def _exited(self) -> bool:
        return not self._popens or self._popens[-1].poll() is not None

    def start(self) -> Self:
        """Start and wait for PING; on a lost race for the free port, retry on another one."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            self.conf_path.write_text(self.config_text())
            with open(self.workdir / "stdout.log", "ab") as out:
                self._popens.append(
                    subprocess.Popen(
                        ["redis-sentinel", str(self.conf_path)],
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=self.workdir,
                        start_new_session=True,
                    )
                )
            try:
                wait_for(self._answers, START_TIMEOUT, f"redis-sentinel on port {self.port} to answer PING")
                return self
            except BenchError:
                if attempt < 2 and self._exited() and "in use" in self.log_tail():
                    self.port = free_port()
                    continue
                raise BenchError(
                    f"redis-sentinel on port {self.port} did not start:\n{self.log_tail()}"
                ) from None
        raise AssertionError("unreachable")

    def _answers(self) -> bool:
        if self._exited():
            raise BenchError(f"redis-sentinel on port {self.port} exited:\n{self.log_tail()}")
        with plain_client(self.port) as client:
            return bool(client.ping())

    def log_tail(self, lines: int = 20) -> str:
        chunks: list[str] = []
        for path in (self.workdir / "stdout.log", self.log_path):
            with contextlib.suppress(OSError):
                chunks += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(chunks)

    def close(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 5 s (idempotent)."""
        if not self._exited():
            popen = self._popens[-1]
            with contextlib.suppress(OSError):
                popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        self._finalizer()


@contextlib.contextmanager
def sentinel_watchers(
    primary: Address,
    workdir: Path,
    *,
    down_after_ms: int,
    failover_timeout_ms: int,
    quorum: int = 2,
    count: int = 3,
) -> Iterator[list[int]]:
    """``count`` redis-sentinel processes monitoring ``primary``; yields their ports. Each one's
    config (rewritten by Sentinel) and log stay in ``workdir/s<i>``."""
    procs = [
        SentinelProc(
            workdir / f"s{i + 1}",
            primary,
            quorum=quorum,
            down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms,
        )
        for i in range(count)
    ]
    try:
        for proc in procs:
            proc.start()
        yield [proc.port for proc in procs]
    finally:
        for proc in procs:
            proc.close()


# -- asking the watchers (the same code for both systems) ---------------------------------------


def _pairs(reply: Sequence[Any]) -> dict[str, str]:
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


class WatcherClients:
    """One persistent client per watcher (haredis or Sentinel), asked with Sentinel commands."""

    def __init__(self, ports: Sequence[int], timeout: float = 0.5) -> None:
        self.ports = list(ports)
        self._clients = [plain_client(port, timeout) for port in self.ports]

    def master_addr(self, index: int) -> Address | None:
        """This watcher's answer to GET-MASTER-ADDR-BY-NAME; None on an empty reply or an error."""
        try:
            reply = self._clients[index].execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        except redis.RedisError:
            return None
        return Address(str(reply[0]), int(reply[1])) if reply else None

    def first_switch(self, old: Address, timeout: float) -> tuple[Address, float]:
        """Poll every watcher every 10 ms until one names a primary other than ``old``; return it
        and the monotonic time its answer arrived."""
        deadline = time.monotonic() + timeout
        while True:
            cycle_start = time.monotonic()
            for index in range(len(self._clients)):
                addr = self.master_addr(index)
                if addr is not None and addr != old:
                    return addr, time.monotonic()
            if cycle_start >= deadline:
                raise BenchError(f"no watcher named a primary other than {old} within {timeout:.0f}s")
            time.sleep(max(0.0, cycle_start + POLL_INTERVAL - time.monotonic()))

    def agreed(self) -> Address | None:
        """The address every watcher names, or None while they disagree."""
        addrs = {self.master_addr(i) for i in range(len(self._clients))}
        if len(addrs) == 1:
            return addrs.pop()
        return None

    def wait_agree(self, timeout: float, what: str = "every watcher to name the same primary") -> Address:
        return wait_for(self.agreed, timeout, what, POLL_INTERVAL)

    def _ready_one(self, index: int, primary: Address, replicas: int) -> bool:
        client = self._clients[index]
        master = _pairs(client.execute_command("SENTINEL", "MASTER", MASTER_NAME))
        if Address(master.get("ip", ""), int(master.get("port", 0))) != primary:
            return False
        if int(master.get("num-slaves", -1)) != replicas:
            return False
        if int(master.get("num-other-sentinels", -1)) != len(self.ports) - 1:
            return False
        known_replicas = [_pairs(r) for r in client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)]
        peers = [_pairs(s) for s in client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)]
        return all(r.get("flags") == "slave" for r in known_replicas) and all(
            s.get("flags") == "sentinel" for s in peers
        )

    def wait_ready(self, primary: Address, replicas: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every watcher names ``primary``, knows its ``replicas`` replicas and all of
        its peers, with no down or disconnected flag (Sentinel needs its hello exchange first)."""

        def ready() -> bool:
            return all(self._ready_one(i, primary, replicas) for i in range(len(self._clients)))

        wait_for(ready, timeout, f"every watcher to know {primary}, {replicas} replicas and its peers", 0.05)

    def close(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- the writer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One ``SET bench:<n> <n>``: when it was sent, when it returned, whether it was acked (OK)."""

    n: int
    start: float
    end: float
    ok: bool


class Writer(threading.Thread):
    """Writes ``SET bench:<n> <n>`` through redis-py's Sentinel client, the way an application
    would, as fast as it can but at most ``rate`` per second. An error costs a 10 ms pause and
    the next attempt uses a new ``n``: a key is never sent twice. ``master_for`` connections
    never retry by themselves (redis-py gives them ``Retry(NoBackoff(), 0)``), so one attempt is
    one SET on the wire."""

    def __init__(self, ports: Sequence[int], rate: float = 1000.0, timeout: float = 0.2) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.ports = list(ports)
        self.interval = 1.0 / rate
        self.timeout = timeout
        self.attempts: list[Attempt] = []
        self.acked = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            self._write_until_stopped()
        except BaseException as exc:  # reported by stop(); a writer bug must not pass silently
            self.error = exc

    def _write_until_stopped(self) -> None:
        sentinel = Sentinel([(LOOPBACK, port) for port in self.ports], socket_timeout=self.timeout)
        master = sentinel.master_for(MASTER_NAME, socket_timeout=self.timeout, retry_on_timeout=False)
        try:
            n = 0
            while not self._stop_event.is_set():
                n += 1
                start = time.monotonic()
                try:
                    ok = master.set(f"bench:{n}", n) is True
                except (redis.RedisError, OSError):
                    ok = False
                end = time.monotonic()
                self.attempts.append(Attempt(n, start, end, ok))
                if ok:
                    self.acked += 1
                else:
                    self._stop_event.wait(0.01)
                self._stop_event.wait(max(0.0, start + self.interval - time.monotonic()))
        finally:
            master.close()
            sentinel.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        if self.is_alive():
            raise BenchError(f"the writer thread did not stop within {timeout:.0f}s")
        if self.error is not None:
            raise BenchError(f"the writer thread failed: {self.error!r}") from self.error

    def wait_acked(self, count: int, timeout: float) -> None:
        wait_for(lambda: self.acked >= count, timeout, f"the writer to get {count} writes acked")


@contextlib.contextmanager
def writing(ports: Sequence[int], rate: float = 1000.0) -> Iterator[Writer]:
    """A running :class:`Writer`; stopped on exit (stop it earlier to read a final record)."""
    writer = Writer(ports, rate)
    writer.start()
    try:
        yield writer
    finally:
        with contextlib.suppress(BenchError):
            writer.stop()


def missing_keys(proc: RedisProc, attempts: Sequence[Attempt], batch: int = 1000) -> list[int]:
    """The acked ``n`` whose ``bench:<n>`` is absent from ``proc`` (or holds another value), read
    back with pipelined MGETs of ``batch`` keys."""
    acked = [a.n for a in attempts if a.ok]
    missing: list[int] = []
    client = proc.client(timeout=10.0)
    for offset in range(0, len(acked), batch):
        chunk = acked[offset : offset + batch]
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(chunk), 100):
            pipe.mget([f"bench:{n}" for n in chunk[start : start + 100]])
        values = [value for reply in pipe.execute() for value in reply]
        missing += [n for n, value in zip(chunk, values, strict=True) if value != str(n)]
    return missing


# -- statistics and results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """Median, min and max of some measurements (NaN when there are none). ``failed`` counts
    rounds that never produced the measurement and were counted as infinitely slow
    (:meth:`over_rounds`); ``count`` is the rounds that did produce it."""

    median: float
    low: float
    high: float
    count: int
    failed: int = 0

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        clean = [v for v in values if not math.isnan(v)]
        if not clean:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(clean), min(clean), max(clean), len(clean))

    @classmethod
    def over_rounds(cls, values: Sequence[float]) -> Spread:
        """Like :meth:`of`, but over every round asked for: a round that never got there (NaN)
        counts as slower than every round that did (+inf), so a failed round can only push the
        median up, never vanish from it (a median of 2 rounds reported as one of 3)."""
        if not values:
            return cls(math.nan, math.nan, math.nan, 0)
        slowest_first = [math.inf if math.isnan(v) else v for v in values]
        failed = sum(1 for v in values if math.isnan(v))
        return cls(
            statistics.median(slowest_first),
            min(slowest_first),
            max(slowest_first),
            len(values) - failed,
            failed,
        )

    def render(self, digits: int = 2) -> str:
        if self.count == 0 and self.failed == 0:
            return "nan"
        text = f"{self.median:.{digits}f} [{self.low:.{digits}f}-{self.high:.{digits}f}]"
        return text + (f" ({self.failed} failed)" if self.failed else "")

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "median": json_number(self.median),
            "min": json_number(self.low),
            "max": json_number(self.high),
            "count": self.count,
            "failed": self.failed,
        }


def json_number(value: float) -> float | None:
    """JSON has neither NaN nor infinity: a missing figure (or a round that never finished,
    counted as infinitely slow) is null."""
    return None if not math.isfinite(value) else round(value, 4)


def ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def _command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Where and when this ran, with what, and how busy the machine was at the start."""
    uname = os.uname()
    # Not _command_output: its strip() would eat the status column of the first line.
    try:
        status = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        status = ""
    return {
        "uname": f"{uname.sysname} {uname.release} {uname.machine}",
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "redis_server": _command_output("redis-server", "--version"),
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "haredis_commit": _command_output("git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"),
        "haredis_uncommitted": [line[3:] for line in status.splitlines() if line.strip()],
    }


def command_line(module: str) -> str:
    return shlex.join([sys.executable, "-m", module, *sys.argv[1:]])


RunSize = Literal["full", "quick", "smoke"]


def run_size(*, quick: bool, smoke: bool) -> RunSize:
    """How big a run was: ``--quick`` and ``--smoke`` runs are short checks whose figures must
    never be mistaken for (or quoted as) full-size ones."""
    return "smoke" if smoke else "quick" if quick else "full"


def size_mark(size: str) -> str:
    """What a results heading adds after the command: nothing for a full-size run."""
    return "" if size == "full" else f" ({size.upper()} run: a short check, not a full-size figure)"


def append_json(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` to the JSON array in ``path`` (created if missing), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    runs: list[Any] = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else []
    if not isinstance(runs, list):
        raise BenchError(f"{path} does not hold a JSON array; move it away and run again")
    runs.append(record)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(runs, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def append_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(text)


def copy_logs(sources: Mapping[str, Path], target: Path) -> None:
    """Copy log files (best effort) to ``target/<name>`` before their temp dirs are removed."""
    target.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        with contextlib.suppress(OSError):
            shutil.copyfile(source, target / name)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so every ``finally`` runs and no process is orphaned."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns for the terminal."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
