"""The fault schedule (drawn from the seed) and how each fault is applied.

Faults fire between `warmup` and `chaos_end`, about one every `fault_gap` seconds, and may
overlap. Targets such as "the primary" are resolved when the fault fires. At `chaos_end`
everything heals: cuts and network phases end, paused processes resume, killed nodes and
crashed watchers restart. Then nothing happens for the quiet period, and liveness is checked.

Kinds (weights in `_KINDS`): kill (primary or replica, restart after a while or only at the
heal, with or without data), pause (primary shorter or longer than down_after, replica),
partition (see SHAPES), watcher crash (immediate or between two actions of a batch) and
restart, watcher pause, clock jump (forward or backward), drop / duplicate / delay phases,
and now and then an operator's failover command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from haredis.core.events import FailoverCommand, PauseCommand, SwitchoverCommand
from haredis.core.model import Role

from .config import PRIMARY_NAME, Fault
from .redis_node import FakeRedis

if TYPE_CHECKING:
    from .world import World

SHAPES = (
    "isolate-primary",  # the primary alone
    "primary-with-minority",  # the primary plus a minority of the watchers
    "isolate-watcher",
    "split-watchers",  # a majority and a minority of the watchers, nodes spread over both
    "isolate-replica",
    "primary-replicas",  # the primary cannot talk to its replicas; watchers see everyone
    "primary-mute",  # one way: the primary's packets to the watchers are lost
    "primary-deaf",  # one way: the watchers' packets to the primary are lost
    "watcher-mute",  # one way: a watcher can receive but not send
    "watcher-deaf",  # one way: a watcher can send but not receive
    "bridge",  # two sides that only one watcher connects
    "random-one-way",  # random directed pairs
)

_KINDS: tuple[tuple[str, float], ...] = (
    ("kill-primary", 3.0),
    ("kill-replica", 1.5),
    ("pause-primary-short", 1.5),
    ("pause-primary-long", 1.5),
    ("pause-replica", 1.0),
    ("partition", 5.0),
    ("watcher-crash", 2.0),
    ("watcher-pause", 1.0),
    ("clock-jump", 1.0),
    ("net-drop", 1.0),
    ("net-dup", 0.7),
    ("net-delay", 0.7),
    ("failover-command", 0.15),
    ("switchover-command", 0.4),
    ("pause-command", 0.2),
)


def generate(world: World) -> tuple[Fault, ...]:
    """Draw the fault schedule for this seed (uses the world's only PRNG)."""
    cfg = world.config
    rng = world.rng
    total = sum(w for _, w in _KINDS)
    faults: list[Fault] = []
    t = cfg.warmup + rng.expovariate(1.0 / cfg.fault_gap)
    d = cfg.down_after
    while t < cfg.chaos_end:
        pick = rng.random() * total
        kind = _KINDS[-1][0]
        for name, weight in _KINDS:
            pick -= weight
            if pick < 0:
                kind = name
                break
        at = round(t, 3)
        if kind == "kill-primary" or kind == "kill-replica":
            duration = None if rng.random() < 0.3 else round(rng.uniform(0.3, 20.0), 3)
            faults.append(Fault(at, "kill", duration, kind.split("-")[1], empty=rng.random() < 0.4))
        elif kind == "pause-primary-short":
            faults.append(Fault(at, "pause", round(rng.uniform(0.1, 0.7) * d, 3), "primary"))
        elif kind == "pause-primary-long":
            faults.append(Fault(at, "pause", round(rng.uniform(1.3, 5.0) * d, 3), "primary"))
        elif kind == "pause-replica":
            faults.append(Fault(at, "pause", round(rng.uniform(0.2, 5.0) * d, 3), "replica"))
        elif kind == "partition":
            shape = rng.choice(SHAPES)
            faults.append(Fault(at, "partition", round(rng.uniform(0.5, 15.0), 3), shape=shape))
        elif kind == "watcher-crash":
            duration = round(rng.uniform(0.1, 10.0), 3)
            faults.append(Fault(at, "watcher-crash", duration, mid_batch=rng.random() < 0.6))
        elif kind == "watcher-pause":
            faults.append(Fault(at, "watcher-pause", round(rng.uniform(0.2, 6.0), 3)))
        elif kind == "clock-jump":
            size = rng.choice((0.3, 1.0, 3.0, 15.0, 60.0)) * rng.uniform(0.5, 1.0)
            faults.append(Fault(at, "clock-jump", amount=round(size if rng.random() < 0.6 else -size, 3)))
        elif kind == "net-drop":
            faults.append(
                Fault(at, "net-drop", round(rng.uniform(1.0, 10.0), 3), amount=rng.uniform(0.05, 0.5))
            )
        elif kind == "net-dup":
            faults.append(
                Fault(at, "net-dup", round(rng.uniform(1.0, 10.0), 3), amount=rng.uniform(0.05, 0.5))
            )
        elif kind == "net-delay":
            faults.append(
                Fault(at, "net-delay", round(rng.uniform(1.0, 10.0), 3), amount=rng.uniform(0.01, 0.3))
            )
        elif kind == "switchover-command":
            target = "" if rng.random() < 0.5 else rng.choice([n.name for n in cfg.nodes])
            timeout = rng.choice((0.5, 2.0, 10.0))
            faults.append(Fault(at, "switchover-command", timeout, target, mid_batch=rng.random() < 0.15))
        elif kind == "pause-command":
            faults.append(Fault(at, "pause-command", round(rng.uniform(2.0, 20.0), 3)))
        else:
            faults.append(Fault(at, "failover-command"))
        t += rng.expovariate(1.0 / cfg.fault_gap)
    return tuple(faults)


class FaultInjector:
    def __init__(self, world: World) -> None:
        self.world = world
        self.injected = 0
        self.pending_restart: dict[str, bool] = {}  # killed node -> restart empty?
        self._phase_serial: dict[str, int] = {}

    def schedule(self) -> None:
        world = self.world
        cfg = world.config
        faults = cfg.faults if cfg.faults is not None else generate(world)
        for fault in faults:
            world.sched.at(fault.at, self.apply, fault)
        world.sched.at(cfg.chaos_end, self.heal)

    # -- targets ----------------------------------------------------------------------------

    def _node(self, target: str) -> FakeRedis | None:
        world = self.world
        if target == "primary":
            return world.current_primary()
        if target == "replica":
            primary = world.current_primary()
            choices = [n for n in world.nodes if n.alive and n is not primary]
            return world.rng.choice(choices) if choices else None
        return world.node_by_name.get(target)

    def _watcher(self, target: str) -> str:
        world = self.world
        if target in world.hosts:
            return target
        return world.rng.choice(world.config.watchers)

    # -- applying ---------------------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        world = self.world
        if world.sched.now >= world.config.chaos_end:
            return
        self.injected += 1
        getattr(self, "_" + fault.kind.replace("-", "_"))(fault)

    def _until(self, fault: Fault, fn: Callable[..., None], *args: Any) -> None:
        if fault.duration is not None:
            self.world.sched.after(fault.duration, fn, *args)

    def _kill(self, fault: Fault) -> None:
        node = self._node(fault.target)
        if node is None or not node.alive:
            return
        world = self.world
        role = "primary" if node.role is Role.PRIMARY else "replica"
        after = "until the heal" if fault.duration is None else f"for {fault.duration:g}s"
        world.note(
            "FAULT",
            f"kill -9 {role} {world.describe_node(node)} {after}"
            + (", restarts EMPTY" if fault.empty else ""),
        )
        node.kill()
        self.pending_restart[node.name] = fault.empty
        self._until(fault, self._restart_node, node)

    def _restart_node(self, node: FakeRedis) -> None:
        if node.alive:
            return
        empty = self.pending_restart.pop(node.name, False)
        self.world.note("FAULT", f"restart {self.world.describe_node(node)}" + (" EMPTY" if empty else ""))
        node.restart(empty)

    def _pause(self, fault: Fault) -> None:
        node = self._node(fault.target)
        if node is None or not node.alive or node.paused:
            return
        world = self.world
        d = world.config.down_after
        duration = fault.duration if fault.duration is not None else 0.0
        long = duration > 0.8 * d - 0.1
        role = "primary" if node.role is Role.PRIMARY else "replica"
        world.note(
            "FAULT",
            f"SIGSTOP {role} {world.describe_node(node)} for {duration:g}s "
            f"({'longer' if long else 'shorter'} than down_after {d:g}s)",
        )
        node.pause(long)
        self._until(fault, self._resume_node, node)

    def _resume_node(self, node: FakeRedis) -> None:
        if node.paused:
            self.world.note("FAULT", f"SIGCONT {self.world.describe_node(node)}")
            node.resume()

    def _partition(self, fault: Fault) -> None:
        world = self.world
        rng = world.rng
        watchers = list(world.config.watchers)
        primary = world.current_primary()
        nodes = [n.name for n in world.nodes]
        p = primary.name if primary is not None else rng.choice(nodes)
        replicas = [n for n in nodes if n != p]
        everyone = watchers + nodes
        minority_max = len(watchers) - world.config.majority
        shape = fault.shape
        pairs: set[tuple[str, str]] = set()

        def split(side: list[str]) -> None:
            a = set(side)
            for x in everyone:
                for y in everyone:
                    if (x in a) != (y in a):
                        pairs.add((x, y))

        if shape == "isolate-primary":
            split([p])
            text = f"{p} alone"
        elif shape == "primary-with-minority":
            side = [p, *rng.sample(watchers, rng.randint(1, minority_max))]
            if replicas and rng.random() < 0.3:
                side.append(rng.choice(replicas))
            split(side)
            text = f"{sorted(side)} | rest"
        elif shape == "isolate-watcher":
            w = fault.target if fault.target in watchers else rng.choice(watchers)
            split([w])
            text = f"{w} alone"
        elif shape == "split-watchers":
            minority = rng.sample(watchers, rng.randint(1, minority_max))
            side = minority + [n for n in nodes if rng.random() < 0.5]
            split(side)
            text = f"{sorted(side)} | rest"
        elif shape == "isolate-replica":
            r = rng.choice(replicas)
            split([r])
            text = f"{r} alone"
        elif shape == "primary-replicas":
            for r in replicas:
                pairs.add((p, r))
                pairs.add((r, p))
            text = f"{p} cannot reach its replicas"
        elif shape == "primary-mute":
            pairs.update((p, w) for w in watchers)
            text = f"{p} -> watchers lost (one way)"
        elif shape == "primary-deaf":
            pairs.update((w, p) for w in watchers)
            text = f"watchers -> {p} lost (one way)"
        elif shape == "watcher-mute":
            w = rng.choice(watchers)
            pairs.update((w, x) for x in everyone if x != w)
            text = f"{w} -> everyone lost (one way)"
        elif shape == "watcher-deaf":
            w = rng.choice(watchers)
            pairs.update((x, w) for x in everyone if x != w)
            text = f"everyone -> {w} lost (one way)"
        elif shape == "bridge":
            shuffled = watchers[:]
            rng.shuffle(shuffled)
            bridge, rest = shuffled[0], shuffled[1:]
            half = len(rest) // 2
            left = set(rest[:half]) | {n for n in nodes if rng.random() < 0.5}
            right = set(rest[half:]) | (set(nodes) - left)
            for x in left:
                for y in right:
                    pairs.add((x, y))
                    pairs.add((y, x))
            text = f"{sorted(left)} | {sorted(right)}, bridged by {bridge}"
        elif shape == "pairs":  # explicit one-way cuts for scenario tests: target "a>b,c>d"
            for item in fault.target.split(","):
                a, b = item.split(">")
                pairs.add((a, b))
            text = fault.target
        else:
            for x in everyone:
                for y in everyone:
                    if x != y and rng.random() < 0.15:
                        pairs.add((x, y))
            text = f"{len(pairs)} random one-way cuts"
        if not pairs:
            return
        cut = world.network.cut(pairs)
        world.note("FAULT", f"partition {shape}: {text} for {fault.duration:g}s")
        self._until(fault, self._heal_cut, cut, shape)

    def _heal_cut(self, cut: int, shape: str) -> None:
        if cut in self.world.network._cuts:
            self.world.network.heal(cut)
            self.world.note("FAULT", f"heal partition {shape}")

    def _watcher_crash(self, fault: Fault) -> None:
        world = self.world
        host = world.hosts[self._watcher(fault.target)]
        if not host.alive:
            return
        host.restart_after = fault.duration
        if fault.mid_batch:
            host.crash_armed = True
            host.crash_deadline = world.sched.now + 2.0
            world.note("FAULT", f"{host.name} will crash inside its next batch that persists state")
        else:
            host.crash("crash (kill -9)")

    def _watcher_pause(self, fault: Fault) -> None:
        world = self.world
        host = world.hosts[self._watcher(fault.target)]
        if not host.alive or host.paused:
            return
        world.note("FAULT", f"SIGSTOP watcher {host.name} for {fault.duration:g}s")
        host.pause()
        self._until(fault, self._watcher_resume, host.name)

    def _watcher_resume(self, name: str) -> None:
        host = self.world.hosts[name]
        if host.paused:
            self.world.note("FAULT", f"SIGCONT watcher {name}")
            host.resume()

    def _clock_jump(self, fault: Fault) -> None:
        world = self.world
        host = world.hosts[self._watcher(fault.target)]
        host.clock_offset += fault.amount
        world.history.point(f"watcher:{host.name}", world.sched.now)
        world.note("FAULT", f"clock of {host.name} jumps {fault.amount:+g}s")

    def _phase(self, fault: Fault, which: str) -> None:
        world = self.world
        serial = self._phase_serial.get(which, 0) + 1
        self._phase_serial[which] = serial
        world.network.set_phase(**{which: fault.amount})
        world.note(
            "FAULT",
            f"network {fault.kind.split('-')[1]} phase ({which}={fault.amount:.3f}) for {fault.duration:g}s",
        )
        self._until(fault, self._end_phase, which, serial)

    def _end_phase(self, which: str, serial: int) -> None:
        if self._phase_serial.get(which) == serial:
            self.world.network.set_phase(**{which: 0.0})
            self.world.note("FAULT", f"network {which} phase ends")

    def _net_drop(self, fault: Fault) -> None:
        self._phase(fault, "drop")

    def _net_dup(self, fault: Fault) -> None:
        self._phase(fault, "dup")

    def _net_delay(self, fault: Fault) -> None:
        self._phase(fault, "jitter")

    def _failover_command(self, fault: Fault) -> None:
        world = self.world
        alive = [h for h in world.host_list if h.alive]
        if not alive:
            return
        host = world.hosts[fault.target] if fault.target in world.hosts else world.rng.choice(alive)
        world.note("FAULT", f"operator: SENTINEL FAILOVER {PRIMARY_NAME} on {host.name}")
        world.checker.on_operator_command(PRIMARY_NAME)
        host.deliver(lambda now: FailoverCommand(now=now, primary=PRIMARY_NAME))

    def _switchover_command(self, fault: Fault) -> None:
        """SENTINEL FAILOVER's planned sibling: FAILOVER TO <target or best> TIMEOUT t.
        `duration` is the timeout; `mid_batch` here means FORCE."""
        world = self.world
        alive = [h for h in world.host_list if h.alive]
        if not alive:
            return
        host = world.rng.choice(alive)
        node = world.node_by_name.get(fault.target)
        target = node.address if node is not None else None
        timeout = fault.duration or 2.0
        world.note(
            "FAULT",
            f"operator: switchover {PRIMARY_NAME} to {node.name if node else 'the best replica'} "
            f"on {host.name} (timeout {timeout:g}s{', FORCE' if fault.mid_batch else ''})",
        )
        world.checker.on_operator_command(PRIMARY_NAME)
        host.deliver(
            lambda now: SwitchoverCommand(
                now=now, primary=PRIMARY_NAME, target=target, timeout=timeout, force=fault.mid_batch
            )
        )

    def _pause_command(self, fault: Fault) -> None:
        """Maintenance mode on one watcher (it gossips it to the others)."""
        world = self.world
        alive = [h for h in world.host_list if h.alive]
        if not alive:
            return
        host = world.rng.choice(alive)
        ttl = fault.duration or 10.0
        world.note("FAULT", f"operator: pause failovers of {PRIMARY_NAME} for {ttl:g}s on {host.name}")
        host.deliver(lambda now: PauseCommand(now=now, primary=PRIMARY_NAME, ttl=ttl, reason="sim"))

    # -- the final heal ---------------------------------------------------------------------

    def heal(self) -> None:
        world = self.world
        world.note("FAULT", "final heal: cuts and network phases end, everything resumes and restarts")
        world.network.heal_all()
        world.network.set_phase(drop=0.0, dup=0.0, jitter=0.0)
        self._phase_serial.clear()
        for node in world.nodes:
            if node.paused:
                node.resume()
            if not node.alive:
                self._restart_node(node)
        for host in world.host_list:
            host.crash_armed = False
            host.restart_after = None
            if host.paused:
                host.resume()
            if not host.alive:
                host.restart()
