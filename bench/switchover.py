"""Switchover benchmark: a planned switchover of a healthy primary, haredis and Debian's
redis-sentinel side by side, same run, same machine.

What one round does (fresh processes every round, all on 127.0.0.1):

1. start 1 primary + 2 replicas (redis-server) and either 3 haredis watchers or 3
   redis-sentinel processes (quorum 2, down-after 1000 ms, failover-timeout 60000 ms, exactly
   as ``bench.failover``), and wait until every watcher knows the primary, both replicas and
   both peers;
2. start the writer of ``bench.failover`` (redis-py's Sentinel client, ``SET bench:<n> <n>``
   with a new ``n`` per attempt, every attempt recorded) at ~500 writes/s;
3. ask for the switchover: haredis is ``python -m haredis failover mymaster --yes --watcher
   127.0.0.1:<watcher 1>`` (with ``--to <first replica>`` under ``--to-first-replica``; by
   default haredis picks the best replica), run in the background; Sentinel is ``SENTINEL
   FAILOVER mymaster`` sent to sentinel 1;
4. poll every watcher every 10 ms until one names another primary, then until all of them do;
   wait for writes to resume, then (bounded) until the old primary replicates from the new one,
   keep writing a little, stop the writer and read every acked key back from the final primary.

What is measured, per round (seconds are counted from the moment the command was issued):

* ``switch``: the first watcher naming the new primary; ``all named``: every watcher naming it.
* ``unavailable``: from the ack of the last write sent before the command to the ack of the
  first write sent after the switch (the first watcher naming the new primary). It includes the
  time the old primary still accepted writes after the command.
* ``longest gap``: the longest time between two consecutive acked writes that *survived* (are
  on the final primary), from the last one before the command to the end. An acked write that
  was later discarded does not count as a write that happened, so this is the pause an
  application really suffered, whatever the first column says.
* ``lost``: acked writes absent from the final primary after the old primary has been
  converted to a replica of the new one (bounded wait; ``demoted`` counts the rounds where it
  happened).

The last line of stdout is ``switchover haredis_lost=<total> haredis_unavailable_s=<median>
sentinel_lost=<total> sentinel_unavailable_s=<median>`` (``nan`` for a system that did not run
or never completed a round). Medians of ``switch``, ``all named`` and ``unavailable`` are over
every round: a round that never switched or never resumed writes counts as the slowest (``inf``,
``(n failed)`` in the table). Each run is appended to ``bench/results/switchover.json`` and
``switchover.md`` with the machine it ran on. Both systems run interleaved in one session so
that a busy machine slows both alike.

Usage, from the repository root::

    python -m bench.switchover               # 5 rounds per system (a few minutes)
    python -m bench.switchover --rounds 10
    python -m bench.switchover --quick       # 1 round of each
    python -m bench.switchover --smoke       # haredis only, 1 round (the smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from haredis.core.model import Address
from tests.integration.redis_procs import LOOPBACK, RedisBackend, RedisCluster

from . import common
from .common import (
    REPO_ROOT,
    Attempt,
    BenchError,
    Spread,
    System,
    WatcherClients,
    Writer,
    append_json,
    append_text,
    command_line,
    copy_logs,
    exit_cleanly_on_sigterm,
    json_number,
    machine_info,
    missing_keys,
    plain_client,
    retry_setup_once,
    run_size,
    setting_up,
    setup_retry_notes,
    size_mark,
    wait_for,
    writing,
)
from .failover import (
    AGREE_TIMEOUT,
    DEMOTE_TIMEOUT,
    DOWN_AFTER_MS,
    FAILOVER_TIMEOUT_MS,
    QUORUM,
    REPLICAS,
    RESUME_TIMEOUT,
    demoted_to,
    first_resumed,
    proc_at,
    progress,
    redis_logs,
    watchers_for,
)

WRITE_RATE = 500.0
WARMUP_ACKS = 500  # about a second of writes before the command
SWITCH_TIMEOUT = 60.0  # from the command to the first watcher naming another primary
CLI_TIMEOUT = 10.0  # haredis failover --timeout (its default)
CLI_WAIT = 60.0  # the CLI polls for at most its timeout + 10 s; never wait longer than this
AFTER_WRITES = 0.5  # keep writing this long once writes resumed, and after the demotion
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"


@dataclass(slots=True)
class RoundResult:
    system: System
    round: int
    old_primary: str
    load_1m: float = 0.0
    command: str = ""
    command_exit: int | None = None
    command_output: str = ""
    new_primary: str = ""
    final_primary: str = ""
    switch_s: float = float("nan")
    all_named_s: float = float("nan")
    unavailable_s: float = float("nan")
    longest_gap_s: float = float("nan")
    attempts: int = 0
    acked: int = 0
    acked_after_command: int = 0
    lost: int = 0
    lost_keys: list[int] = field(default_factory=list)
    demoted: bool | None = None
    demote_s: float | None = None
    error: str = ""
    setup_retried: str = ""  # why a first try of this round failed before the command, if it did

    @property
    def completed(self) -> bool:
        return not self.error

    def as_json(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("switch_s", "all_named_s", "unavailable_s", "longest_gap_s"):
            record[key] = json_number(record[key])
        record["lost_keys"] = self.lost_keys[:50]
        return record

    def describe(self) -> str:
        text = (
            f"{self.system} #{self.round}: {self.old_primary} -> {self.final_primary or '?'} "
            f"switch={self.switch_s:.2f}s all_named={self.all_named_s:.2f}s "
            f"unavailable={self.unavailable_s:.3f}s longest_gap={self.longest_gap_s:.3f}s "
            f"acked={self.acked}/{self.attempts} lost={self.lost} demoted={self.demoted} "
            f"after {self.demote_s}s command_exit={self.command_exit}"
        )
        return text + (f" ERROR: {self.error}" if self.error else "")


# -- measurements -------------------------------------------------------------------------------


def unavailable_after(attempts: Sequence[Attempt], command_at: float, switched_at: float) -> float:
    """Ack of the first write sent after the switch minus ack of the last one sent before the
    command."""
    before = [a.end for a in attempts if a.ok and a.start < command_at]
    after = first_resumed(attempts, switched_at)
    if not before or after is None:
        raise BenchError("the writer has no acked write before the command, or none after the switch")
    return after.end - max(before)


def longest_gap(attempts: Sequence[Attempt], command_at: float, lost: set[int]) -> float:
    """The longest time between consecutive surviving acks, from the last one sent before the
    command on (an acked write that was discarded later is not a write that happened)."""
    survived = [a for a in attempts if a.ok and a.n not in lost]
    before = [a.end for a in survived if a.start < command_at]
    if not before:
        return math.nan
    ends = [max(before), *(a.end for a in survived if a.start >= command_at)]
    ends.sort()
    return max((b - a for a, b in itertools.pairwise(ends)), default=math.nan)


# -- the two commands ---------------------------------------------------------------------------


@contextlib.contextmanager
def haredis_switchover(
    watcher_port: int, target: Address | None, workdir: Path
) -> Iterator[subprocess.Popen[str]]:
    """``python -m haredis failover mymaster --yes`` in the background (its output in
    ``workdir/cli.log``); killed on exit if it is still running."""
    argv = [
        sys.executable,
        "-m",
        "haredis",
        "failover",
        "mymaster",
        "--yes",
        "--watcher",
        f"{LOOPBACK}:{watcher_port}",
        "--timeout",
        str(CLI_TIMEOUT),
    ]
    if target is not None:
        argv += ["--to", str(target)]
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "cli.log", "w") as log:
        log.write(" ".join(argv) + "\n")
        log.flush()
        popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, text=True
        )
    try:
        yield popen
    finally:
        if popen.poll() is None:
            popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)


def sentinel_switchover(sentinel_port: int) -> str:
    """``SENTINEL FAILOVER mymaster`` to one sentinel; its reply (OK, or the error)."""
    with plain_client(sentinel_port, timeout=5.0) as client:
        try:
            return str(client.execute_command("SENTINEL", "FAILOVER", "mymaster"))
        except redis.RedisError as exc:  # recorded; the round then fails on no switch
            return f"error: {exc}"


# -- one round ----------------------------------------------------------------------------------


def run_round(system: System, index: int, workdir: Path, *, to_first_replica: bool) -> RoundResult:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(RedisCluster(REPLICAS, backend=RedisBackend("binary")))
        stack.callback(lambda: copy_logs(redis_logs(cluster), workdir))
        old = cluster.primary.address
        result = RoundResult(system, index, str(old), round(os.getloadavg()[0], 2))
        ports = stack.enter_context(watchers_for(system, old, workdir, False))
        clients = stack.enter_context(WatcherClients(ports))
        with setting_up():
            clients.wait_ready(old, REPLICAS)
        writer = stack.enter_context(writing(ports, WRITE_RATE))
        with setting_up():
            writer.wait_acked(WARMUP_ACKS, 30.0)
        try:
            measure(system, result, cluster, ports, clients, writer, workdir, to_first_replica, stack)
        except BenchError as exc:
            result.error = str(exc)
        return result


def measure(
    system: System,
    result: RoundResult,
    cluster: RedisCluster,
    ports: Sequence[int],
    clients: WatcherClients,
    writer: Writer,
    workdir: Path,
    to_first_replica: bool,
    stack: contextlib.ExitStack,
) -> None:
    old = cluster.primary.address
    cli: subprocess.Popen[str] | None = None
    command_at = time.monotonic()
    if system == "haredis":
        target = cluster.replicas[0].address if to_first_replica else None
        cli = stack.enter_context(haredis_switchover(ports[0], target, workdir))
        result.command = "haredis failover mymaster --yes" + (f" --to {target}" if target else "")
    else:
        result.command = "SENTINEL FAILOVER mymaster"
        result.command_output = sentinel_switchover(ports[0])
        result.command_exit = 0 if result.command_output in ("True", "OK") else 1

    try:
        new, switched_at = clients.first_switch(old, SWITCH_TIMEOUT)
        result.switch_s = switched_at - command_at
        result.new_primary = str(new)
        agreed = clients.wait_agree(AGREE_TIMEOUT, f"every watcher to name the new primary after {old}")
        result.all_named_s = time.monotonic() - command_at
        if agreed == old:
            raise BenchError(f"the watchers named {new}, then went back to the old primary {old}")
        wait_for(lambda: first_resumed(writer.attempts, switched_at), RESUME_TIMEOUT, "writes to resume")
        time.sleep(AFTER_WRITES)
        try:
            wait_for(
                lambda: demoted_to(cluster.primary, agreed), DEMOTE_TIMEOUT, f"{old} to follow {agreed}", 0.05
            )
            result.demoted = True
            result.demote_s = round(time.monotonic() - command_at, 2)
        except BenchError:
            result.demoted = False
        time.sleep(AFTER_WRITES)
    finally:
        if cli is not None:
            try:
                result.command_exit = cli.wait(timeout=CLI_WAIT)
            except subprocess.TimeoutExpired:
                cli.kill()
                result.command_exit = None
            with contextlib.suppress(OSError):
                result.command_output = (workdir / "cli.log").read_text(errors="replace").strip()
        writer.stop()
        result.attempts = len(writer.attempts)
        result.acked = writer.acked
        result.acked_after_command = sum(1 for a in writer.attempts if a.ok and a.start >= command_at)

    final = clients.wait_agree(AGREE_TIMEOUT, "every watcher to name the final primary")
    result.final_primary = str(final)
    result.lost_keys = missing_keys(proc_at(cluster, final), writer.attempts)
    result.lost = len(result.lost_keys)
    result.unavailable_s = unavailable_after(writer.attempts, command_at, switched_at)
    result.longest_gap_s = longest_gap(writer.attempts, command_at, set(result.lost_keys))
    if system == "haredis" and result.command_exit != 0:
        raise BenchError(f"haredis failover exited with {result.command_exit}: {result.command_output}")


# -- summary ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    system: System
    rounds: int
    completed: int
    switch: Spread
    all_named: Spread
    unavailable: Spread
    longest_gap: Spread
    lost: Spread
    lost_total: int
    demoted: str

    @classmethod
    def of(cls, system: System, results: Sequence[RoundResult]) -> Summary:
        mine = [r for r in results if r.system == system]
        done = [r for r in mine if r.completed]
        demotions = [r.demoted for r in mine if r.demoted is not None]
        return cls(
            system,
            len(mine),
            len(done),
            # Over every round: one that never switched (or never resumed writes) counts as the
            # slowest (inf) rather than leaving a median of fewer rounds than were asked for.
            Spread.over_rounds([r.switch_s for r in mine]),
            Spread.over_rounds([r.all_named_s for r in mine]),
            Spread.over_rounds([r.unavailable_s for r in mine]),
            Spread.of([r.longest_gap_s for r in done]),
            Spread.of([float(r.lost) for r in done]),
            sum(r.lost for r in mine),
            f"{sum(demotions)}/{len(demotions)}" if demotions else "-",
        )

    def cells(self) -> list[str]:
        return [
            self.system,
            f"{self.completed}/{self.rounds}",
            self.switch.render(),
            self.all_named.render(),
            self.unavailable.render(3),
            self.longest_gap.render(3),
            f"{self.lost.render(0)} (total {self.lost_total})" if self.lost.count else "nan",
            self.demoted,
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "rounds": self.rounds,
            "completed": self.completed,
            "switch_s": self.switch.as_json(),
            "all_named_s": self.all_named.as_json(),
            "unavailable_s": self.unavailable.as_json(),
            "longest_gap_s": self.longest_gap.as_json(),
            "lost": self.lost.as_json(),
            "lost_total": self.lost_total,
            "demoted": self.demoted,
        }


HEADERS = [
    "system",
    "completed",
    "switch s",
    "all named s",
    "unavailable s",
    "longest gap s",
    "lost acked writes",
    "demoted",
]

MARKDOWN_HEADER = """# Switchover benchmark: haredis vs redis-sentinel

