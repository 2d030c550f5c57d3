"""Scale benchmark: the steady-state cost of one haredis watcher and one Debian redis-sentinel
monitoring N primaries, side by side in the same run on the same Redis processes.

The cluster (all on loopback): every monitored name is its own ``redis-server`` primary with
one ``redis-server`` replica, 2N processes (run with ``--hz 1``: idle timers only, which neither
watcher depends on; 2000 of them cost ~0.15 of a core). Sharing processes between names does
not work for either system, which is why the names do not share:

* the same address under two names: Sentinel accepts it, haredis refuses it at config check
  (``expected an address not monitored as primaries[i]``);
* one primary bound to 16 loopback aliases (127.0.0.0/8 all reaches ``lo``; 16 is Redis's
  ``bind`` limit), one name per alias: its one replica follows one ``master_host``, which is
  the wrong address for 15 of the 16 names, so each watcher keeps repointing the shared
  replica to "its" address (Sentinel's ``+fix-slave-config``, haredis's conversion) and the
  steady state never comes.

Configuration, identical as far as the knobs allow:

* haredis (``python -m haredis run``), one watcher, no peers, quorum 1 per primary,
  ``down_after_ms = 10000`` (probe period down_after/10, capped at 1 s: one PING per second),
  ``info_period_ms = 10000`` (Sentinel's fixed INFO period), ``failover_timeout_ms = 60000``;
  otherwise its documented defaults (tick 100 ms, crash_detect 250 ms, /metrics served on a
  port nobody scrapes).
* redis-sentinel, one process, ``sentinel monitor <name> <addr> 1``,
  ``down-after-milliseconds 10000``, ``failover-timeout 60000``; otherwise its defaults.

What each one does per monitored name per second, in steady state:

* haredis: PING the primary and its replica once each (1 s period), ``INFO server
  replication`` on each every 10 s; one connection per instance per purpose (probe, info).
  Every 100 ms one decision cycle over all primaries (a Tick into the core and a snapshot).
* Sentinel: PING the primary and the replica once each (``min(down-after, 1 s)``), ``INFO``
  on each every 10 s, ``PUBLISH __sentinel__:hello`` to each every 2 s (and reading those
  hellos back on its pub/sub link to each: two connections per instance); its ``serverCron``
  runs the timers of every instance ~10 times per second.

What is measured: after both systems know every name with its replica and none is down, a
warm-up (``--warmup``), then a window (``--window`` seconds, default 60) split into
``--slices`` equal slices: for each slice, the process's CPU time (utime + stime of every
thread, from ``/proc/PID/stat``) turned into CPU seconds per minute; the table shows the median
[min-max] over the slices. RSS is ``VmRSS`` from ``/proc/PID/status`` at the end of the window
(and its peak over the window). Both systems run at the same time on the same Redis processes,
so a busy machine slows both alike; CPU seconds are per process, so neither pays for the other.

Output: a table on stdout, a run appended to ``bench/results/scale.md`` and ``scale.json``;
the last line of stdout is ``scale n=<largest N> cpu_ratio=<haredis/sentinel median CPU at the
largest N> rss_mb=<haredis RSS at the largest N>``. Goals (issue 6): cpu_ratio <= 2.0 at every
N, haredis RSS <= 150 MB at N = 1000.

Usage, from the repository root::

    python -m bench.scale                   # N = 100, 500, 1000; 60 s windows (~8 minutes)
    python -m bench.scale --quick           # N = 200, 20 s window
    python -m bench.scale --n 1000 --window 30
    python -m bench.scale --n 5 --window 3 --warmup 1   # the smoke test's run
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from haredis.core.model import Address
from tests.integration.haredis_procs import HaredisProc, HaredisProcError
from tests.integration.redis_procs import LOOPBACK, RedisProc, RedisProcError, free_port

from . import common
from .common import (
    REPO_ROOT,
    BenchError,
    SentinelProc,
    Spread,
    System,
    append_json,
    append_text,
    command_line,
    exit_cleanly_on_sigterm,
    json_number,
    machine_info,
    plain_client,
    ratio,
    text_table,
    wait_for,
)

DEFAULT_NS = (100, 500, 1000)
QUICK_NS = (200,)
DOWN_AFTER_MS = 10000
INFO_PERIOD_MS = 10000  # Sentinel's fixed INFO period (SENTINEL_INFO_PERIOD)
FAILOVER_TIMEOUT_MS = 60000
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"
SYSTEMS: tuple[System, ...] = ("haredis", "sentinel")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

MARKDOWN_HEADER = """# Scale benchmark: haredis vs redis-sentinel

