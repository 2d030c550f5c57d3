"""Randomized schedules: a sequence of faults drawn from ``random.Random(seed)``.

The whole schedule (fault kinds, targets, durations, rests) is drawn up front from the seed,
so the same seed gives the same schedule; targets are symbolic where they must follow the
cluster ("primary" is whichever node the watchers name when the step starts). Replay one
with ``python -m tests.chaos --schedules 0 --scenario schedule:<seed>``.

Every step applies one fault, holds it, undoes it (heal, SIGCONT, start the dead process
again) and rests; a schedule holds 3 to 5 steps and its fault phase is bounded by
``MAX_FAULT_PHASE_S``, so one schedule (setup, writes, convergence, checks) stays under a minute.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .harness import Session
from .rig import CLIENT_HOST, REDIS_HOSTS, WATCHER_HOSTS

MAX_FAULT_PHASE_S = 24.0
ALL_HOSTS = (*REDIS_HOSTS, *WATCHER_HOSTS, CLIENT_HOST)


@dataclass(frozen=True)
class Step:
    kind: str
    hold_s: float
    rest_s: float
    targets: tuple[str, ...] = ()  # host names, or "primary" / "replica"
    other: tuple[str, ...] = ()  # the second side of a partition

    def describe(self) -> str:
        sides = f" {','.join(self.targets)}" + (f" | {','.join(self.other)}" if self.other else "")
        return f"{self.kind}{sides if self.targets else ''} hold={self.hold_s:.1f}s rest={self.rest_s:.1f}s"


# kind -> weight. The restart-empty hazard is in the mix on purpose, rarely.
KINDS = {
    "partition_2013": 3,
    "isolate_watcher": 2,
    "split_random": 3,
    "one_way": 2,
    "bridge": 2,
    "kill_primary": 3,
    "kill_replica": 1,
    "pause_primary_short": 2,
    "pause_primary_long": 2,
    "clock_jump_watcher": 2,
    "restart_watcher": 2,
    "flapping": 2,
    "restart_primary_empty": 1,
}


def make_schedule(seed: int) -> list[Step]:
    rng = random.Random(seed)
    steps: list[Step] = []
    total = 0.0
    for _ in range(rng.randint(3, 5)):
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        step = _draw(rng, kind)
        if total + step.hold_s + step.rest_s > MAX_FAULT_PHASE_S:
            break
        total += step.hold_s + step.rest_s
        steps.append(step)
    return steps


def _draw(rng: random.Random, kind: str) -> Step:
    hold = round(rng.uniform(2.0, 6.0), 1)
    rest = round(rng.uniform(1.0, 3.0), 1)
    if kind == "isolate_watcher":
        w = rng.choice(WATCHER_HOSTS)
        return Step(kind, hold, rest, (w,), tuple(h for h in ALL_HOSTS if h != w))
    if kind == "split_random":
        hosts = list(ALL_HOSTS)
        rng.shuffle(hosts)
        cut = rng.randint(1, len(hosts) - 1)
        return Step(kind, hold, rest, tuple(sorted(hosts[:cut])), tuple(sorted(hosts[cut:])))
    if kind == "one_way":
        receivers = tuple(sorted(rng.sample(ALL_HOSTS, rng.randint(1, 3))))
        senders = tuple(sorted(rng.sample([h for h in ALL_HOSTS if h not in receivers], rng.randint(1, 3))))
        return Step(kind, hold, rest, receivers, senders)
    if kind == "bridge":
        hosts = list(ALL_HOSTS)
        rng.shuffle(hosts)
        middle = hosts.pop()
        cut = rng.randint(1, len(hosts) - 1)
        del middle  # the bridge host is the one in neither side
        return Step(kind, hold, rest, tuple(sorted(hosts[:cut])), tuple(sorted(hosts[cut:])))
    if kind in ("kill_primary", "restart_primary_empty"):
        return Step(kind, hold, rest, ("primary",))
    if kind == "kill_replica":
        return Step(kind, hold, rest, ("replica",))
    if kind == "pause_primary_short":
        return Step(kind, round(rng.uniform(0.2, 0.7), 1), rest, ("primary",))
    if kind == "pause_primary_long":
        return Step(kind, round(rng.uniform(1.5, 4.0), 1), rest, ("primary",))
    if kind == "clock_jump_watcher":
        return Step(kind, round(rng.uniform(3.0, 5.0), 1), rest, (rng.choice(WATCHER_HOSTS),))
    if kind == "restart_watcher":
        return Step(kind, round(rng.uniform(0.5, 3.0), 1), rest, (rng.choice(WATCHER_HOSTS),))
    if kind == "flapping":
        return Step(kind, hold, rest, (str(rng.randint(0, 2**31)),))
    return Step("partition_2013", hold, rest)


def _resolve(s: Session, target: str) -> str:
    if target == "primary":
        return s.primary()
    if target == "replica":
        primary = s.primary()
        return sorted(r for r in REDIS_HOSTS if r != primary)[0]
    return target


def _partition_2013(s: Session) -> None:
    primary = s.primary()
    replicas = [r for r in REDIS_HOSTS if r != primary]
    s.rig.partition(
        [primary, CLIENT_HOST, "w1"], [*replicas, "w2", "w3"], label=f"partition 2013 around {primary}"
    )


def apply_step(s: Session, step: Step) -> None:
    """Apply, hold and undo one step."""
    rig = s.rig
    kind = step.kind
    if kind == "partition_2013":
        _partition_2013(s)
        s.sleep(step.hold_s)
        rig.heal()
    elif kind in ("isolate_watcher", "split_random"):
        rig.partition(
            step.targets, step.other, label=f"{kind}: {','.join(step.targets)} | {','.join(step.other)}"
        )
        s.sleep(step.hold_s)
        rig.heal()
    elif kind == "bridge":
        rig.partition(
            step.targets, step.other, label=f"bridge: {','.join(step.targets)} | {','.join(step.other)}"
        )
        s.sleep(step.hold_s)
        rig.heal()
    elif kind == "one_way":
        rig.one_way(step.targets, step.other)
        s.sleep(step.hold_s)
        rig.heal()
    elif kind in ("kill_primary", "kill_replica"):
        node = _resolve(s, step.targets[0])
        rig.kill(node)
        s.sleep(step.hold_s)
        s.restart_redis(node)
    elif kind == "restart_primary_empty":
        node = _resolve(s, step.targets[0])
        rig.kill(node)
        rig.restart_redis(node, follow=None)
        s.sleep(step.hold_s)
    elif kind in ("pause_primary_short", "pause_primary_long"):
        node = _resolve(s, step.targets[0])
        rig.pause(node)
        s.sleep(step.hold_s)
        rig.resume(node)
    elif kind == "clock_jump_watcher":
        # A stopped watcher's monotonic clock jumps by hold_s relative to the others when it
        # resumes: it must notice (hold mode) rather than act on stale state.
        rig.pause(step.targets[0])
        s.sleep(step.hold_s)
        rig.resume(step.targets[0])
    elif kind == "restart_watcher":
        rig.kill(step.targets[0])
        s.sleep(step.hold_s)
        rig.event(f"start watcher {step.targets[0]} again")
        rig.spawn_watcher(step.targets[0])
    elif kind == "flapping":
        rng = random.Random(int(step.targets[0]))
        deadline_s = step.hold_s
        spent = 0.0
        while spent < deadline_s:
            down, up = rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)
            _partition_2013(s)
            s.sleep(down)
            rig.set_blocked((), "flap up")
            s.sleep(up)
            spent += down + up
    else:
        raise ValueError(f"unknown step kind {kind}")
    s.sleep(step.rest_s)


def schedule_body(seed: int) -> Callable[[Session], None]:
    steps = make_schedule(seed)

    def body(s: Session) -> None:
        for step in steps:
            s.rig.event(f"step {step.describe()}")
            apply_step(s, step)

    return body