Appended by `python -m bench.switchover` (see its docstring). A planned switchover of a healthy
primary under a writer: `haredis failover mymaster --yes` vs `SENTINEL FAILOVER mymaster`. Per
system: median [min-max] over the rounds of `switch` (command to the first watcher naming the
new primary), `all named` (to every watcher naming it), `unavailable` (last ack before the
command to the first ack of a write sent after the switch), `longest gap` (longest time between
consecutive acked writes that survived, from the command on) and acked writes lost once the old
primary follows the new one; `demoted` counts rounds where the old primary became a replica of
the new one. The raw rounds are in `switchover.json`.
"""


def summaries(systems: Sequence[System], results: Sequence[RoundResult]) -> list[Summary]:
    return [Summary.of(s, results) for s in ("haredis", "sentinel") if s in systems]


def text_table(rows: Sequence[Sequence[str]]) -> str:
    return common.text_table(HEADERS, rows)


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    return common.markdown_table(HEADERS, rows)


def last_line(table: Sequence[Summary]) -> str:
    by_system = {s.system: s for s in table}
    parts = ["switchover"]
    for system in ("haredis", "sentinel"):
        summary = by_system.get(system)
        if summary is None or summary.lost.count == 0:
            parts += [f"{system}_lost=nan", f"{system}_unavailable_s=nan"]
            continue
        median = summary.unavailable.median
        parts += [
            f"{system}_lost={summary.lost_total}",
            f"{system}_unavailable_s={'nan' if math.isnan(median) else f'{median:.3f}'}",
        ]
    return " ".join(parts)


def markdown_report(record: dict[str, Any], rows: Sequence[Sequence[str]], last: str) -> str:
    machine = record["machine"]
    uncommitted = ", ".join(machine["haredis_uncommitted"]) or "none"
    failed = [r for r in record["rounds"] if r["error"]]
    failures = "".join(f"- round failed: {r['system']} #{r['round']}: {r['error']}\n" for r in failed)
    return (
        f"\n## {machine['date']}: `{record['command']}`{size_mark(record['size'])}\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- {machine['redis_server']}; haredis {machine['haredis_commit']} "
        f"(uncommitted changes: {uncommitted}); redis-py {machine['redis_py']}\n"
        f"- per round: fresh 1 primary + {REPLICAS} replicas and 3 watchers, quorum {QUORUM}, "
        f"down-after {DOWN_AFTER_MS} ms, failover-timeout {FAILOVER_TIMEOUT_MS} ms; writer through "
        f"redis-py's Sentinel client at <= {WRITE_RATE:.0f} SET/s; haredis: "
        f"`{record['settings']['haredis_command']}`, Sentinel: `SENTINEL FAILOVER mymaster`\n"
        f"- cells: median [min-max], seconds from the command; switch, all named and unavailable over "
        f"every round (a failed one counts as inf), longest gap and lost over the completed rounds\n"
        f"{failures}{setup_retry_notes(record['rounds'])}\n"
        f"{markdown_table(rows)}\n\n`{last}`\n"
    )


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.switchover",
        description="Planned switchover under writes: haredis failover vs SENTINEL FAILOVER.",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per system (default 5)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="1 round per system")
    mode.add_argument("--smoke", action="store_true", help="haredis only, 1 round (for the smoke test)")
    parser.add_argument(
        "--to-first-replica",
        action="store_true",
        help="haredis: --to the first replica (default: haredis picks the best one)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are appended"
    )
    parser.add_argument("--workdir", type=Path, help="keep every round's configs and logs here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def schedule(systems: Sequence[System], rounds: int) -> Iterator[tuple[int, System]]:
    """Rounds interleaved, the systems' order alternating, so load drifts hit both alike."""
    for index in range(1, rounds + 1):
        order = systems if index % 2 else tuple(reversed(systems))
        for system in order:
            yield index, system


