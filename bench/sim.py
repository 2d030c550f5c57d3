"""Simulator throughput and soak: how many seeds, and how many simulated hours of a three-watcher
cluster under faults, the deterministic simulator (``tests/sim``) checks per minute of wall
time, and whether a long run finds any invariant violation.

What it does: runs ``python -m tests.sim --seeds C --start S`` as a child process for one
chunk of C seeds after the other (1000 by default; every seed is one randomised cluster, fault
schedule and real ``haredis.core`` watchers on a simulated network and clock;
``tests/sim/world.py``), times each chunk on the wall clock and by the CPU time of the child
processes, and parses the simulator's own last line ``seeds=… violations=… sim_hours=…
trace_hash=…``. Chunks show progress and bound the loss: a run stopped by ``--timeout`` reports
every chunk it finished, marked incomplete. A failing seed is printed by the simulator with
its replay command; those lines are kept in the results.

Figures: ``seeds_per_min`` = seeds / wall minutes, ``sim_hours_per_min`` = simulated hours /
wall minutes, ``speedup`` = simulated seconds per wall second, ``cpu_s_per_seed``. The
simulator uses one worker process per core (``--jobs``), so the figures scale with the
machine's free cores: the load average at the start is recorded with them.

The default soak starts at seed 1,000,000, far from the seeds ``make test`` runs (0..499), so
every soak checks scenarios the test suite never saw; the run is deterministic, so a given
``--start``/``--seeds``/``--chunk`` always checks the same scenarios (the run's ``trace_hash``,
a hash of the chunks' own hashes, proves it).

Usage, from the repository root::

    python -m bench.sim                 # the soak: 20,000 seeds (about 45 min on 2 idle cores)
    python -m bench.sim --quick         # 300 seeds (under a minute)
    python -m bench.sim --smoke         # 4 seeds in 2 chunks, 1 job (the smoke test)

The last line of stdout is
``sim seeds=<n> violations=<n> seeds_per_min=<n> sim_hours_per_min=<n>``; the exit status is 1
when a seed violated an invariant or a chunk failed to run (the chunks before it are still
reported). Each run is appended to ``bench/results/sim.json`` and
``sim.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
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
    json_number,
    machine_info,
    markdown_table,
)

DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"
SOAK_SEEDS = 20000
QUICK_SEEDS = 300
SMOKE_SEEDS = 4
SOAK_START = 1_000_000
DEFAULT_TIMEOUT_S = 4 * 3600.0
DEFAULT_CHUNK = 1000
SIM_LAST_LINE = re.compile(
    r"seeds=(?P<seeds>\d+) violations=(?P<violations>\d+) sim_hours=(?P<sim_hours>\d+(?:\.\d+)?) "
    r"trace_hash=(?P<trace_hash>[0-9a-f]{64})"
)
FAILED_SEED = re.compile(r"seed=\d+ FAILED ")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One ``python -m tests.sim`` run: a contiguous range of seeds, timed from outside."""

    start: int
    seeds: int
    violations: int
    sim_hours: float
    trace_hash: str
    wall_s: float
    cpu_s: float
    failed_seeds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimRun:
    """Every chunk of one soak, summed."""

    start: int
    requested: int
    jobs: int
    chunks: tuple[Chunk, ...]
    error: str = ""  # why the soak stopped early, other than its timeout

    @property
    def seeds(self) -> int:
        return sum(c.seeds for c in self.chunks)

    @property
    def complete(self) -> bool:
        return self.seeds == self.requested

    @property
    def violations(self) -> int:
        return sum(c.violations for c in self.chunks)

    @property
    def sim_hours(self) -> float:
        return sum(c.sim_hours for c in self.chunks)

    @property
    def wall_s(self) -> float:
        return sum(c.wall_s for c in self.chunks)

    @property
    def cpu_s(self) -> float:
        return sum(c.cpu_s for c in self.chunks)

    @property
    def trace_hash(self) -> str:
        """One hash for the whole soak: the same seeds and chunking always give the same one."""
        digest = hashlib.sha256()
        for chunk in self.chunks:
            digest.update(f"{chunk.start}+{chunk.seeds}:{chunk.trace_hash}\n".encode())
        return digest.hexdigest()

    @property
    def failed_seeds(self) -> tuple[str, ...]:
        return tuple(line for c in self.chunks for line in c.failed_seeds)

    @property
    def seeds_per_min(self) -> float:
        return self.seeds / self.wall_s * 60.0 if self.wall_s else math.nan

    @property
    def sim_hours_per_min(self) -> float:
        return self.sim_hours / self.wall_s * 60.0 if self.wall_s else math.nan

    @property
    def speedup(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.sim_hours * 3600.0 / self.wall_s if self.wall_s else math.nan

    @property
    def cpu_s_per_seed(self) -> float:
        return self.cpu_s / self.seeds if self.seeds else math.nan

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "requested": self.requested,
            "seeds": self.seeds,
            "complete": self.complete,
            "jobs": self.jobs,
            "violations": self.violations,
            "sim_hours": round(self.sim_hours, 2),
            "trace_hash": self.trace_hash,
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "seeds_per_min": json_number(self.seeds_per_min),
            "sim_hours_per_min": json_number(self.sim_hours_per_min),
            "speedup": json_number(self.speedup),
            "cpu_s_per_seed": json_number(self.cpu_s_per_seed),
            "failed_seeds": list(self.failed_seeds[:50]),
            "error": self.error,
            "chunks": [asdict(c) | {"failed_seeds": list(c.failed_seeds[:10])} for c in self.chunks],
        }

    def last_line(self) -> str:
        return (
            f"sim seeds={self.seeds} violations={self.violations} "
            f"seeds_per_min={self.seeds_per_min:.0f} sim_hours_per_min={self.sim_hours_per_min:.2f}"
        )


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_chunk(start: int, seeds: int, jobs: int, timeout: float) -> Chunk:
    """Run the simulator once; its stdout is echoed to stderr line by line as it arrives, its
    stderr (timing) passes straight through. Raises BenchError without a summary line (e.g.
    stopped at ``timeout``)."""
    argv = [sys.executable, "-m", "tests.sim", "--seeds", str(seeds), "--start", str(start)]
    argv += ["--jobs", str(jobs)]
    cpu_before = children_cpu_s()
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=None, text=True) as child:
        # The deadline is enforced by a timer: reading stdout blocks until the child writes.
        timer = threading.Timer(max(1.0, timeout), lambda: child.send_signal(signal.SIGTERM))
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
    # The summary is the simulator's last line today; search from the end so that a report
    # line added after it (e.g. a per-feature tally) does not hide it.
    match = next((m for line in reversed(lines) if (m := SIM_LAST_LINE.fullmatch(line))), None)
    if match is None:
        raise BenchError(f"the simulator exited with {code} without its summary line; its stderr is above")
    return Chunk(
        start=start,
        seeds=int(match["seeds"]),
        violations=int(match["violations"]),
        sim_hours=float(match["sim_hours"]),
        trace_hash=match["trace_hash"],
        wall_s=wall,
        cpu_s=cpu,
        failed_seeds=tuple(line for line in lines if FAILED_SEED.match(line)),
    )


