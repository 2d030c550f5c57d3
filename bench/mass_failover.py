"""Mass failover benchmark: the host holding the primaries of many groups dies. haredis and
Debian's redis-sentinel side by side, same run, same machine, identical clusters.

What one round does (fresh processes every round, all on 127.0.0.1):

1. start K groups (``g001``…), each 1 primary + 1 replica (real redis-server processes), and
   3 watchers of one system monitoring all K groups: 3 haredis watchers (one config with K
   ``[[primaries]]`` tables) or 3 redis-sentinel processes (K ``sentinel monitor`` lines);
   quorum 2, down-after 1000 ms and failover-timeout 60000 ms for both, everything else at each
   system's defaults; wait until every watcher knows every primary, its replica and its 2 peers;
2. ``kill -9`` every primary at once (one SIGKILL after the other, microseconds apart; the
   spread is recorded);
3. poll, every ~50 ms and bounded in time, the ``ROLE`` of every replica not yet promoted and
   every watcher's ``SENTINEL GET-MASTER-ADDR-BY-NAME`` for every group not yet agreed
   (pipelined per watcher) until every replica is a primary and every watcher names it.

What is measured, per round, in seconds from the first SIGKILL (a poll observes a change at
most one poll cycle, ~50-80 ms, after it happened):

* ``all_switched``: until every group has a new primary: its replica answers ``ROLE`` as
  master *and* at least one watcher names it, i.e. what a client asking its watchers gets;
* ``all_agreed``: until all 3 watchers name the new primary of every group;
* ``first_switched`` / ``median_switched``: the same as ``all_switched`` for the first group
  and the median group, which shows how serial the K failovers were;
* ``switched``: how many of the K groups switched before the round's deadline.

Where the time goes, from the watchers' own logs (both systems log Sentinel's events with
millisecond timestamps): per group, the first ``+sdown`` (of the primary), ``+odown``,
``+try-failover``, ``+elected-leader``, ``+promoted-slave`` and ``+switch-master`` of any
watcher, in seconds from the kill, and how many ``+try-failover`` the three watchers logged
for it (1 = the first election won; more = split or lost votes). Per round: the median and
the last group; in the summary, the median over the rounds of each.

How to read it: per system, median [min-max] over the rounds; a round in which some group
never switched counts as the slowest one (``inf``, and ``(n failed)`` in the table), so the
median is always one over every round asked for. The goal for haredis is ``all_switched``
within ``down_after`` + 2 s. The last line of stdout is
``mass k=<K> all_switched_s=<haredis median> down_after_s=<s> sentinel_all_switched_s=<median>``
(``nan`` for a system that did not run, ``inf`` when the median round never completed). Each
run is appended to ``bench/results/mass_failover.json`` and ``mass_failover.md`` with the
machine it ran on.

Usage, from the repository root::

    python -m bench.mass_failover              # K=50, 3 rounds per system (a few minutes)
    python -m bench.mass_failover --quick      # K=20, 1 round per system
    python -m bench.mass_failover --smoke      # haredis only, K=3, 1 round, 15 s bound (the smoke test)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from haredis.core.model import Address
from tests.integration.haredis_procs import HaredisProc, HaredisProcError
from tests.integration.redis_procs import LOOPBACK, RedisBackend, RedisCluster, RedisProcError, free_port

from .common import (
    REPO_ROOT,
    BenchError,
    SentinelProc,
    Spread,
    System,
    append_json,
    append_text,
    command_line,
    copy_logs,
    exit_cleanly_on_sigterm,
    json_number,
    machine_info,
    markdown_table,
    plain_client,
    retry_setup_once,
    run_size,
    setting_up,
    setup_retry_notes,
    size_mark,
    text_table,
    wait_for,
)

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 60000
QUORUM = 2
WATCHERS = 3
GOAL_MARGIN_S = 2.0  # the goal: every group switched within down_after + this
POLL_INTERVAL = 0.05
START_TIMEOUT = 60.0
READY_TIMEOUT = 90.0  # Sentinel discovers its peers per primary by hello messages (every 2 s)
# Sentinel retries a failed election of a primary only 2 x failover-timeout later: wait that long.
SWITCH_TIMEOUT = 2 * FAILOVER_TIMEOUT_MS / 1000 + 60
SMOKE_SWITCH_TIMEOUT = 15.0
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results"


@dataclass(frozen=True, slots=True)
class Group:
    """One monitored primary with its single replica."""

    name: str
    cluster: RedisCluster

    @property
    def primary(self) -> Address:
        return self.cluster.primary.address

    @property
    def replica(self) -> Address:
        return self.cluster.replicas[0].address


def group_names(k: int) -> list[str]:
    return [f"g{i:03d}" for i in range(1, k + 1)]


@contextlib.contextmanager
def redis_groups(k: int) -> Iterator[list[Group]]:
    """K fresh 1 primary + 1 replica clusters; all stopped on exit."""
    with contextlib.ExitStack() as stack:
        groups = [
            Group(name, stack.enter_context(RedisCluster(1, backend=RedisBackend("binary"))))
            for name in group_names(k)
        ]
        yield groups


# -- the watchers of each system ----------------------------------------------------------------


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def haredis_config(
    name: str,
    port: int,
    peers: Sequence[int],
    workdir: Path,
    groups: Sequence[Group],
    extra_watcher: Sequence[str] = (),
) -> str:
    """A watcher config monitoring every group; the settings both systems share are set, the
    rest is left at haredis's documented defaults (as in bench/failover.py). ``extra_watcher``
    lines (``key = value``) go to ``[watcher]``: a diagnosis aid, never used by default."""
    peer_list = ", ".join(_toml_str(f"{LOOPBACK}:{p}") for p in peers)
    lines = [
        "[watcher]",
        f"name = {_toml_str(name)}",
        f'bind = "{LOOPBACK}"',
        f"port = {port}",
        "metrics_port = 0",
        f"peers = [{peer_list}]",
        f"data_dir = {_toml_str(str(workdir / f'{name}-data'))}",
        f"secret_file = {_toml_str(str(workdir / 'secret'))}",
        *extra_watcher,
    ]
    for group in groups:
        lines += [
            "",
            "[[primaries]]",
            f'name = "{group.name}"',
            f'address = "{group.primary.host}:{group.primary.port}"',
            f"quorum = {QUORUM}",
            f"down_after_ms = {DOWN_AFTER_MS}",
            f"failover_timeout_ms = {FAILOVER_TIMEOUT_MS}",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def haredis_mass_watchers(
    groups: Sequence[Group], workdir: Path, extra_watcher: Sequence[str] = ()
) -> Iterator[list[int]]:
    """Three ``python -m haredis run`` watchers of every group; yields their RESP ports."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "secret").write_text("bench-secret-of-enough-length\n")
    ports = [free_port() for _ in range(WATCHERS)]
    procs = [
        HaredisProc(
            f"w{i + 1}",
            port,
            workdir,
            haredis_config(
                f"w{i + 1}", port, [p for p in ports if p != port], workdir, groups, extra_watcher
            ),
        )
        for i, port in enumerate(ports)
    ]
    try:
        for proc in procs:
            proc.start(wait=False)
        for proc in procs:
            # Starting to watch K primaries (2K connections, INFO of each) keeps a watcher busy
            # for a while on a loaded machine: the default 15 s is for one primary.
            proc.wait_ready(START_TIMEOUT)
        yield ports
    finally:
        for proc in procs:
            proc.close()


