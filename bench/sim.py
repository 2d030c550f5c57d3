"""Simulator throughput and soak: how many seeds, and how many simulated hours of a three-watcher
cluster under faults, the deterministic simulator (``tests/sim``) checks per minute of wall
time, and whether a long run finds any invariant violation.

What it does: runs ``python -m tests.sim --seeds N --start S`` once as a child process (every
seed is one randomised cluster, fault schedule and real ``haredis.core`` watchers on a
simulated network and clock; ``tests/sim/world.py``), times it on the wall clock and by the
CPU time of the child processes, and parses the simulator's own last line
``seeds=… violations=… sim_hours=… trace_hash=…``. A failing seed is printed by the simulator
with its replay command; those lines are kept in the results.

Figures: ``seeds_per_min`` = seeds / wall minutes, ``sim_hours_per_min`` = simulated hours /
wall minutes, ``speedup`` = simulated seconds per wall second, ``cpu_s_per_seed``. The
simulator uses one worker process per core (``--jobs``), so the figures scale with the
machine's free cores: the load average at the start is recorded with them.

The default soak starts at seed 1,000,000, far from the seeds ``make test`` runs (0..499), so
every soak checks scenarios the test suite never saw; the run is deterministic, so a given
``--start``/``--seeds`` always checks the same scenarios (the ``trace_hash`` proves it).

Usage, from the repository root::

    python -m bench.sim                 # the soak: 20,000 seeds (about 45 min on 2 idle cores)
    python -m bench.sim --quick         # 300 seeds (under a minute)
    python -m bench.sim --smoke         # 4 seeds, 1 job (the smoke test)

The last line of stdout is
``sim seeds=<n> violations=<n> seeds_per_min=<n> sim_hours_per_min=<n>``; the exit status is 1
when a seed violated an invariant. Each run is appended to ``bench/results/sim.json`` and
``sim.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import (
    REPO_ROOT,
    BenchError,
    append_json,
    append_text,
    command_line,
    exit_cleanly_on_sigterm,
    machine_info,
    markdown_table,
)

DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"
SOAK_SEEDS = 20000
QUICK_SEEDS = 300
SMOKE_SEEDS = 4
SOAK_START = 1_000_000
DEFAULT_TIMEOUT_S = 4 * 3600.0
SIM_LAST_LINE = re.compile(
    r"seeds=(?P<seeds>\d+) violations=(?P<violations>\d+) sim_hours=(?P<sim_hours>\d+(?:\.\d+)?) "
    r"trace_hash=(?P<trace_hash>[0-9a-f]{64})"
)
FAILED_SEED = re.compile(r"seed=\d+ FAILED ")


@dataclass(frozen=True, slots=True)
class SimRun:
    """One simulator run as measured from outside."""

    start: int
    seeds: int
    jobs: int
    violations: int
    sim_hours: float
    trace_hash: str
    wall_s: float
    cpu_s: float
    failed_seeds: tuple[str, ...]

    @property
    def seeds_per_min(self) -> float:
        return self.seeds / self.wall_s * 60.0

    @property
    def sim_hours_per_min(self) -> float:
        return self.sim_hours / self.wall_s * 60.0

    @property
    def speedup(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.sim_hours * 3600.0 / self.wall_s

    @property
    def cpu_s_per_seed(self) -> float:
        return self.cpu_s / self.seeds if self.seeds else float("nan")

    def as_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["failed_seeds"] = list(self.failed_seeds[:50])
        record.update(
            seeds_per_min=round(self.seeds_per_min, 1),
            sim_hours_per_min=round(self.sim_hours_per_min, 2),
            speedup=round(self.speedup, 1),
            cpu_s_per_seed=round(self.cpu_s_per_seed, 4),
            wall_s=round(self.wall_s, 2),
            cpu_s=round(self.cpu_s, 2),
        )
        return record

    def last_line(self) -> str:
        return (
            f"sim seeds={self.seeds} violations={self.violations} "
            f"seeds_per_min={self.seeds_per_min:.0f} sim_hours_per_min={self.sim_hours_per_min:.2f}"
        )


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_simulator(start: int, seeds: int, jobs: int, timeout: float) -> SimRun:
    """Run the simulator once; its stdout is echoed to stderr line by line as it arrives, its
    stderr (timing) passes straight through."""
    argv = [sys.executable, "-m", "tests.sim", "--seeds", str(seeds), "--start", str(start)]
    argv += ["--jobs", str(jobs)]
    cpu_before = children_cpu_s()
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=None, text=True) as child:
        # The deadline is enforced by a timer: reading stdout blocks until the child writes.
        timer = threading.Timer(timeout, lambda: child.send_signal(signal.SIGTERM))
        timer.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                lines.append(line.rstrip("\n"))
                print(f"  {lines[-1]}", file=sys.stderr, flush=True)
            code = child.wait()
        except BaseException:
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(10)
            raise
        finally:
            timer.cancel()
    wall = time.monotonic() - started
    cpu = children_cpu_s() - cpu_before
    match = SIM_LAST_LINE.fullmatch(lines[-1]) if lines else None
    if match is None:
        raise BenchError(
            f"the simulator exited with {code} without its summary line "
            f"(timeout {timeout:.0f}s); its stderr is above"
        )
    return SimRun(
        start=start,
        seeds=int(match["seeds"]),
        jobs=jobs,
        violations=int(match["violations"]),
        sim_hours=float(match["sim_hours"]),
        trace_hash=match["trace_hash"],
        wall_s=wall,
        cpu_s=cpu,
        failed_seeds=tuple(line for line in lines if FAILED_SEED.match(line)),
    )


# -- results ------------------------------------------------------------------------------------

MARKDOWN_HEADER = """# Simulator throughput and soak