def run_all(
    systems: Sequence[System], rounds: int, run_dir: Path, to_first_replica: bool
) -> list[RoundResult]:
    results: list[RoundResult] = []
    for index, system in schedule(systems, rounds):
        workdir = run_dir / f"{index:02d}-{system}"
        progress(f"round {index}/{rounds}: {system} ...")
        result, discarded = retry_setup_once(
            functools.partial(run_round, system, index, to_first_replica=to_first_replica), workdir, progress
        )
        result.setup_retried = discarded
        progress(f"  {result.describe()}")
        if result.command_output:
            progress("  command output: " + result.command_output.replace("\n", "\n    "))
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    systems: tuple[System, ...] = ("haredis",) if args.smoke else ("haredis", "sentinel")
    rounds = 1 if args.smoke or args.quick else args.rounds
    machine = machine_info()
    run_dir = args.workdir or Path(tempfile.mkdtemp(prefix="haredis-switchover-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    keep = args.workdir is not None
    try:
        results = run_all(systems, rounds, run_dir, args.to_first_replica)
    except BenchError as exc:
        keep = True
        progress(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        keep = True
        progress("interrupted")
        return 130
    finally:
        if keep:
            progress(f"configs and logs of every round are in {run_dir}")
    odd = [r for r in results if r.error or r.lost or r.demoted is False]
    for r in odd:
        progress(f"anomaly: {r.describe()}")
    if odd:
        progress(f"configs and logs of every round are in {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)

    table = summaries(systems, results)
    rows = [s.cells() for s in table]
    last = last_line(table)
    record = {
        "benchmark": "switchover",
        "command": command_line("bench.switchover"),
        "size": run_size(quick=args.quick, smoke=args.smoke),
        "machine": machine,
        "settings": {
            "systems": list(systems),
            "rounds": rounds,
            "replicas": REPLICAS,
            "watchers": 3,
            "quorum": QUORUM,
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "write_rate_per_s": WRITE_RATE,
            "haredis_command": "haredis failover mymaster --yes --watcher 127.0.0.1:<w1>"
            + (" --to <first replica>" if args.to_first_replica else ""),
            "sentinel_command": "SENTINEL FAILOVER mymaster",
        },
        "summary": [s.as_json() for s in table],
        "rounds": [r.as_json() for r in results],
        "last_line": last,
    }
    append_json(args.results_dir / "switchover.json", record)
    markdown = args.results_dir / "switchover.md"
    if not markdown.exists():
        append_text(markdown, MARKDOWN_HEADER)
    append_text(markdown, markdown_report(record, rows, last))
    print(text_table(rows))
    print(last, flush=True)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
