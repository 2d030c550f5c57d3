"""Failover benchmark: haredis and Debian's redis-sentinel side by side, same run, same machine.

What one round does (fresh processes every round, all on 127.0.0.1):

1. start 1 primary + 2 replicas (redis-server) and either 3 haredis watchers or 3
   redis-sentinel processes (quorum 2, down-after 1000 ms, failover-timeout 60000 ms; haredis
   otherwise runs with its defaults), and wait until every watcher knows the primary, both
   replicas and both peers;
2. start a writer: redis-py's ``Sentinel(...).master_for("mymaster")`` with 0.2 s socket
   timeouts, ``SET bench:<n> <n>`` with a new ``n`` per attempt, at most ~1000 per second,
   10 ms pause after an error; every attempt is recorded (sent, returned, acked or not);
3. inject the fault into the primary: ``crash`` is ``kill -9``; ``hang`` is SIGSTOP, and
   SIGCONT once the new primary is agreed and writes have resumed, after which the old
   primary must be demoted to a replica of the new one (recorded, bounded wait);
4. stop the writer, find the primary every watcher names, and read every acked key back.

What is measured, per round:

* ``switch``: seconds from the fault to the first answer of any watcher to
  ``SENTINEL get-master-addr-by-name mymaster`` naming another address (all watchers are
  polled every 10 ms). This is what a client that asks its watchers sees.
* ``unavailable``: seconds from the ack of the last write sent before the fault to the ack
  of the first write sent after it: how long the application could not write.
* ``lost``: acked writes absent from the final primary. A ``kill -9`` under asynchronous
  replication may lose the very last acked writes in principle; writes acked by a hung old
  primary after it resumes, and then discarded when it is demoted, count as lost too.

How to read it: per system and fault, the table shows the median with [min-max] over the
rounds. Smaller is better for every column; ``demoted`` counts the hang rounds in which the
resumed old primary became a replica of the new one. The last line of stdout is
``failover crash_ratio=<haredis median switch / sentinel median switch> hang_ratio=<same>
lost=<acked writes haredis lost over all rounds>``; a ratio below 1 means haredis switched
faster. Each run is appended to ``bench/results/failover.json`` and ``failover.md`` together
with the machine it ran on. Both systems run interleaved in one session so that a busy
machine slows both alike.

Caveats when comparing: Sentinel counts down-after from its first unanswered PING, haredis from
the last valid reply (probes every down_after/3 here), so in the hang case haredis may declare
the primary down up to one probe period (333 ms) sooner for the same setting. ``unavailable``
includes the client's own 0.2 s socket timeout when a write was stuck on the hung primary.

Usage, from the repository root::

    python -m bench.failover               # 5 rounds of each fault per system (a few minutes)
    python -m bench.failover --quick       # 1 round of each
    python -m bench.failover --smoke       # haredis only, 1 crash round (the smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from haredis.core.model import Address
from tests.integration.redis_procs import RedisBackend, RedisCluster, RedisProc

from . import common
from .common import (
    REPO_ROOT,
    Attempt,
    BenchError,
    Spread,
    System,
    WatcherClients,
    append_json,
    append_text,
    command_line,
    copy_logs,
    exit_cleanly_on_sigterm,
    haredis_watchers,
    json_number,
    machine_info,
    missing_keys,
    ratio,
    retry_setup_once,
    run_size,
    sentinel_watchers,
    setting_up,
    setup_retry_notes,
    size_mark,
    wait_for,
    writing,
)

Fault = Literal["crash", "hang"]

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 60000
QUORUM = 2
REPLICAS = 2
WRITE_RATE = 1000.0
WARMUP_ACKS = 500  # acked writes before the fault: the writer is in its stride
AGREE_TIMEOUT = 60.0  # Sentinel's peers learn a new primary by hello (every 2 s)
RESUME_TIMEOUT = 60.0
DEMOTE_TIMEOUT = 60.0  # Sentinel converts a returning old primary after 8 s and an INFO poll
AFTER_WRITES = 0.5  # keep writing this long once writes resumed (and after a demotion)
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"


@dataclass(frozen=True, slots=True)
class Plan:
    """Which rounds to run, in which order, and how long a switch may take."""

    systems: tuple[System, ...]
    faults: tuple[Fault, ...]
    rounds: int
    switch_timeout: float

    def schedule(self) -> Iterator[tuple[int, Fault, System]]:
        """Rounds interleaved, the systems' order alternating, so load drifts hit both alike."""
        for index in range(1, self.rounds + 1):
            for fault in self.faults:
                systems = self.systems if index % 2 else tuple(reversed(self.systems))
                for system in systems:
                    yield index, fault, system


