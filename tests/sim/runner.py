"""Run many seeds, in parallel, and report deterministically (results in seed order).

stdout carries only what the seeds determine (so two runs print the same bytes); timing
goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .world import World


@dataclass(frozen=True, slots=True)
class SeedReport:
    seed: int
    config: str
    violations: tuple[str, ...]
    sim_seconds: float
    trace_hash: str
    events: int
    failovers: int
    faults: int
    timeline: tuple[str, ...]
    coverage: tuple[tuple[str, int], ...] = ()


def run_one(seed: int, timeline: bool = False, toy: bool = False) -> SeedReport:
    factory = None
    if toy:
        from .toy_watcher import toy_factory

        factory = toy_factory()
    result = World(seed, factory=factory).run()
    return SeedReport(
        seed=seed,
        config=result.config,
        violations=tuple(v.line() for v in result.violations),
        sim_seconds=result.sim_seconds,
        trace_hash=result.trace_hash,
        events=result.events,
        failovers=result.failovers,
        faults=result.faults,
        timeline=result.timeline if timeline else (),
        coverage=result.coverage,
    )


def _run_args(args: tuple[int, bool, bool]) -> SeedReport:
    return run_one(*args)


def run_many(
    seeds: Iterable[int], jobs: int | None = None, *, timeline: bool = False, toy: bool = False
) -> Iterator[SeedReport]:
    """Yield one report per seed, in the order of `seeds`, using `jobs` processes."""
    tasks = [(seed, timeline, toy) for seed in seeds]
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_args(task)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap(_run_args, tasks, chunksize=1)


def replay_command(seed: int) -> str:
    return f"python -m tests.sim --seeds 1 --start {seed} --trace"


def combined_hash(reports: Iterable[SeedReport]) -> str:
    h = hashlib.sha256()
    for r in reports:
        h.update(f"{r.seed}:{r.trace_hash}\n".encode())
    return h.hexdigest()


def fencing_summary(reports: Iterable[SeedReport]) -> str:
    """One line of write-fencing coverage over all seeds (maxima for the overlap lengths)."""
    totals: dict[str, int] = {}
    for r in reports:
        for key, value in r.coverage:
            if not key.startswith("fenc"):
                continue
            if key.endswith("-ms"):
                totals[key] = max(totals.get(key, 0), value)
            else:
                totals[key] = totals.get(key, 0) + value
    seeds = totals.pop("fencing-on", 0)
    return (
        f"fencing: seeds={seeds} lease_waits={totals.pop('fence-waits', 0)} "
        f"promotions_after_lease_wait={totals.pop('fence-promotions-after-lease-wait', 0)} "
        f"promotions_fencing_old={totals.pop('fence-promotions-fencing-old', 0)} "
        f"old_paused={totals.pop('fence-old-paused', 0)} "
        f"old_pause_failed={totals.pop('fence-old-pause-failed', 0)} "
        f"split_brains_after_promotion={totals.pop('fence-split-brain-after-promotion', 0)} "
        f"max_overlap_after_promotion={totals.pop('fence-max-overlap-after-promotion-ms', 0) / 1000:.3f}s "
        f"max_overlap_other={totals.pop('fence-max-overlap-other-ms', 0) / 1000:.3f}s"
        + "".join(f" {k.removeprefix('fence-')}={v}" for k, v in sorted(totals.items()))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: cpu count)")
    parser.add_argument("--trace", action="store_true", help="print each seed's human timeline")
    parser.add_argument("--verbose", action="store_true", help="print one line per seed")
    parser.add_argument(
        "--toy", action="store_true", help=argparse.SUPPRESS
    )  # the simulator's self-test watcher
    args = parser.parse_args(argv)

    started = time.monotonic()
    seeds = range(args.start, args.start + args.seeds)
    reports: list[SeedReport] = []
    violations = 0
    sim_seconds = 0.0
    out = sys.stdout
    for report in run_many(seeds, args.jobs, timeline=args.trace, toy=args.toy):
        reports.append(report)
        violations += len(report.violations)
        sim_seconds += report.sim_seconds
        if args.trace:
            out.write(f"--- seed {report.seed}: {report.config}\n")
            for line in report.timeline:
                out.write(line + "\n")
        if args.verbose:
            status = f"FAIL({len(report.violations)})" if report.violations else "ok"
            out.write(
                f"seed={report.seed} {status} {report.config} faults={report.faults} "
                f"promotions={report.failovers} events={report.events} hash={report.trace_hash[:16]} "
                f"checked={','.join(f'{k}:{v}' for k, v in report.coverage)}\n"
            )
        if report.violations:
            if args.verbose or args.trace:
                for line in report.violations:
                    out.write(f"VIOLATION {line}\n")
            out.write(
                f"seed={report.seed} FAILED violations={len(report.violations)} "
                f"replay: {replay_command(report.seed)}  first: {report.violations[0]}\n"
            )
        out.flush()
    elapsed = time.monotonic() - started
    rate = len(reports) / elapsed * 60.0 if elapsed > 0 else 0.0
    print(
        f"elapsed={elapsed:.1f}s seeds_per_minute={rate:.0f} jobs={args.jobs or os.cpu_count()}",
        file=sys.stderr,
    )
    out.write(fencing_summary(reports) + "\n")
    out.write(
        f"seeds={len(reports)} violations={violations} sim_hours={sim_seconds / 3600.0:.2f} "
        f"trace_hash={combined_hash(reports)}\n"
    )
    return 1 if violations else 0
