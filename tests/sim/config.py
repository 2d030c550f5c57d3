"""The shape of one simulated world, drawn from the seed: watchers, quorum, Redis nodes,
timings, and the `WatcherSettings` each watcher is started with."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from haredis.core.model import Address, PrimarySettings, WatcherSettings

PRIMARY_NAME = "mymaster"


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. Targets such as "primary" are resolved when the fault fires.

    kind: kill | pause | partition | watcher-crash | watcher-pause | clock-jump |
          net-drop | net-dup | net-delay | failover-command
    """

    at: float
    kind: str
    duration: float | None = None  # None: until the final heal
    target: str = ""  # "primary", "replica", a node (r1) or watcher (w2) name; "": random
    empty: bool = False  # kill: the node restarts empty (no persistence)
    amount: float = 0.0  # drop/dup probability, extra jitter (s), clock jump (s)
    shape: str = ""  # partition shape (see faults.SHAPES)
    mid_batch: bool = False  # watcher-crash: interrupt the next batch between two actions


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str  # r0, r1, ... (r0 is the first primary)
    address: Address
    priority: int  # replica-priority; 0: never to be promoted
    repl_period: float  # how often this node pulls from its master: its replication lag
    load_time: float  # LOADING time after a restart that keeps its data
    # Where this node's whole-second wall clock (Redis's server.unixtime) ticks over, and
    # when in each second its replicationCron runs (acks, good-replica count): fractions
    # of a second, drawn per node so that the rounding is not always the kindest one.
    clock_phase: float = 0.0
    cron_phase: float = 0.0
    # The node runs from a config file that CONFIG REWRITE can update: the write fence the
    # watchers set survives a restart. Without one (or without +config|rewrite) a restarted
    # node comes back unfenced, a documented limit of fencing (README, "Fencing").
    config_file: bool = False


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int
    watchers: tuple[str, ...]
    quorum: int
    nodes: tuple[NodeSpec, ...]
    down_after: float
    crash_detect: float = 0.25
    failover_timeout: float = 10.0
    min_failover_interval: float = 5.0
    write_rate: int = 2000  # bytes of replication stream per second on a primary
    backlog: int = 2000 * 30  # replication backlog size (bytes)
    repl_timeout: float = 10.0  # a replica notices a silent master after this long
    full_sync_time: float = 0.3
    # Network: one-way delays in seconds (base + uniform jitter).
    peer_delay: float = 0.001
    peer_jitter: float = 0.001
    redis_delay: float = 0.0003
    redis_jitter: float = 0.0005
    tick_jitter: float = 0.1  # ticks are tick_interval * (1 +- tick_jitter)
    warmup: float = 4.0  # no faults before this
    chaos_end: float = 50.0  # final heal
    end: float = 110.0  # liveness is checked here
    # An explicit fault list for scenario tests; None: generated from the seed.
    faults: tuple[Fault, ...] | None = None
    fault_gap: float = 4.0  # mean time between generated faults
    # Write fencing (PrimarySettings.fencing): min-replicas-to-write / min-replicas-max-lag.
    fencing: bool = False
    fence_min_replicas: int = 1
    fence_max_lag: int = 2
    # A control for the pre-selection freeze (invariant 14): the executor answers
    # QueryInfo(freeze=True) without detaching anyone (as for a node that is not a replica),
    # as if the freeze did nothing.
    ignore_freeze: bool = False

    @property
    def majority(self) -> int:
        return len(self.watchers) // 2 + 1

    @property
    def primary_address(self) -> Address:
        return self.nodes[0].address

    def primary_settings(self) -> PrimarySettings:
        return PrimarySettings(
            name=PRIMARY_NAME,
            address=self.primary_address,
            quorum=self.quorum,
            down_after=self.down_after,
            crash_detect=self.crash_detect,
            failover_timeout=self.failover_timeout,
            min_failover_interval=self.min_failover_interval,
            fencing=self.fencing,
            fence_min_replicas=self.fence_min_replicas,
            fence_max_lag=self.fence_max_lag,
        )

    def watcher_settings(self, name: str) -> WatcherSettings:
        return WatcherSettings(name=name, electorate=len(self.watchers), primaries=(self.primary_settings(),))

    def quiet_needed(self) -> float:
        """A bound on the time the system needs to converge after the final heal.

        A watcher resumed at the heal may sit in hold mode; a failover that was in progress
        may run into failover_timeout; detection takes up to down_after (twice: a second
        attempt); a stray is converted convert_after after it is seen (twice: it may first
        have to finish a resync); plus margin. Measured convergence is far quicker (a few
        seconds at p99); this is the bound liveness is held to."""
        s = self.watcher_settings(self.watchers[0])
        p = s.primaries[0]
        return s.hold_duration + p.failover_timeout + 2 * p.down_after + 2 * p.convert_after + 5.0

    def describe(self) -> str:
        prio = ",".join(str(n.priority) for n in self.nodes[1:])
        return (
            f"watchers={len(self.watchers)} quorum={self.quorum} replicas={len(self.nodes) - 1} "
            f"priorities={prio} down_after={self.down_after:g} heal={self.chaos_end:.1f} end={self.end:.1f}"
            + (f" fencing={self.fence_min_replicas}/{self.fence_max_lag}s" if self.fencing else "")
        )


def node_address(index: int) -> Address:
    return Address(f"10.0.1.{index + 1}", 6379)


