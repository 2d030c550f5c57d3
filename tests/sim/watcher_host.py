"""One watcher process around the pure core, as the runtime would run it.

- Its clock is the simulator's time plus `clock_offset` (clock jumps change the offset).
- Events are delivered one at a time; the actions of a batch run in order. `PersistState`
  is the barrier: `disk` holds exactly the last state this process executed.
- A process pause queues every event (and one overdue tick) and delivers them at resume.
- A crash drops the process; in-flight replies to it are lost. A crash can be armed to hit
  between two actions of the next batch that persists state (so the barrier ran, the rest
  did not), or before the batch, or after it. A restart builds
  ``Watcher(settings, disk, now)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from haredis.core.actions import Action, PersistState
from haredis.core.events import Event, Tick, VoteReplied
from haredis.core.model import DurableState, Snapshot, WatcherSettings

from .trace import EVENT_RENDER, generic_record

if TYPE_CHECKING:
    from .world import World


class CoreWatcher(Protocol):
    def handle(self, event: Event) -> list[Action]: ...

    def snapshot(self) -> Snapshot: ...

    @property
    def durable(self) -> DurableState: ...


WatcherFactory = Callable[[WatcherSettings, DurableState, float], CoreWatcher]
Builder = Callable[..., Event]


def _changed(new: DurableState, old: DurableState) -> bool:
    """Cheap: the core replaces a primary's record when it changes, so compare identities."""
    a, b = new.primaries, old.primaries
    if len(a) != len(b):
        return True
    for name, rec in a.items():
        other = b.get(name)
        if other is not rec and other != rec:
            return True
    return False


class WatcherHost:
    __slots__ = (
        "alive",
        "clock_offset",
        "crash_armed",
        "crash_deadline",
        "disk",
        "factory",
        "incarnation",
        "index",
        "info_seen",
        "last_durable",
        "name",
        "paused",
        "pending",
        "restart_after",
        "settings",
        "tick_due",
        "votes_in",
        "watcher",
        "world",
    )

    def __init__(
        self, world: World, name: str, index: int, settings: WatcherSettings, factory: WatcherFactory
    ):
        self.world = world
        self.name = name
        self.index = index
        self.settings = settings
        self.factory = factory
        self.clock_offset = 0.0
        self.alive = False
        self.paused = False
        self.pending: list[Builder] = []
        self.tick_due = False
        self.incarnation = 0
        self.disk = DurableState()
        self.watcher: CoreWatcher | None = None
        self.crash_armed = False
        self.crash_deadline = 0.0
        self.restart_after: float | None = None
        # Per incarnation: granted votes delivered to it, and the INFO it has seen.
        self.votes_in: dict[tuple[str, int], set[str]] = {}
        self.info_seen: dict[str, list[tuple[float, float, Any]]] = {}  # node -> [(at, gen_at, info)]
        self.last_durable: DurableState | None = None
        self.start()

    def local_now(self) -> float:
        return self.world.sched.now + self.clock_offset

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.alive = True
        self.paused = False
        self.pending = []
        self.tick_due = False
        self.votes_in = {}
        self.info_seen = {}
        now = self.local_now()
        self.watcher = watcher = self.factory(self.settings, self.disk, now)
        self.last_durable = None
        self.world.checker.on_start(self, watcher.durable)
        self.last_durable = watcher.durable
        tick = self.settings.tick_interval
        self.world.sched.after(self.world.rng.random() * tick, self._tick, self.incarnation)

    def crash(self, why: str = "crash") -> None:
        if not self.alive:
            return
        world = self.world
        if self.paused:
            world.history.close(f"watcher:{self.name}", world.sched.now)
        self.alive = False
        self.paused = False
        self.watcher = None
        self.pending = []
        self.crash_armed = False
        self.incarnation += 1
        world.history.open(f"watcher:{self.name}", world.sched.now)
        world.note(self.name, why)
        if self.restart_after is not None:
            world.sched.after(self.restart_after, self.restart)
            self.restart_after = None

    def restart(self) -> None:
        if self.alive:
            return
        self.world.history.close(f"watcher:{self.name}", self.world.sched.now)
        self.world.note(self.name, "restart (from the state on disk)")
        self.start()

    def pause(self) -> None:
        if not self.alive or self.paused:
            return
        self.paused = True
        self.world.history.open(f"watcher:{self.name}", self.world.sched.now)

    def resume(self) -> None:
        if not self.alive or not self.paused:
            return
        self.paused = False
        self.world.history.close(f"watcher:{self.name}", self.world.sched.now)
        pending, self.pending = self.pending, []
        incarnation = self.incarnation
        for builder in pending:
            if self.incarnation != incarnation or self.paused:
                return
            self._handle(builder(now=self.local_now()))
        if self.tick_due and self.incarnation == incarnation:
            self.tick_due = False
            self._tick(incarnation)

    # -- delivery ---------------------------------------------------------------------------

    def _tick(self, incarnation: int) -> None:
        if incarnation != self.incarnation or not self.alive:
            return
        if self.paused:
            self.tick_due = True
            return
        world = self.world
        interval = self.settings.tick_interval
        jitter = world.config.tick_jitter
        world.sched.after(
            interval * (1.0 + jitter * (2.0 * world.rng.random() - 1.0)), self._tick, incarnation
        )
        self._handle(Tick(now=self.local_now()))

    def deliver(self, builder: Builder) -> None:
        if not self.alive:
            return
        if self.paused:
            self.pending.append(builder)
            return
        self._handle(builder(now=self.local_now()))

    def _handle(self, event: Event) -> None:
        world = self.world
        watcher = self.watcher
        assert watcher is not None
        now = world.sched.now
        world.trace.records.append((now, self.name, EVENT_RENDER.get(type(event), generic_record)(event)))
        if type(event) is VoteReplied and event.reply.granted:
            key = (event.reply.primary, event.reply.epoch)
            voters = self.votes_in.get(key)
            if voters is None:
                self.votes_in[key] = {event.reply.sender}
            else:
                voters.add(event.reply.sender)
        actions = watcher.handle(event)
        if not actions:
            return
        # The core changes its durable state only together with a PersistState (its
        # contract); what it persists and what it sends are checked as they execute.
        has_barrier = type(actions[0]) is PersistState or any(type(a) is PersistState for a in actions)
        if has_barrier:
            durable = watcher.durable
            last = self.last_durable
            if last is None or _changed(durable, last):
                world.checker.on_durable(self, durable)
                self.last_durable = durable
        if self.crash_armed and ((has_barrier and len(actions) >= 2) or now >= self.crash_deadline):
            stop = world.rng.randint(0, len(actions))
            incarnation = self.incarnation
            for action in actions[:stop]:
                world.execute(self, action)
                if self.incarnation != incarnation:
                    return
            self.crash(f"crash after action {stop} of {len(actions)} of a batch")
            return
        execute = world.execute
        for action in actions:
            execute(self, action)