class MassSentinelProc(SentinelProc):
    """A redis-sentinel monitoring every group (``SentinelProc`` monitors one)."""

    def __init__(self, workdir: Path, groups: Sequence[Group]) -> None:
        super().__init__(
            workdir,
            groups[0].primary,
            quorum=QUORUM,
            down_after_ms=DOWN_AFTER_MS,
            failover_timeout_ms=FAILOVER_TIMEOUT_MS,
        )
        self.groups = list(groups)

    def config_text(self) -> str:
        lines = [
            f"port {self.port}",
            f"bind {LOOPBACK}",
            "daemonize no",
            "protected-mode no",
            f'dir "{self.workdir}"',
            f'logfile "{self.log_path}"',
            "sentinel resolve-hostnames no",
        ]
        for group in self.groups:
            lines += [
                f"sentinel monitor {group.name} {group.primary.host} {group.primary.port} {QUORUM}",
                f"sentinel down-after-milliseconds {group.name} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {group.name} {FAILOVER_TIMEOUT_MS}",
            ]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def sentinel_mass_watchers(groups: Sequence[Group], workdir: Path) -> Iterator[list[int]]:
    procs = [MassSentinelProc(workdir / f"s{i + 1}", groups) for i in range(WATCHERS)]
    try:
        for proc in procs:
            proc.start()
        yield [proc.port for proc in procs]
    finally:
        for proc in procs:
            proc.close()