def make_nodes(rng: random.Random, replicas: int, zero_priority: bool) -> tuple[NodeSpec, ...]:
    nodes = []
    zero_at = rng.randrange(1, replicas + 1) if zero_priority else -1
    for i in range(replicas + 1):
        nodes.append(
            NodeSpec(
                name=f"r{i}",
                address=node_address(i),
                priority=0 if i == zero_at else 100,
                repl_period=round(rng.uniform(0.02, 0.3), 3),
                load_time=round(rng.uniform(0.1, 1.0), 2),
            )
        )
    return tuple(nodes)


def fence_rng(seed: int) -> random.Random:
    """The seed's second, independent stream for everything fencing adds (whether it is on,
    its settings, the nodes' clock and cron phases). Drawing these from the main stream
    would reshuffle every seed's faults; a str seed is hashed with SHA-512, not hash(), so
    this is reproducible across processes and PYTHONHASHSEED."""
    return random.Random(f"fence:{seed}")


def with_config_files(nodes: tuple[NodeSpec, ...], seed: int) -> tuple[NodeSpec, ...]:
    """Most nodes have a config file (as any packaged Redis does); about one in five does
    not. From a third, independent stream, so no other draw of the seed moves."""
    crng = random.Random(f"config-file:{seed}")
    return tuple(replace(n, config_file=crng.random() < 0.8) for n in nodes)


def with_phases(nodes: tuple[NodeSpec, ...], frng: random.Random) -> tuple[NodeSpec, ...]:
    return tuple(
        replace(n, clock_phase=round(frng.random(), 3), cron_phase=round(frng.random(), 3)) for n in nodes
    )


def generate(seed: int, rng: random.Random) -> SimConfig:
    """Draw a world for `seed` (uses `rng`, the run's only source of randomness)."""
    n_watchers = 5 if rng.random() < 0.25 else 3
    majority = n_watchers // 2 + 1
    quorum = majority if rng.random() < 0.4 else 2
    replicas = rng.choice((2, 3))
    nodes = make_nodes(rng, replicas, zero_priority=rng.random() < 0.35)
    down_after = rng.choice((1.0, 1.0, 1.5, 2.0, 3.0, 5.0))
    failover_timeout = rng.choice((6.0, 10.0, 15.0))
    warmup = round(rng.uniform(3.0, 6.0), 2)
    chaos = round(rng.uniform(20.0, 50.0), 2)
    write_rate = rng.choice((1000, 5000, 20000))
    cfg = SimConfig(
        seed=seed,
        watchers=tuple(f"w{i + 1}" for i in range(n_watchers)),
        quorum=quorum,
        nodes=nodes,
        down_after=down_after,
        failover_timeout=failover_timeout,
        min_failover_interval=rng.choice((3.0, 5.0, 10.0)),
        write_rate=write_rate,
        backlog=write_rate * rng.choice((5, 30, 120)),
        repl_timeout=rng.choice((5.0, 10.0, 60.0)),
        full_sync_time=round(rng.uniform(0.1, 1.0), 2),
        warmup=warmup,
        chaos_end=warmup + chaos,
        fault_gap=rng.uniform(2.0, 6.0),
    )
    # Fencing on half of the seeds, from the seed's own fencing stream (see fence_rng).
    frng = fence_rng(seed)
    fencing = frng.random() < 0.5
    max_lag = frng.choice((1, 2))
    min_replicas = 2 if replicas == 3 and frng.random() < 0.25 else 1
    cfg = replace(
        cfg,
        nodes=with_config_files(with_phases(cfg.nodes, frng), seed),
        fencing=fencing,
        fence_min_replicas=min_replicas,
        fence_max_lag=max_lag,
    )
    return replace(cfg, end=cfg.chaos_end + cfg.quiet_needed())


def scenario(
    seed: int = 0,
    *,
    watchers: int = 3,
    quorum: int = 2,
    replicas: int = 2,
    priorities: tuple[int, ...] | None = None,
    down_after: float = 1.0,
    faults: tuple[Fault, ...] = (),
    chaos_end: float = 20.0,
    end: float | None = None,
    repl_periods: tuple[float, ...] | None = None,
    fencing: bool = False,
    fence_max_lag: int = 2,
    fence_min_replicas: int = 1,
    write_rate: int = 2000,
    redis_delay: float = 0.0003,
    ignore_freeze: bool = False,
) -> SimConfig:
    """A hand-made world for scenario tests: nothing random but the network jitter."""
    rng = random.Random(seed)
    nodes = list(make_nodes(rng, replicas, zero_priority=False))
    for i in range(1, replicas + 1):
        if priorities is not None:
            nodes[i] = replace(nodes[i], priority=priorities[i - 1])
        if repl_periods is not None:
            nodes[i] = replace(nodes[i], repl_period=repl_periods[i - 1])
    cfg = SimConfig(
        seed=seed,
        watchers=tuple(f"w{i + 1}" for i in range(watchers)),
        quorum=quorum,
        nodes=tuple(nodes),
        down_after=down_after,
        warmup=3.0,
        chaos_end=chaos_end,
        faults=faults,
        fencing=fencing,
        fence_min_replicas=fence_min_replicas,
        fence_max_lag=fence_max_lag,
        write_rate=write_rate,
        backlog=write_rate * 30,
        redis_delay=redis_delay,
        ignore_freeze=ignore_freeze,
    )
    if fencing:
        cfg = replace(cfg, nodes=with_phases(cfg.nodes, fence_rng(seed)))
    return replace(cfg, end=end if end is not None else chaos_end + cfg.quiet_needed())
