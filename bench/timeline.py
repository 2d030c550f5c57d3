"""Timeline of one failover, event by event, as each watcher announced it: when each saw the
primary down, agreed, voted, was elected and promoted, and when the application's writes
resumed. haredis and Debian's redis-sentinel, one after the other, on identical fresh clusters.

What one run does per system (all on 127.0.0.1):

1. start 1 primary + 2 replicas and 3 watchers (quorum 2, down-after 1000 ms, failover-timeout
   60000 ms; the same setup as ``bench/failover.py``) and wait until every watcher knows the
   primary, both replicas and both peers;
2. subscribe to every watcher's pub/sub with ``PSUBSCRIBE *`` on its RESP port (one thread per
   watcher, each timestamping every message on arrival with the monotonic clock);
3. start the writer of ``bench/failover.py`` (redis-py's Sentinel client, ``SET`` at most 1000
   per second, every attempt recorded) and let it get 500 writes acked;
4. ``kill -9`` the primary; wait until every watcher names the new primary and writes have
   resumed, then listen 1.5 s more for the tail of the failover (``+failover-end``…).

The events drawn (Sentinel's names, which haredis publishes too): ``+sdown`` (this watcher
thinks the primary is down), ``+odown`` (a quorum agrees; both only about the primary, not the
old primary flagged down as a replica after the switch), ``+vote-for-leader`` (a vote cast,
for itself when it is a candidate), ``+elected-leader``, ``+promoted-slave`` and
``+switch-master`` (the new primary is announced). ``writes resumed`` is the ack of the first
write sent after the kill; the red band is the application's write outage (last ack before
the kill to that ack). Times are seconds after the SIGKILL as this process saw the messages
arrive (within a millisecond on loopback).

Outputs in ``bench/results/`` (overwritten each run, since the picture is of one run):
``failover-timeline.png`` (matplotlib, Agg backend), ``failover-timeline.json`` (every raw
event with its time and watcher, the writer's summary, the machine) and
``failover-timeline.md`` (the milestones per watcher).

Usage, from the repository root::

    python -m bench.timeline            # haredis and redis-sentinel (about half a minute)
    python -m bench.timeline --smoke    # haredis only, shorter warm-up and tail (the smoke test)

The last line of stdout is ``timeline haredis_switch_s=<s> haredis_resumed_s=<s>
sentinel_switch_s=<s> sentinel_resumed_s=<s> events=<n>`` (``nan`` for a system not run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from haredis.core.model import Address
from tests.integration.redis_procs import LOOPBACK, RedisBackend, RedisCluster

from .common import (
    REPO_ROOT,
    Attempt,
    BenchError,
    System,
    WatcherClients,
    command_line,
    exit_cleanly_on_sigterm,
    haredis_watchers,
    json_number,
    machine_info,
    markdown_table,
    run_size,
    sentinel_watchers,
    text_table,
    wait_for,
    writing,
)

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 60000
REPLICAS = 2
WRITE_RATE = 1000.0
WARMUP_ACKS = 500
SWITCH_TIMEOUT = 2 * FAILOVER_TIMEOUT_MS / 1000 + 30  # Sentinel retries a failed election that late
TAIL_S = 1.5  # keep listening this long after the switch, for the end of the failover
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"

# What the picture shows, in the order a failover goes through it: channel -> (label, marker, colour).
MILESTONES: dict[str, tuple[str, str, str]] = {
    "+sdown": ("saw down (+sdown)", "v", "tab:orange"),
    "+odown": ("agreed (+odown)", "D", "tab:red"),
    "+vote-for-leader": ("voted (+vote-for-leader)", "o", "tab:purple"),
    "+elected-leader": ("elected (+elected-leader)", "*", "gold"),
    "+promoted-slave": ("promoted (+promoted-slave)", "^", "tab:green"),
    "+switch-master": ("announced (+switch-master)", "s", "tab:blue"),
}


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # seconds after the kill
    watcher: int  # 0-based
    channel: str
    message: str

    @property
    def milestone(self) -> bool:
        """Whether the picture shows it: a milestone channel, and for ``+sdown``/``+odown`` only
        about the primary (``master <name> …``), not the old primary later flagged down as a
        replica (``slave …``)."""
        if self.channel not in MILESTONES:
            return False
        return self.channel not in ("+sdown", "+odown") or self.message.startswith("master ")


class Subscriber(threading.Thread):
    """``PSUBSCRIBE *`` on one watcher; every message is stamped with the monotonic clock when
    it is read (the thread does nothing else, so that is when it arrived)."""

    def __init__(self, index: int, port: int) -> None:
        super().__init__(name=f"subscriber-{index}", daemon=True)
        self.index = index
        self.client = redis.Redis(LOOPBACK, port, socket_timeout=5.0, decode_responses=True, protocol=2)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("*")  # sent now: subscribed before the fault
        self.received: list[tuple[float, str, str]] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                message = self.pubsub.get_message(timeout=0.05)
                if message is not None and message.get("type") == "pmessage":
                    self.received.append((time.monotonic(), str(message["channel"]), str(message["data"])))
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5.0)
        with contextlib.suppress(Exception):
            self.pubsub.close()
            self.client.close()
        if self.is_alive():
            raise BenchError(f"subscriber {self.index} did not stop")
        if self.error is not None:
            raise BenchError(f"subscriber {self.index} failed: {self.error!r}") from self.error


@contextlib.contextmanager
def subscribed(ports: Sequence[int]) -> Iterator[list[Subscriber]]:
    subscribers = [Subscriber(i, port) for i, port in enumerate(ports)]
    for subscriber in subscribers:
        subscriber.start()
    try:
        yield subscribers
    finally:
        for subscriber in subscribers:
            with contextlib.suppress(BenchError):
                subscriber.stop()


@dataclass(slots=True)
class Timeline:
    system: System
    old_primary: str
    new_primary: str = ""
    switch_s: float = math.nan  # first watcher answering GET-MASTER-ADDR-BY-NAME with the new one
    last_ack_before_s: float = math.nan  # negative: before the kill
    resumed_s: float = math.nan
    failed_writes: int = 0
    events: list[Event] = field(default_factory=list)

    def first(self, channel: str, watcher: int | None = None) -> float:
        times = [
            e.at for e in self.events if e.milestone and e.channel == channel and watcher in (None, e.watcher)
        ]
        return min(times) if times else math.nan

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "old_primary": self.old_primary,
            "new_primary": self.new_primary,
            "switch_s": json_number(self.switch_s),
            "writer": {
                "last_ack_before_kill_s": json_number(self.last_ack_before_s),
                "resumed_s": json_number(self.resumed_s),
                "failed_attempts": self.failed_writes,
            },
            "events": [{**asdict(e), "at": round(e.at, 4)} for e in self.events],
        }


def watchers_for(system: System, primary: Address, workdir: Path) -> AbstractContextManager[list[int]]:
    if system == "haredis":
        return haredis_watchers(primary, workdir, down_after_ms=DOWN_AFTER_MS)
    return sentinel_watchers(
        primary, workdir, down_after_ms=DOWN_AFTER_MS, failover_timeout_ms=FAILOVER_TIMEOUT_MS
    )


def writer_summary(attempts: Sequence[Attempt], fault_at: float, timeline: Timeline) -> None:
    before = [a.end for a in attempts if a.ok and a.start < fault_at]
    after = next((a for a in attempts if a.ok and a.start >= fault_at), None)
    if not before or after is None:
        raise BenchError("the writer has no acked write before the kill, or none after it")
    timeline.last_ack_before_s = max(before) - fault_at
    timeline.resumed_s = after.end - fault_at
    timeline.failed_writes = sum(1 for a in attempts if not a.ok and a.start >= fault_at)


def record(
    system: System, workdir: Path, *, warmup_acks: int = WARMUP_ACKS, tail_s: float = TAIL_S
) -> Timeline:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(RedisCluster(REPLICAS, backend=RedisBackend("binary")))
        old = cluster.primary.address
        timeline = Timeline(system, str(old))
        ports = stack.enter_context(watchers_for(system, old, workdir))
        clients = stack.enter_context(WatcherClients(ports))
        clients.wait_ready(old, REPLICAS)
        subscribers = stack.enter_context(subscribed(ports))
        writer = stack.enter_context(writing(ports, WRITE_RATE))
        writer.wait_acked(warmup_acks, 30.0)

        fault_at = time.monotonic()
        cluster.primary.kill()
        new, switched_at = clients.first_switch(old, SWITCH_TIMEOUT)
        timeline.new_primary, timeline.switch_s = str(new), switched_at - fault_at
        clients.wait_agree(60.0, f"every watcher to name the new primary after {old}")
        wait_for(lambda: any(a.ok and a.start >= fault_at for a in writer.attempts), 60.0, "writes to resume")
        time.sleep(tail_s)
        writer.stop()
        for subscriber in subscribers:
            subscriber.stop()
        writer_summary(writer.attempts, fault_at, timeline)
        timeline.events = sorted(
            (
                Event(at - fault_at, s.index, channel, message)
                for s in subscribers
                for at, channel, message in s.received
                if at >= fault_at
            ),
            key=lambda e: (e.at, e.watcher),
        )
        return timeline


# -- the picture --------------------------------------------------------------------------------


def draw(timelines: Sequence[Timeline], path: Path) -> None:
    """One panel per system, one row per watcher plus the writer's row, same time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    end = max(max([t.resumed_s, t.switch_s, *(e.at for e in t.events if e.milestone)]) for t in timelines)
    figure, axes = plt.subplots(
        len(timelines), 1, figsize=(11, 1.2 + 2.1 * len(timelines)), sharex=True, squeeze=False
    )
    for ax, timeline in zip(axes[:, 0], timelines, strict=True):
        watchers = 1 + max((e.watcher for e in timeline.events), default=2)
        rows = [f"watcher {i + 1}" for i in range(watchers)] + ["writer"]
        writer_row = len(rows) - 1
        for lane, (channel, (_label, marker, colour)) in enumerate(MILESTONES.items()):
            # Each kind of event has its own thin lane in a watcher's row, so that two events
            # at the same moment (+sdown and +odown often are) do not hide each other.
            offset = (lane - (len(MILESTONES) - 1) / 2) * 0.11
            points = [
                (e.at, e.watcher + offset) for e in timeline.events if e.milestone and e.channel == channel
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.scatter(
                    xs, ys, marker=marker, s=90, color=colour, edgecolors="black", linewidths=0.5, zorder=3
                )
        ax.barh(
            writer_row,
            timeline.resumed_s - timeline.last_ack_before_s,
            left=timeline.last_ack_before_s,
            height=0.4,
            color="tab:red",
            alpha=0.35,
        )
        ax.scatter(
            [timeline.resumed_s],
            [writer_row],
            marker="P",
            s=110,
            color="tab:green",
            edgecolors="black",
            zorder=3,
        )
        ax.annotate(
            f"writes resumed {timeline.resumed_s:.2f} s",
            (timeline.resumed_s, writer_row),
            xytext=(8, -4),
            textcoords="offset points",
            fontsize=8,
        )
        ax.axvline(0.0, color="black", linewidth=1.2)
        ax.axvline(DOWN_AFTER_MS / 1000, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_ylim(len(rows) - 0.4, -0.6)
        name = "haredis" if timeline.system == "haredis" else "redis-sentinel 7.0"
        ax.set_title(
            f"{name}: kill -9 of the primary at 0; first watcher names the new primary at "
            f"{timeline.switch_s:.2f} s",
            fontsize=10,
            loc="left",
        )
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds after kill -9 of the primary (dashed: down-after = 1 s)")
    axes[-1, 0].set_xlim(-0.3, end + 0.6)
    handles: list[Any] = [
        Line2D(
            [],
            [],
            marker=marker,
            linestyle="",
            color=colour,
            markeredgecolor="black",
            markersize=8,
            label=label,
        )
        for label, marker, colour in MILESTONES.values()
    ]
    handles += [
        Line2D(
            [],
            [],
            marker="P",
            linestyle="",
            color="tab:green",
            markeredgecolor="black",
            markersize=9,
            label="writes resumed",
        ),
        Patch(color="tab:red", alpha=0.35, label="no write acknowledged"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# -- results ------------------------------------------------------------------------------------


def milestone_rows(timeline: Timeline) -> list[list[str]]:
    watchers = sorted({e.watcher for e in timeline.events})

    def cell(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.3f}"

    rows = [
        [timeline.system, f"watcher {w + 1}", *(cell(timeline.first(channel, w)) for channel in MILESTONES)]
        for w in watchers
    ]
    rows.append(
        [
            timeline.system,
            "writer",
            f"last ack {timeline.last_ack_before_s:.3f}",
            "",
            "",
            "",
            "",
            f"resumed {timeline.resumed_s:.3f}",
        ]
    )
    return rows


HEADERS = ["system", "who", *(channel for channel in MILESTONES)]


def last_line(timelines: Sequence[Timeline]) -> str:
    by_system = {t.system: t for t in timelines}

    def figure(system: System, attribute: str) -> str:
        timeline = by_system.get(system)
        return "nan" if timeline is None else f"{getattr(timeline, attribute):.2f}"

    return (
        f"timeline haredis_switch_s={figure('haredis', 'switch_s')} "
        f"haredis_resumed_s={figure('haredis', 'resumed_s')} "
        f"sentinel_switch_s={figure('sentinel', 'switch_s')} "
        f"sentinel_resumed_s={figure('sentinel', 'resumed_s')} "
        f"events={sum(len(t.events) for t in timelines)}"
    )


def write_results(
    results_dir: Path, timelines: Sequence[Timeline], machine: dict[str, Any], last: str, size: str
) -> Path:
    png = results_dir / "failover-timeline.png"
    draw(timelines, png)
    record_json = {
        "benchmark": "timeline",
        "command": command_line("bench.timeline"),
        "size": size,
        "machine": machine,
        "settings": {
            "replicas": REPLICAS,
            "watchers": 3,
            "quorum": 2,
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "write_rate_per_s": WRITE_RATE,
        },
        "timelines": [t.as_json() for t in timelines],
        "last_line": last,
    }
    (results_dir / "failover-timeline.json").write_text(
        json.dumps(record_json, indent=2, allow_nan=False) + "\n"
    )
    rows = [row for t in timelines for row in milestone_rows(t)]
    (results_dir / "failover-timeline.md").write_text(
        "# One failover, event by event\n\n"
        "Written by `python -m bench.timeline` (see its docstring); the picture is "
        "`failover-timeline.png`, the raw events `failover-timeline.json`. Seconds after the "
        "kill -9 of the primary at which each watcher first published each event.\n\n"
        f"- {machine['date']}: `{record_json['command']}`\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}; haredis {machine['haredis_commit']}\n\n"
        f"{markdown_table(HEADERS, rows)}\n\n`{last}`\n"
    )
    return png


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.timeline", description="One failover, event by event, drawn as a PNG."
    )
    parser.add_argument("--smoke", action="store_true", help="haredis only (the smoke test)")
    parser.add_argument(
        "--quick", action="store_true", help="the same as the default run (one failover each)"
    )
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are written")
    parser.add_argument("--workdir", type=Path, help="keep the watchers' configs and logs here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    systems: tuple[System, ...] = ("haredis",) if args.smoke else ("haredis", "sentinel")
    machine = machine_info()
    timelines: list[Timeline] = []
    try:
        with contextlib.ExitStack() as stack:
            if args.workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="haredis-timeline-")))
            else:
                workdir = args.workdir
            for system in systems:
                print(f"{system}: one kill -9 failover ...", file=sys.stderr, flush=True)
                if args.smoke:  # a shorter warm-up and tail: the smoke test checks the plumbing
                    timelines.append(record(system, workdir / system, warmup_acks=100, tail_s=0.5))
                else:
                    timelines.append(record(system, workdir / system))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    last = last_line(timelines)
    size = run_size(quick=False, smoke=args.smoke)  # --quick is the full run: one failover each
    png = write_results(args.results_dir, timelines, machine, last, size)
    rows = [row for t in timelines for row in milestone_rows(t)]
    print(text_table(HEADERS, rows))
    print(f"picture: {png}")
    print(last, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