def watchers_for(
    system: System, groups: Sequence[Group], workdir: Path, extra_watcher: Sequence[str] = ()
) -> AbstractContextManager[list[int]]:
    if system == "haredis":
        return haredis_mass_watchers(groups, workdir, extra_watcher)
    return sentinel_mass_watchers(groups, workdir)


# -- asking the watchers ------------------------------------------------------------------------


def _pairs(reply: Sequence[Any]) -> dict[str, str]:
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


class MassProbe:
    """Persistent clients to every watcher and every group's replica."""

    def __init__(self, ports: Sequence[int], groups: Sequence[Group]) -> None:
        self.groups = list(groups)
        self.watchers = [plain_client(port, 1.0) for port in ports]
        self.replicas = [plain_client(group.replica.port, 0.5) for group in groups]

    def _watcher_ready(self, client: redis.Redis) -> bool:
        masters = {m["name"]: m for m in map(_pairs, client.execute_command("SENTINEL", "MASTERS"))}
        for group in self.groups:
            master = masters.get(group.name)
            if master is None or Address(master.get("ip", ""), int(master.get("port", 0))) != group.primary:
                return False
            if master.get("flags") != "master" or int(master.get("num-slaves", -1)) != 1:
                return False
            if int(master.get("num-other-sentinels", -1)) != WATCHERS - 1:
                return False
        pipe = client.pipeline(transaction=False)
        for group in self.groups:
            pipe.execute_command("SENTINEL", "REPLICAS", group.name)
            pipe.execute_command("SENTINEL", "SENTINELS", group.name)
        flags = [_pairs(entry).get("flags") for reply in pipe.execute() for entry in reply]
        return all(flag in ("slave", "sentinel") for flag in flags)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        wait_for(
            lambda: all(self._watcher_ready(c) for c in self.watchers),
            timeout,
            f"every watcher to know all {len(self.groups)} primaries, their replicas and its peers",
            0.1,
        )

    def promoted(self, index: int) -> bool:
        """Whether this group's replica answers ROLE as a primary (an error counts as no)."""
        try:
            return str(self.replicas[index].execute_command("ROLE")[0]) == "master"
        except redis.RedisError:
            return False

    def named(self, watcher: int, indexes: Sequence[int]) -> list[Address | None]:
        """This watcher's GET-MASTER-ADDR-BY-NAME for the groups at ``indexes`` (None on an
        error), in one pipeline."""
        pipe = self.watchers[watcher].pipeline(transaction=False)
        for index in indexes:
            pipe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.groups[index].name)
        try:
            replies = pipe.execute(raise_on_error=False) if indexes else []
        except redis.RedisError:
            return [None] * len(indexes)
        return [
            Address(str(r[0]), int(r[1])) if isinstance(r, list | tuple) and len(r) == 2 else None
            for r in replies
        ]

    def close(self) -> None:
        for client in [*self.watchers, *self.replicas]:
            with contextlib.suppress(Exception):
                client.close()


# -- one round ----------------------------------------------------------------------------------


@dataclass(slots=True)
class GroupTimes:
    """Seconds from the fault at which each change of one group was first observed."""

    promoted: float = math.nan  # the replica answers ROLE as master
    first_named: float = math.nan  # some watcher names the replica
    all_named: float = math.nan  # every watcher names the replica

    @property
    def switched(self) -> float:
        return max(self.promoted, self.first_named)  # NaN while either is missing


