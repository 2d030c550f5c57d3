"""Run every benchmark, one after the other, and summarise their last lines: what ``make bench``
runs (``make bench BENCH_ARGS=--quick`` for the short version).

Each benchmark is ``python -m bench.<name> [args]`` in its own process, so one that fails
(or is interrupted) leaves the others' results intact; its own stdout and stderr pass straight
through, and each writes its own markdown and JSON under ``bench/results/``. This driver then
appends a table of every benchmark's exit status, duration and last line (the line each
script documents as its summary) to ``bench/results/summary.md`` and ``summary.json``.

Arguments this driver does not know (``--quick``, ``--results-dir DIR``…) are passed to every
benchmark. Order: the short, machine-sensitive ones first (failover, switchover, mass failover,
timeline, scale), the long CPU-bound simulator soak last.

Usage, from the repository root::

    python -m bench.all                       # everything, full size (the simulator soak is long)
    python -m bench.all --quick               # everything, short
    python -m bench.all --only failover,sim   # a subset, in the order above

Exit status: 0 when every benchmark exited 0, else 1.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import (
    REPO_ROOT,
    append_json,
    append_text,
    exit_cleanly_on_sigterm,
    machine_info,
    markdown_table,
    text_table,
)

BENCHMARKS = ("failover", "switchover", "mass_failover", "timeline", "scale", "sim")
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    exit_code: int
    seconds: float
    last_line: str


def run_one(name: str, passed: Sequence[str]) -> Outcome:
    """Run one benchmark; stdout is echoed as it arrives and its last line kept."""
    argv = [sys.executable, "-m", f"bench.{name}", *passed]
    print(f"\n=== {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    last = ""
    with subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                if line.strip():
                    last = line.strip()
            code = child.wait()
        except BaseException:
            # Interrupted: let the benchmark stop its own processes (it handles SIGTERM).
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
    return Outcome(name, code, time.monotonic() - started, last)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.all",
        description="Run every benchmark; unknown arguments (e.g. --quick) go to each of them.",
    )
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(BENCHMARKS)}")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="results directory")
    args, passed = parser.parse_known_args(argv)
    chosen = BENCHMARKS
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - set(BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = tuple(name for name in BENCHMARKS if name in wanted)
    args.benchmarks = chosen
    if args.results_dir != DEFAULT_RESULTS:
        passed += ["--results-dir", str(args.results_dir)]
    return args, passed


def write_summary(results_dir: Path, record: dict[str, Any], rows: list[list[str]]) -> None:
    append_json(results_dir / "summary.json", record)
    markdown = results_dir / "summary.md"
    if not markdown.exists():
        append_text(
            markdown,
            "# Benchmark runs\n\nAppended by `python -m bench.all` (`make bench`): each benchmark's "
            "exit status, duration and last line. Details are in each benchmark's own file.\n",
        )
    machine = record["machine"]
    append_text(
        markdown,
        f"\n## {machine['date']}: `make bench` arguments `{' '.join(record['arguments']) or '(none)'}`\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}; haredis {machine['haredis_commit']}\n\n"
        f"{markdown_table(HEADERS, rows)}\n",
    )


HEADERS = ["benchmark", "exit", "minutes", "last line"]


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args, passed = parse_args(argv)
    machine = machine_info()
    outcomes: list[Outcome] = []
    try:
        for name in args.benchmarks:
            outcomes.append(run_one(name, passed))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    rows = [[o.name, str(o.exit_code), f"{o.seconds / 60:.1f}", f"`{o.last_line}`"] for o in outcomes]
    record = {
        "benchmark": "all",
        "arguments": passed,
        "machine": machine,
        "outcomes": [asdict(o) | {"seconds": round(o.seconds, 1)} for o in outcomes],
    }
    write_summary(args.results_dir, record, rows)
    print(
        "\n"
        + text_table(
            HEADERS, [[o.name, str(o.exit_code), f"{o.seconds / 60:.1f}", o.last_line] for o in outcomes]
        )
    )
    failed = [o.name for o in outcomes if o.exit_code != 0]
    print(f"bench ran={len(outcomes)} failed={len(failed)}{' (' + ','.join(failed) + ')' if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