@dataclass(slots=True)
class RoundResult:
    system: System
    fault: Fault
    round: int
    old_primary: str
    load_1m: float = 0.0  # the machine's load average when the round started
    new_primary: str = ""
    final_primary: str = ""
    switch_s: float = float("nan")
    agree_s: float = float("nan")
    unavailable_s: float = float("nan")
    attempts: int = 0
    acked: int = 0
    lost: int = 0
    lost_keys: list[int] = field(default_factory=list)
    demoted: bool | None = None
    demote_s: float | None = None
    setup_retried: str = ""  # why a first try of this round failed before its fault, if it did

    def as_json(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("switch_s", "agree_s", "unavailable_s"):
            record[key] = json_number(record[key])
        record["lost_keys"] = self.lost_keys[:20]
        return record

    def describe(self) -> str:
        demoted = "" if self.demoted is None else f" demoted={self.demoted} after {self.demote_s}s"
        return (
            f"{self.system} {self.fault} #{self.round}: {self.old_primary} -> {self.final_primary} "
            f"switch={self.switch_s:.2f}s agree={self.agree_s:.2f}s unavailable={self.unavailable_s:.2f}s "
            f"acked={self.acked}/{self.attempts} lost={self.lost}{demoted}"
        )


# -- one round ----------------------------------------------------------------------------------


def watchers_for(
    system: System, primary: Address, workdir: Path, debug_logs: bool
) -> AbstractContextManager[list[int]]:
    if system == "haredis":
        return haredis_watchers(primary, workdir, down_after_ms=DOWN_AFTER_MS, debug_logs=debug_logs)
    return sentinel_watchers(
        primary, workdir, down_after_ms=DOWN_AFTER_MS, failover_timeout_ms=FAILOVER_TIMEOUT_MS
    )


def inject(fault: Fault, primary: RedisProc) -> float:
    """Crash or hang the primary; return the monotonic time the signal was sent."""
    at = time.monotonic()
    if fault == "crash":
        primary.kill()
    else:
        primary.stop()
    return at


def first_resumed(attempts: Sequence[Attempt], fault_at: float) -> Attempt | None:
    return next((a for a in attempts if a.ok and a.start >= fault_at), None)


def unavailability(attempts: Sequence[Attempt], fault_at: float) -> float:
    """Ack of the first write sent after the fault minus ack of the last one sent before it."""
    before = [a.end for a in attempts if a.ok and a.start < fault_at]
    after = first_resumed(attempts, fault_at)
    if not before or after is None:
        raise BenchError("the writer has no acked write before the fault, or none after it")
    return after.end - max(before)


def proc_at(cluster: RedisCluster, address: Address) -> RedisProc:
    for proc in cluster.all:
        if proc.address == address:
            return proc
    raise BenchError(f"the watchers name {address}, which is none of this round's Redis servers")


def demoted_to(old: RedisProc, new: Address) -> bool:
    info = old.info("replication")
    return bool(info.get("role") == "slave" and int(info.get("master_port", 0)) == new.port)


def heal_and_wait_demotion(old: RedisProc, new: Address) -> tuple[bool, float | None]:
    """SIGCONT the hung old primary; wait (bounded) until it replicates from ``new``."""
    old.cont()
    resumed_at = time.monotonic()
    try:
        wait_for(lambda: demoted_to(old, new), DEMOTE_TIMEOUT, f"{old.address} to follow {new}", 0.05)
    except BenchError:
        return False, None
    return True, round(time.monotonic() - resumed_at, 2)


def redis_logs(cluster: RedisCluster) -> dict[str, Path]:
    return {f"redis-{proc.port}.log": proc.log_path for proc in cluster.all}


def run_round(
    system: System, fault: Fault, index: int, workdir: Path, *, switch_timeout: float, debug_logs: bool
) -> RoundResult:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(RedisCluster(REPLICAS, backend=RedisBackend("binary")))
        stack.callback(lambda: copy_logs(redis_logs(cluster), workdir))
        old = cluster.primary.address
        result = RoundResult(system, fault, index, str(old), round(os.getloadavg()[0], 2))
        ports = stack.enter_context(watchers_for(system, old, workdir, debug_logs))
        clients = stack.enter_context(WatcherClients(ports))
        with setting_up():
            clients.wait_ready(old, REPLICAS)
        writer = stack.enter_context(writing(ports, WRITE_RATE))
        with setting_up():
            writer.wait_acked(WARMUP_ACKS, 30.0)

        fault_at = inject(fault, cluster.primary)
        new, switched_at = clients.first_switch(old, switch_timeout)
        result.switch_s = switched_at - fault_at
        result.new_primary = str(new)
        agreed = clients.wait_agree(AGREE_TIMEOUT, f"every watcher to name the new primary after {old}")
        result.agree_s = time.monotonic() - fault_at
        if agreed == old:
            raise BenchError(f"the watchers named {new}, then went back to the faulted primary {old}")
        wait_for(lambda: first_resumed(writer.attempts, fault_at), RESUME_TIMEOUT, "writes to resume")
        time.sleep(AFTER_WRITES)
        if fault == "hang":
            result.demoted, result.demote_s = heal_and_wait_demotion(cluster.primary, agreed)
            time.sleep(AFTER_WRITES)
        writer.stop()

        final = clients.wait_agree(AGREE_TIMEOUT, "every watcher to name the final primary")
        result.final_primary = str(final)
        result.unavailable_s = unavailability(writer.attempts, fault_at)
        result.attempts = len(writer.attempts)
        result.acked = writer.acked
        result.lost_keys = missing_keys(proc_at(cluster, final), writer.attempts)
        result.lost = len(result.lost_keys)
        return result


# -- summary ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    system: System
    fault: Fault
    rounds: int
    switch: Spread
    unavailable: Spread
    lost: Spread
    lost_total: int
    demoted: str

    @classmethod
    def of(cls, system: System, fault: Fault, results: Sequence[RoundResult]) -> Summary:
        mine = [r for r in results if r.system == system and r.fault == fault]
        demotions = [r.demoted for r in mine if r.demoted is not None]
        return cls(
            system,
            fault,
            len(mine),
            Spread.of([r.switch_s for r in mine]),
            Spread.of([r.unavailable_s for r in mine]),
            Spread.of([float(r.lost) for r in mine]),
            sum(r.lost for r in mine),
            f"{sum(demotions)}/{len(demotions)}" if demotions else "-",
        )

    def cells(self) -> list[str]:
        return [
            self.system,
            self.fault,
            str(self.rounds),
            self.switch.render(),
            self.unavailable.render(),
            f"{self.lost.render(0)} (total {self.lost_total})" if self.rounds else "nan",
            self.demoted,
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "fault": self.fault,
            "rounds": self.rounds,
            "switch_s": self.switch.as_json(),
            "unavailable_s": self.unavailable.as_json(),
            "lost": self.lost.as_json(),
            "lost_total": self.lost_total,
            "demoted": self.demoted,
        }


MARKDOWN_HEADER = """# Failover benchmark: haredis vs redis-sentinel

Appended by `python -m bench.failover` (see its docstring). Per system and fault: median
[min-max] over the rounds of `switch` (fault to the first watcher naming the new primary),
`unavailable` (last ack before the fault to the first ack after it) and acked writes lost;
`demoted` counts hang rounds whose resumed old primary became a replica. The raw rounds are in
`failover.json`.
"""

HEADERS = ["system", "fault", "rounds", "switch s", "unavailable s", "lost acked writes", "demoted"]


def summaries(results: Sequence[RoundResult]) -> list[Summary]:
    return [Summary.of(s, f, results) for f in ("crash", "hang") for s in ("haredis", "sentinel")]


def text_table(rows: Sequence[Sequence[str]]) -> str:
    return common.text_table(HEADERS, rows)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    return common.markdown_table(HEADERS, rows)


def last_line(table: Sequence[Summary], results: Sequence[RoundResult]) -> str:
    median = {(s.system, s.fault): s.switch.median for s in table}
    crash = ratio(median["haredis", "crash"], median["sentinel", "crash"])
    hang = ratio(median["haredis", "hang"], median["sentinel", "hang"])
    lost = sum(r.lost for r in results if r.system == "haredis")
    return f"failover crash_ratio={crash:.2f} hang_ratio={hang:.2f} lost={lost}"


def markdown_report(record: dict[str, Any], rows: Sequence[Sequence[str]], last: str) -> str:
    machine = record["machine"]
    uncommitted = ", ".join(machine["haredis_uncommitted"]) or "none"
    return (
        f"\n## {machine['date']}: `{record['command']}`{size_mark(record['size'])}\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- {machine['redis_server']}; haredis {machine['haredis_commit']} "
        f"(uncommitted changes: {uncommitted}); redis-py {machine['redis_py']}\n"
        f"- per round: fresh 1 primary + {REPLICAS} replicas and 3 watchers, quorum {QUORUM}, "
        f"down-after {DOWN_AFTER_MS} ms, failover-timeout {FAILOVER_TIMEOUT_MS} ms; writer through "
        f"redis-py's Sentinel client at <= {WRITE_RATE:.0f} SET/s\n"
        f"- cells: median [min-max] over the rounds; seconds from the fault\n"
        f"{setup_retry_notes(record['rounds'])}\n"
        f"{markdown_table(rows)}\n\n`{last}`\n"
    )


def write_results(
    results_dir: Path, record: dict[str, Any], rows: Sequence[Sequence[str]], last: str
) -> None:
    append_json(results_dir / "failover.json", record)
    markdown = results_dir / "failover.md"
    if not markdown.exists():
        append_text(markdown, MARKDOWN_HEADER)
    append_text(markdown, markdown_report(record, rows, last))


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.failover",
        description="Failover time, write unavailability and lost acked writes: haredis vs redis-sentinel.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each fault per system (default 5)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 round of each fault per system")
    mode.add_argument("--smoke", action="store_true", help="haredis only, 1 crash round (for the smoke test)")
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are appended"
    )
    parser.add_argument("--workdir", type=Path, help="keep every round's configs and logs here")
    parser.add_argument("--debug-logs", action="store_true", help="haredis watchers log at debug level")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def plan_for(args: argparse.Namespace) -> Plan:
    # Sentinel retries a failed election only 2 x failover-timeout later: wait that long, no more.
    patient = 2 * FAILOVER_TIMEOUT_MS / 1000 + 30
    if args.smoke:
        return Plan(("haredis",), ("crash",), 1, 30.0)
    rounds = 1 if args.quick else args.rounds
    return Plan(("haredis", "sentinel"), ("crash", "hang"), rounds, patient)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_plan(plan: Plan, run_dir: Path, debug_logs: bool) -> list[RoundResult]:
    results: list[RoundResult] = []
    for index, fault, system in plan.schedule():
        workdir = run_dir / f"{index:02d}-{fault}-{system}"
        progress(f"round {index}/{plan.rounds}: {system}, {fault} ...")
        result, discarded = retry_setup_once(
            functools.partial(
                run_round, system, fault, index, switch_timeout=plan.switch_timeout, debug_logs=debug_logs
            ),
            workdir,
            progress,
        )
        result.setup_retried = discarded
        progress(f"  {result.describe()}")
        results.append(result)
    return results