@dataclass(slots=True)
class RoundResult:
    system: System
    round: int
    k: int
    load_1m: float
    kill_spread_s: float = math.nan
    ready_s: float = math.nan
    groups: list[GroupTimes] = field(default_factory=list)
    phases: PhaseTimes | None = None  # from the watchers' logs
    setup_retried: str = ""  # why a first try of this round failed before the kill, if it did

    def _times(self, attribute: str) -> list[float]:
        return [getattr(g, attribute) for g in self.groups]

    def _last(self, attribute: str) -> float:
        times = self._times(attribute)
        return max(times) if times and not any(math.isnan(t) for t in times) else math.nan

    @property
    def switched(self) -> int:
        return sum(1 for g in self.groups if not math.isnan(g.switched))

    @property
    def all_switched_s(self) -> float:
        return self._last("switched")

    @property
    def all_agreed_s(self) -> float:
        return self._last("all_named")

    @property
    def all_promoted_s(self) -> float:
        return self._last("promoted")

    @property
    def first_switched_s(self) -> float:
        done = [t for t in self._times("switched") if not math.isnan(t)]
        return min(done) if done else math.nan

    @property
    def median_switched_s(self) -> float:
        # NaN (never switched) sorts last: a median with missing groups still means something.
        times = sorted(self._times("switched"), key=lambda t: (math.isnan(t), t))
        return float(statistics.median_low(times)) if times else math.nan

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "round": self.round,
            "k": self.k,
            "load_1m": self.load_1m,
            "kill_spread_s": json_number(self.kill_spread_s),
            "ready_s": json_number(self.ready_s),
            "switched": self.switched,
            "all_switched_s": json_number(self.all_switched_s),
            "all_agreed_s": json_number(self.all_agreed_s),
            "all_promoted_s": json_number(self.all_promoted_s),
            "first_switched_s": json_number(self.first_switched_s),
            "median_switched_s": json_number(self.median_switched_s),
            "groups": [
                {
                    "promoted_s": json_number(g.promoted),
                    "first_named_s": json_number(g.first_named),
                    "all_named_s": json_number(g.all_named),
                }
                for g in self.groups
            ],
            "phases": None if self.phases is None else self.phases.as_json(),
            "setup_retried": self.setup_retried,
        }

    def describe(self) -> str:
        line = (
            f"{self.system} #{self.round}: k={self.k} switched={self.switched}/{self.k} "
            f"all_switched={self.all_switched_s:.2f}s all_agreed={self.all_agreed_s:.2f}s "
            f"first={self.first_switched_s:.2f}s median={self.median_switched_s:.2f}s "
            f"(kill spread {self.kill_spread_s * 1000:.1f} ms, load {self.load_1m})"
        )
        if self.phases is not None:
            line += "\n    from the logs, per group (median / last group): " + self.phases.describe()
        return line


# -- where the time goes: the watchers' own logs ------------------------------------------------

PHASES = ("+sdown", "+odown", "+try-failover", "+elected-leader", "+promoted-slave", "+switch-master")
# haredis: ts=2026-11-26T12:18:17.500Z level=info logger=haredis.daemon msg="+sdown master g001 …"
_HAREDIS_LINE = re.compile(r'^ts=(?P<ts>\S+Z) .*? msg="(?P<event>[+-]\S+) (?P<rest>[^"]*)"')
# redis-sentinel: 16064:X 26 Nov 2026 10:51:46.650 # +sdown master g001 127.0.0.1 35835
_SENTINEL_LINE = re.compile(r"^\d+:X (?P<ts>\d+ \w+ \d+ [\d:.]+) \S (?P<event>[+-]\S+) (?P<rest>.*)$")


def _group_of(event: str, rest: str) -> str | None:
    """The group an event line is about, for the events of PHASES (None for the others,
    e.g. ``+sdown slave …`` or ``+sdown sentinel …``)."""
    words = rest.split()
    if event == "+switch-master":
        return words[0] if words else None
    if event == "+promoted-slave":
        return words[words.index("@") + 1] if "@" in words[:-1] else None
    if event in PHASES and len(words) >= 2 and words[0] == "master":
        return words[1]
    return None