def soak(start: int, seeds: int, jobs: int, chunk: int, timeout: float) -> SimRun:
    """Run ``seeds`` seeds in chunks of ``chunk``, so progress shows and a run stopped by
    ``timeout`` still reports every chunk it finished (the one cut short is not counted)."""
    deadline = time.monotonic() + timeout
    done: list[Chunk] = []
    for first in range(start, start + seeds, chunk):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        count = min(chunk, start + seeds - first)
        try:
            done.append(run_chunk(first, count, jobs, remaining))
        except BenchError as exc:
            if time.monotonic() < deadline:
                # Keep what the finished chunks showed; the run is reported as failed.
                return SimRun(start, seeds, jobs, tuple(done), error=f"chunk from seed {first}: {exc}")
            print(f"timeout: stopped inside the chunk from seed {first}", file=sys.stderr)
            break
        run = SimRun(start, seeds, jobs, tuple(done))
        print(
            f"progress: {run.seeds}/{seeds} seeds, {run.violations} violations, "
            f"{run.seeds_per_min:.0f} seeds/min",
            file=sys.stderr,
            flush=True,
        )
    return SimRun(start, seeds, jobs, tuple(done))


# -- results ------------------------------------------------------------------------------------

MARKDOWN_HEADER = """# Simulator throughput and soak

Appended by `python -m bench.sim` (see its docstring): one soak per entry, run as chunks of
`python -m tests.sim` timed from outside. `seeds/min` and `sim h/min` are per wall-clock
minute with one worker per core; `speedup` is simulated seconds per wall second. The raw runs,
chunk by chunk, are in `sim.json`.
"""

HEADERS = ["seeds", "start", "jobs", "violations", "wall s", "seeds/min", "sim h", "sim h/min", "speedup"]


def seeds_cell(run: SimRun) -> str:
    if run.complete:
        return str(run.seeds)
    return f"{run.seeds} of {run.requested} ({'stopped by an error' if run.error else 'timeout'})"


def table_row(run: SimRun) -> list[str]:
    return [
        seeds_cell(run),
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
    if run.error:
        failures += f"- stopped early: {run.error[:500]}\n"
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
    parser.add_argument(
        "--chunk", type=int, default=DEFAULT_CHUNK, help=f"seeds per simulator run (default {DEFAULT_CHUNK})"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="stop after this many seconds, reporting the chunks done (default 4 h)",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are appended"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = QUICK_SEEDS
    if args.smoke:  # two chunks of two seeds: the smoke test also checks that chunks add up
        args.seeds, args.jobs, args.chunk = SMOKE_SEEDS, 1, 2
    if args.seeds < 1 or args.jobs < 1 or args.chunk < 1:
        parser.error("--seeds, --jobs and --chunk must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    machine = machine_info()
    print(f"simulating {args.seeds} seeds from {args.start} with {args.jobs} jobs ...", file=sys.stderr)
    try:
        run = soak(args.start, args.seeds, args.jobs, args.chunk, args.timeout)
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
    if run.error:
        print(f"the soak stopped early: {run.error}", file=sys.stderr)
    return 1 if run.violations or run.error else 0


if __name__ == "__main__":
    sys.exit(main())
