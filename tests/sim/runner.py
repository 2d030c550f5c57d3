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
from dataclasses import dataclass, replace

from .config import SimConfig
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


def run_one(
    seed: int,
    timeline: bool = False,
    toy: bool = False,
    ignore_freeze: bool = False,
) -> SeedReport:
    """One seed; `ignore_freeze` (the control of invariant 14, see SimConfig) is set on the
    generated world without changing anything else the seed draws."""
    factory = None
    if toy:
        from .toy_watcher import toy_factory

        factory = toy_factory()

    def adjust(cfg: SimConfig) -> SimConfig:
        return replace(cfg, ignore_freeze=True)

    result = World(seed, factory=factory, adjust=adjust if ignore_freeze else None).run()
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


def _run_args(args: tuple[int, bool, bool, bool]) -> SeedReport:
    return run_one(*args)


def run_many(
    seeds: Iterable[int],
    jobs: int | None = None,
    *,
    timeline: bool = False,
    toy: bool = False,
    ignore_freeze: bool = False,
) -> Iterator[SeedReport]:
    """Yield one report per seed, in the order of `seeds`, using `jobs` processes."""
    tasks = [(seed, timeline, toy, ignore_freeze) for seed in seeds]
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_args(task)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(min(jobs, len(tasks))) as pool:
        yield from pool.imap(_run_args, tasks, chunksize=1)


def replay_command(seed: int, ignore_freeze: bool = False) -> str:
    flags = " --ignore-freeze" if ignore_freeze else ""
    return f"python -m tests.sim --seeds 1 --start {seed} --trace{flags}"


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


def wait_acked_summary(reports: Iterable[SeedReport]) -> str:
    """One line of invariant 14's coverage over all seeds (see wait_acks)."""
    totals: dict[str, int] = {}
    for r in reports:
        for key, value in r.coverage:
            if key.startswith("wait-acked-") or key in ("freezes", "paused-link-dropped-uncached"):
                totals[key] = totals.get(key, 0) + value
    return (
        f"wait-acked: promotions_checked={totals.get('wait-acked-promotions-checked', 0)} "
        f"promotions_exempt={totals.get('wait-acked-promotions-exempt', 0)} "
        f"(cut={totals.get('wait-acked-exempt-cut', 0)} node={totals.get('wait-acked-exempt-node', 0)} "
        f"drop={totals.get('wait-acked-exempt-net', 0)}) "
        f"promotions_superseded={totals.get('wait-acked-promotions-superseded', 0)} "
        f"lost_exempt_unreachable={totals.get('wait-acked-lost-exempt-unreachable', 0)} "
        f"lost_exempt_unpromotable={totals.get('wait-acked-lost-exempt-unpromotable', 0)} "
        f"lost_exempt_unheld={totals.get('wait-acked-lost-exempt-unheld', 0)} "
        f"lost_unattributed={totals.get('wait-acked-lost-unattributed', 0)} "
        f"freezes={totals.get('freezes', 0)} "
        f"paused_links_dropped_uncached={totals.get('paused-link-dropped-uncached', 0)}"
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
    parser.add_argument(
        "--ignore-freeze",
        action="store_true",
        help="control: the executor skips QueryInfo.freeze (as if the core did not freeze replicas)",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    seeds = range(args.start, args.start + args.seeds)
    reports: list[SeedReport] = []
    violations = 0
    sim_seconds = 0.0
    out = sys.stdout
    for report in run_many(
        seeds,
        args.jobs,
        timeline=args.trace,
        toy=args.toy,
        ignore_freeze=args.ignore_freeze,
    ):
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
            replay = replay_command(report.seed, args.ignore_freeze)
            if args.verbose or args.trace:
                for line in report.violations:
                    out.write(f"VIOLATION {line}\n")
            out.write(
                f"seed={report.seed} FAILED violations={len(report.violations)} "
                f"replay: {replay}  first: {report.violations[0]}\n"
            )
        out.flush()
    elapsed = time.monotonic() - started
    rate = len(reports) / elapsed * 60.0 if elapsed > 0 else 0.0
    print(
        f"elapsed={elapsed:.1f}s seeds_per_minute={rate:.0f} jobs={args.jobs or os.cpu_count()}",
        file=sys.stderr,
    )
    out.write(fencing_summary(reports) + "\n")
    out.write(wait_acked_summary(reports) + "\n")
    out.write(
        f"seeds={len(reports)} violations={violations} sim_hours={sim_seconds / 3600.0:.2f} "
        f"trace_hash={combined_hash(reports)}\n"
    )
    return 1 if violations else 0