def log_events(system: System, path: Path) -> list[tuple[float, str, str]]:
    """(wall-clock time, event, group) of every PHASES event in one watcher's log."""
    pattern = _HAREDIS_LINE if system == "haredis" else _SENTINEL_LINE
    found: list[tuple[float, str, str]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        match = pattern.match(line)
        if match is None or match["event"] not in PHASES:
            continue
        group = _group_of(match["event"], match["rest"])
        if group is None:
            continue
        if system == "haredis":
            at = datetime.strptime(match["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        else:  # Sentinel logs its local time
            at = datetime.strptime(match["ts"], "%d %b %Y %H:%M:%S.%f").timestamp()
        found.append((at, match["event"], group))
    return found


@dataclass(frozen=True, slots=True)
class PhaseTimes:
    """Per phase, the median and the maximum over the groups of the first watcher's event, in
    seconds from the kill (NaN: some group never got there); and +try-failover per group."""

    median: dict[str, float]
    last: dict[str, float]
    tries_median: float
    tries_max: int

    @classmethod
    def of(
        cls, events: Sequence[tuple[float, str, str]], groups: Sequence[str], fault_wall: float
    ) -> PhaseTimes:
        # Only what happened after the kill: a live replica's probe that timed out earlier
        # (a loaded machine) is not part of this failover.
        first: dict[tuple[str, str], float] = {}
        tries = dict.fromkeys(groups, 0)
        for at, event, group in events:
            if at < fault_wall - 0.01 or group not in tries:
                continue
            key = (event, group)
            first[key] = min(first.get(key, math.inf), at - fault_wall)
            if event == "+try-failover":
                tries[group] += 1
        median: dict[str, float] = {}
        last: dict[str, float] = {}
        for phase in PHASES:
            times = sorted(first.get((phase, g), math.nan) for g in groups)
            missing = any(math.isnan(t) for t in times)
            done = [t for t in times if not math.isnan(t)]
            median[phase] = float(statistics.median(done)) if done and not missing else math.nan
            last[phase] = max(done) if done and not missing else math.nan
        counts = list(tries.values())
        return cls(
            median, last, float(statistics.median(counts)) if counts else math.nan, max(counts, default=0)
        )

    def describe(self) -> str:
        parts = [f"{p} {self.median[p]:.2f}/{self.last[p]:.2f}" for p in PHASES]
        return ", ".join(parts) + f"; try-failover per group {self.tries_median:g} (max {self.tries_max})"

    def as_json(self) -> dict[str, Any]:
        return {
            "median_s": {p: json_number(v) for p, v in self.median.items()},
            "last_s": {p: json_number(v) for p, v in self.last.items()},
            "tries_per_group_median": json_number(self.tries_median),
            "tries_per_group_max": self.tries_max,
        }


def kill_all_primaries(groups: Sequence[Group]) -> tuple[float, float]:
    """SIGKILL every primary back to back; return the time of the first kill and the spread.
    The processes are reaped later, by the clusters' close()."""
    first = time.monotonic()
    for group in groups:
        pid = group.cluster.primary.pid
        if pid is None:
            raise BenchError(f"{group.name}'s primary has no process")
        os.kill(pid, signal.SIGKILL)
    return first, time.monotonic() - first


def observe_switch(probe: MassProbe, fault_at: float, timeout: float) -> list[GroupTimes]:
    """Poll until every group's replica is master and named by every watcher, or ``timeout``.
    Only what is still pending is asked (the watchers are the systems under test: the
    benchmark's own questions must not be what slows them down)."""
    groups = probe.groups
    times = [GroupTimes() for _ in groups]
    deadline = fault_at + timeout
    while time.monotonic() < deadline:
        cycle = time.monotonic()
        for index, group_times in enumerate(times):
            if math.isnan(group_times.promoted) and probe.promoted(index):
                group_times.promoted = time.monotonic() - fault_at
        pending = [i for i, t in enumerate(times) if math.isnan(t.all_named)]
        answers = [probe.named(w, pending) for w in range(len(probe.watchers))]
        seen = time.monotonic() - fault_at
        for position, index in enumerate(pending):
            naming = [answer[position] == groups[index].replica for answer in answers]
            if any(naming) and math.isnan(times[index].first_named):
                times[index].first_named = seen
            if all(naming):
                times[index].all_named = seen
        if all(not math.isnan(t.promoted) and not math.isnan(t.all_named) for t in times):
            break
        time.sleep(max(0.0, cycle + POLL_INTERVAL - time.monotonic()))
    return times


def watcher_logs(system: System, workdir: Path) -> dict[str, Path]:
    if system == "haredis":
        return {p.name: p for p in workdir.glob("w*.log")}
    return {f"{d.name}-sentinel.log": d / "sentinel.log" for d in workdir.glob("s*") if d.is_dir()}


def run_round(
    system: System,
    index: int,
    k: int,
    workdir: Path,
    switch_timeout: float,
    extra_watcher: Sequence[str] = (),
) -> RoundResult:
    result = RoundResult(system, index, k, round(os.getloadavg()[0], 2))
    with contextlib.ExitStack() as stack:
        groups = stack.enter_context(redis_groups(k))
        ports = stack.enter_context(watchers_for(system, groups, workdir / "watchers", extra_watcher))
        stack.callback(lambda: copy_logs(watcher_logs(system, workdir / "watchers"), workdir / "logs"))
        probe = MassProbe(ports, groups)
        stack.callback(probe.close)
        started = time.monotonic()
        with setting_up():
            probe.wait_ready()
        result.ready_s = round(time.monotonic() - started, 2)
        time.sleep(1.0)  # a steady state: every watcher has probed every instance a few times
        fault_wall = time.time()
        fault_at, result.kill_spread_s = kill_all_primaries(groups)
        result.groups = observe_switch(probe, fault_at, switch_timeout)
    # The logs were copied when the watchers stopped (the callback above).
    logs = sorted((workdir / "logs").glob("*.log"))
    events = [event for path in logs for event in log_events(system, path)]
    result.phases = PhaseTimes.of(events, group_names(k), fault_wall)
    return result


# -- summary and results ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    system: System
    rounds: int
    all_switched: Spread
    all_agreed: Spread
    first_switched: Spread
    median_switched: Spread
    switched: str

    @classmethod
    def of(cls, system: System, results: Sequence[RoundResult]) -> Summary:
        mine = [r for r in results if r.system == system]
        return cls(
            system,
            len(mine),
            # A round in which some group never switched counts as the slowest round (inf),
            # not as a round that was not run: the median stays one over every round asked for.
            Spread.over_rounds([r.all_switched_s for r in mine]),
            Spread.over_rounds([r.all_agreed_s for r in mine]),
            Spread.over_rounds([r.first_switched_s for r in mine]),
            Spread.over_rounds([r.median_switched_s for r in mine]),
            f"{sum(r.switched for r in mine)}/{sum(r.k for r in mine)}",
        )

    def cells(self) -> list[str]:
        return [
            self.system,
            str(self.rounds),
            self.all_switched.render(),
            self.all_agreed.render(),
            self.first_switched.render(),
            self.median_switched.render(),
            self.switched,
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "rounds": self.rounds,
            "all_switched_s": self.all_switched.as_json(),
            "all_agreed_s": self.all_agreed.as_json(),
            "first_switched_s": self.first_switched.as_json(),
            "median_switched_s": self.median_switched.as_json(),
            "switched": self.switched,
        }


HEADERS = [
    "system",
    "rounds",
    "all switched s",
    "all agreed s",
    "first group s",
    "median group s",
    "switched",
]

MARKDOWN_HEADER = """# Mass failover benchmark: haredis vs redis-sentinel

Appended by `python -m bench.mass_failover` (see its docstring). K groups of 1 primary + 1
replica, all K primaries killed with `kill -9` at once. Per system: median [min-max] over the
rounds, seconds from the kill, of `all switched` (every group's replica answers ROLE as master
and some watcher names it), `all agreed` (all 3 watchers name every new primary), and the same
as `all switched` for the first and the median group. The raw rounds, with every group's
times, are in `mass_failover.json`.
"""


def last_line(k: int, table: Sequence[Summary]) -> str:
    median = {s.system: s.all_switched.median for s in table}
    haredis, sentinel = median.get("haredis", math.nan), median.get("sentinel", math.nan)
    return (
        f"mass k={k} all_switched_s={haredis:.2f} down_after_s={DOWN_AFTER_MS / 1000:.2f} "
        f"sentinel_all_switched_s={sentinel:.2f}"
    )


def goal_verdict(table: Sequence[Summary], results: Sequence[RoundResult]) -> str:
    goal = DOWN_AFTER_MS / 1000 + GOAL_MARGIN_S
    what = f"goal (haredis: every group switched within {goal:.1f} s, in every round)"
    mine = [r for r in results if r.system == "haredis"]
    if not mine:
        return f"{what}: not measured"
    incomplete = [r for r in mine if r.switched < r.k]
    if incomplete:
        worst = min(incomplete, key=lambda r: r.switched)
        return f"{what}: MISSED ({worst.switched}/{worst.k} groups switched before the round's deadline)"
    worst_s = max(r.all_switched_s for r in mine)
    return f"{what}: {'met' if worst_s <= goal else 'MISSED'} (worst round {worst_s:.2f} s)"


PHASE_HEADERS = ["system", *(f"{p} s" for p in PHASES), "try-failover per group"]


def over_rounds(values: list[float]) -> float:
    """The median over the rounds; NaN if any round has none."""
    return math.nan if any(math.isnan(v) for v in values) else float(statistics.median(values))


def phase_rows(systems: Sequence[System], results: Sequence[RoundResult]) -> list[list[str]]:
    """Per system and phase: the median over the rounds of (median group / last group)."""
    rows: list[list[str]] = []
    for system in systems:
        phases = [r.phases for r in results if r.system == system and r.phases is not None]
        if not phases:
            continue
        cells = []
        for phase in PHASES:
            median = over_rounds([ph.median[phase] for ph in phases])
            last = over_rounds([ph.last[phase] for ph in phases])
            cells.append(f"{median:.2f} / {last:.2f}")
        tries = (
            f"{over_rounds([ph.tries_median for ph in phases]):g} (max {max(ph.tries_max for ph in phases)})"
        )
        rows.append([system, *cells, tries])
    return rows


def markdown_report(
    record: dict[str, Any],
    rows: Sequence[Sequence[str]],
    last: str,
    verdict: str,
    phases: Sequence[Sequence[str]] = (),
) -> str:
    machine = record["machine"]
    uncommitted = ", ".join(machine["haredis_uncommitted"]) or "none"
    return (
        f"\n## {machine['date']}: `{record['command']}`{size_mark(record['size'])}\n\n"
        f"- machine: {machine['uname']}, {machine['cpu_model']}, {machine['cores']} cores, "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- {machine['redis_server']}; haredis {machine['haredis_commit']} "
        f"(uncommitted changes: {uncommitted}); redis-py {machine['redis_py']}\n"
        f"- per round: fresh K={record['settings']['k']} groups of 1 primary + 1 replica, 3 watchers "
        f"of one system, quorum {QUORUM}, down-after {DOWN_AFTER_MS} ms, failover-timeout "
        f"{FAILOVER_TIMEOUT_MS} ms; every primary killed with kill -9 at once\n"
        f"- haredis settings changed from the defaults (diagnosis): "
        f"{', '.join(record['settings']['haredis_settings_changed']) or 'none'}\n"
        f"- {verdict}\n"
        f"{setup_retry_notes(record['rounds'])}\n"
        f"{markdown_table(HEADERS, rows)}\n\n"
        + (
            "Where the time goes, from the watchers' logs: per group, seconds from the kill to the "
            "first watcher's event, median group / last group (median over the rounds), and "
            "`+try-failover` lines per group over the 3 watchers:\n\n"
            f"{markdown_table(PHASE_HEADERS, phases)}\n\n"
            if phases
            else ""
        )
        + f"`{last}`\n"
    )


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mass_failover",
        description="Time until every group has a new primary after K primaries die at once.",
    )
    parser.add_argument("--k", type=int, default=50, help="groups (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per system (default 3)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="K=20, 1 round per system")
    mode.add_argument("--smoke", action="store_true", help="haredis only, K=3, 1 round (the smoke test)")
    parser.add_argument(
        "--haredis-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="diagnosis only: add this line to every haredis watcher's [watcher] table (repeatable; "
        "recorded in the results, and the run is then not a like-for-like comparison)",
    )
    parser.add_argument(
        "--system", choices=["haredis", "sentinel"], help="run only this system (for a diagnosis)"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=DEFAULT_RESULTS, help="where results are appended"
    )
    parser.add_argument("--workdir", type=Path, help="keep every round's configs and logs here")
    args = parser.parse_args(argv)
    if args.quick:
        args.k, args.rounds = 20, 1
    args.switch_timeout = SWITCH_TIMEOUT
    if args.smoke:  # bounded for the smoke test: a round that does not finish is reported, not waited for
        args.k, args.rounds, args.switch_timeout = 3, 1, SMOKE_SWITCH_TIMEOUT
    for setting in args.haredis_setting:
        if "=" not in setting:
            parser.error(f"--haredis-setting {setting!r}: expected KEY=VALUE")
    args.haredis_setting = [
        " = ".join(part.strip() for part in s.split("=", 1)) for s in args.haredis_setting
    ]
    if args.k < 1 or args.rounds < 1:
        parser.error("--k and --rounds must be at least 1")
    args.systems = ("haredis",) if args.smoke else ("haredis", "sentinel")
    if args.system is not None:
        args.systems = (args.system,)
    return args


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_all(args: argparse.Namespace, run_dir: Path) -> list[RoundResult]:
    results: list[RoundResult] = []
    for index in range(1, args.rounds + 1):
        # Alternate which system goes first, so a drift in the machine's load hits both alike.
        systems = args.systems if index % 2 else tuple(reversed(args.systems))
        for system in systems:
            progress(f"round {index}/{args.rounds}: {system}, k={args.k} ...")
            workdir = run_dir / f"{index:02d}-{system}"
            result, discarded = retry_setup_once(
                functools.partial(
                    run_round,
                    system,
                    index,
                    args.k,
                    switch_timeout=args.switch_timeout,
                    extra_watcher=args.haredis_setting,
                ),
                workdir,
                progress,
            )
            result.setup_retried = discarded
            progress(f"  {result.describe()}")
            results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    machine = machine_info()
    run_dir = args.workdir or Path(tempfile.mkdtemp(prefix="haredis-mass-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    keep = args.workdir is not None
    try:
        results = run_all(args, run_dir)
    except (BenchError, HaredisProcError, RedisProcError) as exc:
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

    table = [Summary.of(system, results) for system in args.systems]
    rows = [s.cells() for s in table]
    phases = phase_rows(args.systems, results)
    last = last_line(args.k, table)
    verdict = goal_verdict(table, results)
    incomplete = any(r.switched < r.k for r in results)
    if "MISSED" in verdict or incomplete:
        progress(f"{verdict}; logs of every round are in {run_dir}")
    elif args.workdir is None:  # a temp dir of an unremarkable run
        shutil.rmtree(run_dir, ignore_errors=True)
    record = {
        "benchmark": "mass_failover",
        "command": command_line("bench.mass_failover"),
        "size": run_size(quick=args.quick, smoke=args.smoke),
        "machine": machine,
        "settings": {
            "systems": list(args.systems),
            "k": args.k,
            "rounds": args.rounds,
            "watchers": WATCHERS,
            "quorum": QUORUM,
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "switch_timeout_s": args.switch_timeout,
            "haredis_settings_changed": list(args.haredis_setting),
        },
        "goal": verdict,
        "summary": [s.as_json() for s in table],
        "rounds": [r.as_json() for r in results],
        "last_line": last,
    }
    append_json(args.results_dir / "mass_failover.json", record)
    markdown = args.results_dir / "mass_failover.md"
    if not markdown.exists():
        append_text(markdown, MARKDOWN_HEADER)
    append_text(markdown, markdown_report(record, rows, last, verdict, phases))
    print(text_table(HEADERS, rows))
    if phases:
        print("where the time goes (from the watchers' logs; median group / last group, s from the kill):")
        print(text_table(PHASE_HEADERS, phases))
    print(verdict)
    print(last, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
