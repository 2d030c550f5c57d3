"""``python -m tests.chaos --schedules N --seed S [--scenario NAME ...] [--fencing on|off] [--out F]``

Runs the named scenarios (all of them by default; ``--scenario none`` for none;
``--scenario schedule:<seed>`` replays one random schedule), then N random schedules whose
seeds derive from S. Each prints one result line and its replay command. The LAST line is::

    schedules=N violations=V lost_wait_acked=W lost_plain=P split_brain_max_s=B

where N is the number of random schedules and V, W, P, B cover every scenario and schedule
run (sums, and the maximum for B). A JSON summary with every result goes to ``--out``.
Root only: it builds network namespaces and iptables rules (see rig.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import harness
from .checker import Result
from .harness import Session
from .rig import RigConfig, environment_problem, install_signal_handlers, remove_leftovers
from .scenarios import SCENARIOS
from .schedule import make_schedule, schedule_body

DEFAULT_OUT = "bench/results/chaos.json"
DEFAULT_KEEP = os.path.join(tempfile.gettempdir(), "haredis-chaos-failures")


def schedule_seed(seed: int, index: int) -> int:
    return seed * 1000 + index


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[1])
    p.add_argument("--schedules", type=int, default=20, help="random schedules after the scenarios")
    p.add_argument("--seed", type=int, default=1, help="seed the random schedules derive from")
    p.add_argument(
        "--scenario",
        action="append",
        default=None,
        help=f"a scenario to run (repeatable): {', '.join(SCENARIOS)}, all (default), none, schedule:<seed>",
    )
    p.add_argument("--fencing", choices=("on", "off"), default="off")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON summary (default {DEFAULT_OUT})")
    p.add_argument(
        "--keep-logs",
        default=DEFAULT_KEEP,
        help=f"copy the logs of schedules with violations into this directory (default {DEFAULT_KEEP})",
    )
    return p.parse_args(argv)


def _replay(name: str, fencing: str) -> str:
    return f"python -m tests.chaos --schedules 0 --scenario {name} --fencing {fencing}"


def plan(args: argparse.Namespace) -> list[tuple[str, Callable[[Session], None]]]:
    chosen = args.scenario or ["all"]
    runs: list[tuple[str, Callable[[Session], None]]] = []
    for name in chosen:
        if name == "all":
            runs += list(SCENARIOS.items())
        elif name == "none":
            continue
        elif name.startswith("schedule:"):
            runs.append((name, schedule_body(int(name.split(":", 1)[1]))))
        elif name in SCENARIOS:
            runs.append((name, SCENARIOS[name]))
        else:
            raise SystemExit(
                f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}, all, none, schedule:<seed>"
            )
    for i in range(args.schedules):
        seed = schedule_seed(args.seed, i)
        runs.append((f"schedule:{seed}", schedule_body(seed)))
    return runs


def main(argv: list[str] | None = None) -> int:
    try:
        return run_all(parse_args(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt as exc:
        print(f"chaos: interrupted ({exc or 'Ctrl-C'}); every namespace and process was removed", flush=True)
        return 130


def run_all(args: argparse.Namespace) -> int:
    problem = environment_problem()
    if problem is not None:
        print(f"chaos: cannot run: {problem}", file=sys.stderr)
        return 2
    install_signal_handlers()
    removed = remove_leftovers()
    if removed:
        print(f"removed leftover namespaces of dead runs: {' '.join(removed)}", flush=True)
    config = RigConfig(fencing=args.fencing == "on")
    keep = Path(args.keep_logs) if args.keep_logs else None
    results: list[Result] = []
    began = time.monotonic()
    for name, body in plan(args):
        if name.startswith("schedule:"):
            steps = make_schedule(int(name.split(":", 1)[1]))
            print(f"--- {name}: " + "; ".join(step.describe() for step in steps), flush=True)
        else:
            print(f"--- {name}", flush=True)
        result = harness.run(name, body, config, _replay(name, args.fencing), keep)
        results.append(result)
        status = "ok" if not result.violations else f"VIOLATIONS={len(result.violations)}"
        print(
            f"{name}: {status} final_primary={result.final_primary} failovers={result.failovers} "
            f"writes={result.writes} acked={result.acked} wait_acked={result.wait_acked} "
            f"lost_wait_acked={result.lost_wait_acked} (destroyed {result.lost_wait_acked_destroyed}) "
            f"lost_plain={result.lost_plain} "
            f"split_brain_s={result.split_brain_s} blind_promotions={result.blind_promotions} "
            f"({result.seconds}s)",
            flush=True,
        )
        for v in result.violations:
            print(f"  violation: {v}", flush=True)
        for n in result.notes:
            print(f"  note: {n.rstrip()}", flush=True)
        if result.violations:
            print("  events:\n    " + "\n    ".join(result.events), flush=True)
            if keep is not None:
                print(f"  logs: {keep / name.replace(':', '-')}", flush=True)
        print(f"  replay: {result.replay}", flush=True)
    summary = {
        "schedules": args.schedules,
        "seed": args.seed,
        "fencing": args.fencing == "on",
        "violations": sum(len(r.violations) for r in results),
        "lost_wait_acked": sum(r.lost_wait_acked for r in results),
        "lost_plain": sum(r.lost_plain for r in results),
        "split_brain_max_s": max((r.split_brain_s for r in results), default=0.0),
        # The rule: 0 lost WAIT-confirmed writes whenever every promotion saw every
        # replica. Runs with a blind promotion (a replica cut off from the leader) are exempt.
        "runs_seeing_all": sum(1 for r in results if r.blind_promotions == 0),
        # Writes both of whose copies the schedule itself wiped (two nodes restarted empty
        # after the ack) are reported apart: no promotion could have kept them.
        "lost_wait_acked_seeing_all": sum(
            r.lost_wait_acked - r.lost_wait_acked_destroyed for r in results if r.blind_promotions == 0
        ),
        "lost_wait_acked_destroyed": sum(r.lost_wait_acked_destroyed for r in results),
        "seconds": round(time.monotonic() - began, 1),
        "results": [r.to_json() for r in results],
    }
    print(
        f"wait_acked_rule: runs_seeing_all={summary['runs_seeing_all']} "
        f"lost_wait_acked_seeing_all={summary['lost_wait_acked_seeing_all']} "
        f"runs_with_blind_promotion={len(results) - summary['runs_seeing_all']} "
        f"lost_wait_acked_destroyed={summary['lost_wait_acked_destroyed']}",
        flush=True,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"schedules={summary['schedules']} violations={summary['violations']} "
        f"lost_wait_acked={summary['lost_wait_acked']} lost_plain={summary['lost_plain']} "
        f"split_brain_max_s={summary['split_brain_max_s']}",
        flush=True,
    )
    # The figures are the result (the last line stays last: no make error line after it).
    return 0


if __name__ == "__main__":
    sys.exit(main())