Appended by `python -m bench.sim` (see its docstring): one `python -m tests.sim` run per entry,
timed from outside. `seeds/min` and `sim h/min` are per wall-clock minute with one worker per
core; `speedup` is simulated seconds per wall second. The raw runs are in `sim.json`.
"""

HEADERS = ["seeds", "start", "jobs", "violations", "wall s", "seeds/min", "sim h", "sim h/min", "speedup"]


def table_row(run: SimRun) -> list[str]:
    return [
        str(run.seeds),
        str(run.start),
        str(run.jobs),
        str(run.violations),
        f"{run.wall_s:.1f}",
        f"{run.seeds_per_min:.0f}",
        f"{run.sim_hours:.2f}",
        f"{run.sim_hours_per_min:.2f}",
        f"{run.speedup:.0f}x",
    ]


def markdown_report(record: dict[str, Any], run: SimRun) -> str:
    machine = record["machine"]
    failures = "".join(f"- `{line}`\n" for line in run.failed_seeds[:20])
    return (
        f"\n## {machine['date']}: `{record['command']}`\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- haredis {machine['haredis_commit']}; Python {machine['python']}; "
        f"trace_hash {run.trace_hash[:16]}…; CPU {run.cpu_s:.0f} s ({run.cpu_s_per_seed:.3f} s per seed)\n\n"
        f"{markdown_table(HEADERS, [table_row(run)])}\n\n"
        f"{failures}{chr(10) if failures else ''}`{run.last_line()}`\n"
    )


def write_results(results_dir: Path, record: dict[str, Any], run: SimRun) -> None:
    append_json(results_dir / "sim.json", record)
    markdown = results_dir / "sim.md"
    if not markdown.exists():
        append_text(markdown, MARKDOWN_HEADER)
    append_text(markdown, markdown_report(record, run))


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sim", description="Simulator throughput and a long soak of seeds."
    )
    parser.add_argument("--seeds", type=int, default=SOAK_SEEDS, help=f"seeds to run (default {SOAK_SEEDS})")
    parser.add_argument("--start", type=int, default=SOAK_START, help=f"first seed (default {SOAK_START})")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seeds")
    mode.add_argument("--smoke", action="store_true", help=f"{SMOKE_SEEDS} seeds, 1 job (the smoke test)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="give up after this many s")
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are appended"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = QUICK_SEEDS
    if args.smoke:
        args.seeds, args.jobs = SMOKE_SEEDS, 1
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    machine = machine_info()
    print(f"simulating {args.seeds} seeds from {args.start} with {args.jobs} jobs ...", file=sys.stderr)
    try:
        run = run_simulator(args.start, args.seeds, args.jobs, args.timeout)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    record = {
        "benchmark": "sim",
        "command": command_line("bench.sim"),
        "machine": machine,
        "run": run.as_json(),
        "last_line": run.last_line(),
    }
    write_results(args.results_dir, record, run)
    print(markdown_table(HEADERS, [table_row(run)]))
    print(run.last_line(), flush=True)
    return 1 if run.violations else 0


if __name__ == "__main__":
    sys.exit(main())