Appended by `python -m bench.scale` (see its docstring). One haredis watcher and one
redis-sentinel, at the same time, monitor the same N names (each with its own address, 1 primary
and 1 replica: 2N redis-server processes). Both PING every instance every second
and INFO it every 10 s (haredis `down_after_ms = 10000`, `info_period_ms = 10000`; Sentinel
`down-after-milliseconds 10000`). `cpu s/min`: CPU seconds (user + system, all threads) per
minute of wall time, median [min-max] over the slices of the measuring window; `rss MB`: VmRSS
at the end of the window, and its peak over the window. The raw figures are in `scale.json`.
"""


_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- the Redis processes ------------------------------------------------------------------------

# Idle redis-servers at Redis's default hz 10 would cost ~1% of a core per 100 processes; at
# hz 1 (timers only: neither watcher depends on it) 2000 of them cost ~0.15 of a core.
REDIS_ARGS = ("--hz", "1")


@dataclass(frozen=True, slots=True)
class Farm:
    """The real processes and the names: ``names[i]`` is ``primaries[i]``, with ``replicas[i]``."""

    primaries: list[RedisProc]
    replicas: list[RedisProc]
    names: list[str]

    @property
    def addresses(self) -> list[Address]:
        return [proc.address for proc in self.primaries]


def start_all(procs: Sequence[RedisProc]) -> None:
    """Start every process at once, then wait for each; one whose free port was taken in the
    meantime starts again on another port."""
    for proc in procs:
        proc.start(wait=False)
    for proc in procs:
        try:
            proc.wait_ready()
        except RedisProcError:
            if "in use" not in proc.log_tail():
                raise
            proc.port = free_port()
            proc.start()


@contextlib.contextmanager
def redis_farm(n: int) -> Iterator[Farm]:
    """``n`` primaries with one replica each; stopped on exit."""
    primaries = [RedisProc(extra_args=REDIS_ARGS) for _ in range(n)]
    replicas: list[RedisProc] = []
    try:
        start_all(primaries)
        replicas = [RedisProc(replicaof=proc.address, extra_args=REDIS_ARGS) for proc in primaries]
        start_all(replicas)
        for primary, replica in zip(primaries, replicas, strict=True):
            primary.wait_synced(replica, timeout=60.0)
        yield Farm(primaries, replicas, [f"m{i:04d}" for i in range(n)])
    finally:
        # SIGKILL first: at hz 1 a redis-server takes up to a second to act on SIGTERM.
        for proc in [*replicas, *primaries]:
            with contextlib.suppress(Exception):
                proc.kill()
        for proc in [*replicas, *primaries]:
            with contextlib.suppress(Exception):
                proc.close()


# -- the two watchers ---------------------------------------------------------------------------


class ManySentinel(SentinelProc):
    """One redis-sentinel monitoring every name of the farm (quorum 1)."""

    def __init__(self, workdir: Path, farm: Farm) -> None:
        super().__init__(
            workdir,
            farm.addresses[0],
            quorum=1,
            down_after_ms=DOWN_AFTER_MS,
            failover_timeout_ms=FAILOVER_TIMEOUT_MS,
        )
        self.farm = farm

    def config_text(self) -> str:
        lines = [
            f"port {self.port}",
            f"bind {LOOPBACK}",
            "daemonize no",
            "protected-mode no",
            f'dir "{self.workdir}"',
            f'logfile "{self.log_path}"',
            "sentinel resolve-hostnames no",
        ]
        farm = self.farm
        replicas = [proc.address for proc in farm.replicas]
        for name, address, replica in zip(farm.names, farm.addresses, replicas, strict=True):
            lines += [
                f"sentinel monitor {name} {address.host} {address.port} {self.quorum}",
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
                # As a Sentinel that has run before knows it: without it Sentinel rewrites and
                # fsyncs its config once per discovered replica, ~40 ms each, at start-up.
                f"sentinel known-replica {name} {replica.host} {replica.port}",
            ]
        return "\n".join([*lines, ""])

    @property
    def pid(self) -> int:
        return self._popens[-1].pid


def haredis_config(farm: Farm, workdir: Path, port: int) -> str:
    lines = [
        "[watcher]",
        'name = "scale"',
        f'bind = "{LOOPBACK}"',
        f"port = {port}",
        f"metrics_port = {free_port()}",
        "peers = []",
        f'data_dir = "{workdir / "data"}"',
        "",
    ]
    for name, address in zip(farm.names, farm.addresses, strict=True):
        lines += [
            "[[primaries]]",
            f'name = "{name}"',
            f'address = "{address.host}:{address.port}"',
            "quorum = 1",
            f"down_after_ms = {DOWN_AFTER_MS}",
            f"info_period_ms = {INFO_PERIOD_MS}",
            f"failover_timeout_ms = {FAILOVER_TIMEOUT_MS}",
            "",
        ]
    return "\n".join(lines)


@contextlib.contextmanager
def watchers(farm: Farm, workdir: Path) -> Iterator[dict[System, int]]:
    """Start haredis and redis-sentinel on the farm; yields {system: RESP port}, and keeps the
    pids in :data:`PIDS`. Both are stopped on exit."""
    haredis_dir = workdir / "haredis"
    # A reused --workdir must not hand a new run the last run's state: haredis would load the
    # instances it knew (on ports the new farm gives to other roles) and never settle.
    for stale in (haredis_dir, workdir / "sentinel"):
        shutil.rmtree(stale, ignore_errors=True)
    haredis_dir.mkdir(parents=True, exist_ok=True)
    haredis_port = free_port()
    haredis = HaredisProc("scale", haredis_port, haredis_dir, haredis_config(farm, haredis_dir, haredis_port))
    sentinel = ManySentinel(workdir / "sentinel", farm)
    try:
        haredis.start(wait=False)
        sentinel.start()
        haredis.wait_ready(timeout=120.0 + 0.2 * len(farm.names))
        assert haredis.popen is not None
        PIDS["haredis"] = haredis.popen.pid
        PIDS["sentinel"] = sentinel.pid
        yield {"haredis": haredis.port, "sentinel": sentinel.port}
    finally:
        haredis.close()
        sentinel.close()
        for target, source in (("haredis.log", haredis.log_path), ("sentinel.log", sentinel.log_path)):
            with contextlib.suppress(OSError):
                shutil.copyfile(source, workdir / target)


PIDS: dict[System, int] = {}


def all_watched(port: int, n: int) -> bool:
    """Does the watcher on ``port`` list ``n`` masters, each with its replica and no down or
    disconnected flag?"""
    with plain_client(port, timeout=30.0) as client:
        masters = client.execute_command("SENTINEL", "MASTERS")
    if len(masters) != n:
        return False
    for entry in masters:
        fields = (
            common._pairs(entry) if isinstance(entry, list) else {str(k): str(v) for k, v in entry.items()}
        )
        if fields.get("flags") != "master" or fields.get("num-slaves") != "1":
            return False
    return True


# -- measuring ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True, slots=True)
class Measure:
    system: System
    n: int
    cpu_per_min: Spread  # over the slices
    cpu_total_per_min: float  # over the whole window
    rss_mb: float
    rss_peak_mb: float

    def cells(self) -> list[str]:
        return [
            str(self.n),
            self.system,
            self.cpu_per_min.render(2),
            f"{100 * self.cpu_total_per_min / 60:.1f}",
            f"{self.rss_mb:.1f}",
            f"{self.rss_peak_mb:.1f}",
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "n": self.n,
            "cpu_s_per_min": self.cpu_per_min.as_json(),
            "cpu_s_per_min_whole_window": json_number(self.cpu_total_per_min),
            "rss_mb": json_number(self.rss_mb),
            "rss_peak_mb": json_number(self.rss_peak_mb),
        }


HEADERS = ("N", "system", "cpu s/min", "% of a core", "rss MB", "rss peak MB")


def measure(n: int, window: float, slices: int) -> list[Measure]:
    """Sample both processes over ``window`` seconds cut into ``slices`` slices."""
    pids = dict(PIDS)
    slice_len = window / slices
    per_slice: dict[System, list[float]] = {s: [] for s in SYSTEMS}
    peaks: dict[System, float] = {s: 0.0 for s in SYSTEMS}
    start_wall = time.monotonic()
    start_cpu = {s: cpu_seconds(pids[s]) for s in SYSTEMS}
    last_wall, last_cpu = start_wall, dict(start_cpu)
    for index in range(1, slices + 1):
        target = start_wall + index * slice_len
        while (now := time.monotonic()) < target:
            for system in SYSTEMS:
                peaks[system] = max(peaks[system], rss_mb(pids[system]))
            time.sleep(min(1.0, max(0.0, target - now)))
        wall = time.monotonic()
        cpu = {s: cpu_seconds(pids[s]) for s in SYSTEMS}
        for system in SYSTEMS:
            per_slice[system].append((cpu[system] - last_cpu[system]) / (wall - last_wall) * 60)
        last_wall, last_cpu = wall, cpu
    results = []
    for system in SYSTEMS:
        rss = rss_mb(pids[system])
        results.append(
            Measure(
                system=system,
                n=n,
                cpu_per_min=Spread.of(per_slice[system]),
                cpu_total_per_min=(last_cpu[system] - start_cpu[system]) / (last_wall - start_wall) * 60,
                rss_mb=rss,
                rss_peak_mb=max(peaks[system], rss),
            )
        )
    return results


def run_one(n: int, window: float, warmup: float, slices: int, workdir: Path) -> list[Measure]:
    progress(f"N={n}: starting {n} primaries and {n} replicas ...")
    with redis_farm(n) as farm:
        progress(f"N={n}: starting haredis and redis-sentinel ...")
        with watchers(farm, workdir / f"n{n}") as ports:
            # Generous: a watcher starting with a thousand primaries opens thousands of
            # connections at once, and the machine may be busy with other work.
            ready_timeout = 120.0 + n * 0.2
            for system, port in ports.items():
                wait_for(
                    lambda port=port: all_watched(port, n),  # type: ignore[misc]
                    ready_timeout,
                    f"{system} to see {n} primaries, each with its replica and none down",
                    interval=1.0,
                )
            progress(f"N={n}: both watch every name; warming up {warmup:.0f}s ...")
            time.sleep(warmup)
            progress(f"N={n}: measuring {window:.0f}s ...")
            results = measure(n, window, slices)
            for system, port in ports.items():
                if not all_watched(port, n):
                    raise BenchError(f"{system} no longer sees every name healthy after the window")
            for result in results:
                progress("  " + "  ".join(result.cells()))
            return results


# -- reporting ----------------------------------------------------------------------------------


def ratios(results: Sequence[Measure]) -> dict[int, float]:
    by_key = {(r.n, r.system): r for r in results}
    ns = sorted({r.n for r in results})
    return {
        n: ratio(by_key[(n, "haredis")].cpu_per_min.median, by_key[(n, "sentinel")].cpu_per_min.median)
        for n in ns
    }


def last_line(results: Sequence[Measure], largest: int) -> str:
    """The summary line for the largest N asked for (nan where that size did not complete)."""
    haredis = next((r for r in results if r.n == largest and r.system == "haredis"), None)
    cpu_ratio = ratios(results).get(largest, math.nan)
    cpu_text = "nan" if math.isnan(cpu_ratio) else f"{cpu_ratio:.2f}"
    rss_text = "nan" if haredis is None else f"{haredis.rss_mb:.1f}"
    return f"scale n={largest} cpu_ratio={cpu_text} rss_mb={rss_text}"


def table_rows(results: Sequence[Measure]) -> list[list[str]]:
    by_ratio = ratios(results)
    rows = []
    for r in sorted(results, key=lambda r: (r.n, r.system)):
        cells = r.cells()
        cells.append(
            f"{by_ratio[r.n]:.2f}" if r.system == "haredis" and not math.isnan(by_ratio[r.n]) else ""
        )
        rows.append(cells)
    return rows


ROW_HEADERS = (*HEADERS, "cpu ratio")


def markdown_report(record: dict[str, Any], rows: Sequence[Sequence[str]], last: str) -> str:
    machine = record["machine"]
    settings = record["settings"]
    uncommitted = ", ".join(machine["haredis_uncommitted"]) or "none"
    return (
        f"\n## {machine['date']}: `{record['command']}`\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- {machine['redis_server']}; haredis {machine['haredis_commit']} "
        f"(uncommitted changes: {uncommitted}); redis-py {machine['redis_py']}; "
        f"Python {machine['python']}\n"
        f"- warm-up {settings['warmup_s']:.0f} s, window {settings['window_s']:.0f} s in "
        f"{settings['slices']} slices; `cpu ratio` = haredis / sentinel median cpu s/min\n"
        + "".join(f"- N={n} failed: {error}\n" for n, error in record["failed"].items())
        + "\n"
        f"{common.markdown_table(ROW_HEADERS, rows)}\n\n`{last}`\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="Steady-state CPU and RSS of one haredis watcher vs one redis-sentinel at N primaries.",
    )
    parser.add_argument("--n", type=int, action="append", help="number of primaries (repeatable)")
    parser.add_argument("--quick", action="store_true", help="N = 200 only, 20 s window")
    parser.add_argument("--window", type=float, help="measuring window in seconds (default 60, quick 20)")
    parser.add_argument(
        "--warmup", type=float, help="seconds between ready and measuring (default 20, quick 10)"
    )
    parser.add_argument("--slices", type=int, default=6, help="slices of the window (default 6)")
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are appended"
    )
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here")
    args = parser.parse_args(argv)
    args.ns = tuple(args.n) if args.n else (QUICK_NS if args.quick else DEFAULT_NS)
    if args.window is None:
        args.window = 20.0 if args.quick else 60.0
    if args.warmup is None:
        args.warmup = 10.0 if args.quick else 20.0
    if any(n < 1 for n in args.ns):
        parser.error("--n must be at least 1")
    if args.window <= 0 or args.warmup < 0 or args.slices < 1:
        parser.error("--window must be positive, --warmup non-negative, --slices at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    machine = machine_info()
    run_dir = args.workdir or Path(tempfile.mkdtemp(prefix="haredis-scale-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    keep = args.workdir is not None
    results: list[Measure] = []
    failures: dict[int, str] = {}
    try:
        for n in args.ns:
            try:
                results += run_one(n, args.window, args.warmup, args.slices, run_dir)
            except (BenchError, RedisProcError, HaredisProcError, redis.RedisError, OSError) as exc:
                # Reported, and the other sizes still run: a size that cannot reach a steady
                # state is a result too.
                keep = True
                failures[n] = str(exc)
                progress(f"N={n} failed: {exc}")
    except KeyboardInterrupt:
        keep = True
        progress("interrupted")
        return 130
    finally:
        if keep:
            progress(f"configs and logs are in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    rows = table_rows(results)
    last = last_line(results, max(args.ns))
    record = {
        "benchmark": "scale",
        "command": command_line("bench.scale"),
        "machine": machine,
        "settings": {
            "ns": list(args.ns),
            "redis_processes_per_name": 2,
            "redis_args": list(REDIS_ARGS),
            "replicas_per_primary": 1,
            "down_after_ms": DOWN_AFTER_MS,
            "haredis_info_period_ms": INFO_PERIOD_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "window_s": args.window,
            "warmup_s": args.warmup,
            "slices": args.slices,
        },
        "results": [r.as_json() for r in results],
        "cpu_ratio": {str(n): json_number(v) for n, v in ratios(results).items()},
        "failed": {str(n): error for n, error in failures.items()},
        "last_line": last,
    }
    append_json(args.results_dir / "scale.json", record)
    markdown = args.results_dir / "scale.md"
    if not markdown.exists():
        append_text(markdown, MARKDOWN_HEADER)
    append_text(markdown, markdown_report(record, rows, last))
    print(text_table(ROW_HEADERS, rows))
    print(last, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