def anomalies(results: Sequence[RoundResult]) -> list[str]:
    return [r.describe() for r in results if r.lost or r.demoted is False]


def report(
    args: argparse.Namespace, plan: Plan, results: Sequence[RoundResult], machine: dict[str, Any]
) -> str:
    table = summaries(results)
    rows = [s.cells() for s in table]
    last = last_line(table, results)
    record = {
        "benchmark": "failover",
        "command": command_line("bench.failover"),
        "size": run_size(quick=args.quick, smoke=args.smoke),
        "machine": machine,
        "settings": {
            "systems": list(plan.systems),
            "faults": list(plan.faults),
            "rounds": plan.rounds,
            "replicas": REPLICAS,
            "watchers": 3,
            "quorum": QUORUM,
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "write_rate_per_s": WRITE_RATE,
        },
        "summary": [s.as_json() for s in table],
        "rounds": [r.as_json() for r in results],
        "last_line": last,
    }
    write_results(args.results_dir, record, rows, last)
    print(text_table(rows))
    return last


def with_run_dir(args: argparse.Namespace, body: Callable[[Path], list[RoundResult]]) -> list[RoundResult]:
    """Run ``body`` in a work dir; a temp one is removed only after a clean, unremarkable run."""
    run_dir = args.workdir or Path(tempfile.mkdtemp(prefix="haredis-bench-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    keep = args.workdir is not None
    try:
        results = body(run_dir)
        odd = anomalies(results)
        for line in odd:
            progress(f"anomaly: {line}")
        keep = keep or bool(odd)
        return results
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            progress(f"configs and logs of every round are in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    plan = plan_for(args)
    machine = machine_info()
    try:
        results = with_run_dir(args, lambda run_dir: run_plan(plan, run_dir, args.debug_logs))
    except BenchError as exc:
        progress(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    print(report(args, plan, results, machine), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
