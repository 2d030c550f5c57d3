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
    python -m bench.all --summary-only        # rewrite summary.md after running one benchmark alone

Exit status: 0 when every benchmark exited 0, else 1.
"""

from __future__ import annotations

import argparse
import json
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
    exit_cleanly_on_sigterm,
    machine_info,
    markdown_table,
    size_mark,
    text_table,
)

BENCHMARKS: tuple[str, ...] = ("failover", "switchover", "mass_failover", "timeline", "scale", "sim")
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
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="run nothing: rewrite summary.md from the results there (after running one benchmark alone)",
    )
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


# Where each benchmark keeps its runs: a JSON array of records, except the timeline, which keeps
# only its latest run (one picture).
RESULT_FILES = {
    "failover": "failover.json",
    "switchover": "switchover.json",
    "mass_failover": "mass_failover.json",
    "timeline": "failover-timeline.json",
    "scale": "scale.json",
    "sim": "sim.json",
}
# Arguments that make a run something other than a full-size, like-for-like measurement:
# diagnosis runs (one system only, haredis settings changed, debug logging) and short checks.
DIAGNOSIS = ("--system", "--haredis-setting", "--debug-logs")
SHORT = ("--quick", "--smoke")
NOT_FULL_SIZE = (*SHORT, *DIAGNOSIS)


def is_full_size(record: dict[str, Any]) -> bool:
    """Whether a benchmark's results record holds figures to quote. A record's own ``size``
    says whether it was a short check (``timeline --quick`` is its full run); older records
    and scripts that write no ``size`` are judged by their command line."""
    size = record.get("size")
    if size is not None and size != "full":
        return False
    flags = DIAGNOSIS if size is not None else NOT_FULL_SIZE
    words = str(record.get("command", "")).split()
    return not any(word == flag or word.startswith(flag + "=") for word in words for flag in flags)


def latest_full_size(results_dir: Path, name: str) -> dict[str, Any] | None:
    """The newest full-size record of one benchmark in ``results_dir`` (None if there is none,
    or its file cannot be read)."""
    path = results_dir / RESULT_FILES[name]
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    records = loaded if isinstance(loaded, list) else [loaded]
    full = [r for r in records if isinstance(r, dict) and is_full_size(r)]
    return full[-1] if full else None


def run_size_of(arguments: Sequence[str]) -> str:
    """A ``make bench`` run's size, from the arguments it passed to every benchmark."""
    return "smoke" if "--smoke" in arguments else "quick" if "--quick" in arguments else "full"


FIGURES_HEADERS = ["benchmark", "date (UTC)", "haredis commit", "load at start", "command", "last line"]


def figures_rows(results_dir: Path) -> list[list[str]]:
    rows: list[list[str]] = []
    for name in BENCHMARKS:
        record = latest_full_size(results_dir, name)
        if record is None:
            rows.append([name, "-", "-", "-", "-", "no full-size run recorded"])
            continue
        machine = record.get("machine", {})
        # Not REPO_ROOT: a benchmark may have run from another checkout; its command is what counts.
        command = str(record.get("command", "")).split(" -m ", 1)[-1]
        rows.append(
            [
                name,
                str(machine.get("date", "?")),
                str(machine.get("haredis_commit", "?")),
                str(machine.get("load_average_at_start", "?")),
                f"`python -m {command}`",
                f"`{record.get('last_line', '')}`",
            ]
        )
    return rows


def run_section(record: dict[str, Any]) -> str:
    machine = record["machine"]
    arguments = list(record.get("arguments", []))
    size = str(record.get("size", run_size_of(arguments)))
    rows = [
        [o["name"], str(o["exit_code"]), f"{o['seconds'] / 60:.1f}", f"`{o['last_line']}`"]
        for o in record.get("outcomes", [])
    ]
    return (
        f"\n### {machine['date']}: `make bench` arguments `{' '.join(arguments) or '(none)'}`"
        f"{size_mark(size)}\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}; haredis {machine['haredis_commit']}\n\n"
        f"{markdown_table(HEADERS, rows)}\n"
    )


def write_summary(results_dir: Path, record: dict[str, Any]) -> None:
    """Append this run to ``summary.json``, then write ``summary.md`` afresh."""
    append_json(results_dir / "summary.json", record)
    render_summary(results_dir)


def render_summary(results_dir: Path) -> None:
    """Write ``summary.md`` from the JSON files: the latest full-size figures of every benchmark
    first (a quick run never replaces them), then every ``make bench`` run, quick ones marked
    as such."""
    summary_json = results_dir / "summary.json"
    runs: list[dict[str, Any]] = json.loads(summary_json.read_text()) if summary_json.exists() else []
    text = (
        "# Benchmark figures\n\n"
        "Written by `python -m bench.all` (`make bench`) after every run, from the JSON files beside "
        "it. First the latest full-size run of each benchmark: the figures to quote (runs with "
        f"{', '.join(f'`{flag}`' for flag in NOT_FULL_SIZE)} are never among them). Then every "
        "`make bench` run, newest last: each benchmark's exit status, duration and last line. "
        "Details are in each benchmark's own markdown and JSON.\n\n"
        "## Latest full-size figures\n\n"
        f"{markdown_table(FIGURES_HEADERS, figures_rows(results_dir))}\n\n"
        "## `make bench` runs\n" + "".join(run_section(run) for run in runs)
    )
    tmp = results_dir / "summary.md.tmp"
    tmp.write_text(text)
    tmp.replace(results_dir / "summary.md")


HEADERS = ["benchmark", "exit", "minutes", "last line"]


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args, passed = parse_args(argv)
    if args.summary_only:
        render_summary(args.results_dir)
        print(f"wrote {args.results_dir / 'summary.md'}")
        return 0
    machine = machine_info()
    outcomes: list[Outcome] = []
    try:
        for name in args.benchmarks:
            outcomes.append(run_one(name, passed))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    record = {
        "benchmark": "all",
        "arguments": passed,
        "size": run_size_of(passed),
        "machine": machine,
        "outcomes": [asdict(o) | {"seconds": round(o.seconds, 1)} for o in outcomes],
    }
    write_summary(args.results_dir, record)
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
