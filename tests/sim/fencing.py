"""The executor's side of write fencing, as `haredis/runtime.py` does it, on the simulated
network: `Fence` (CONFIG SET min-replicas-to-write / min-replicas-max-lag, no answer event)
and a `Promote` that carries `fence_old`:

1. CLIENT PAUSE <fence_pause> WRITE on the old primary (a failure or timeout means "not
   paused": nothing is promoted, PromoteDone(role_ok=False) goes back at once);
2. REPLICAOF NO ONE on the target;
3. if the pause worked: REPLICAOF <target> on the old primary if the promotion worked, then
   CLIENT UNPAUSE (one try block: a failed REPLICAOF skips the UNPAUSE, the pause then
   expires by itself);
4. only then PromoteDone reaches the core.

Each command is a request from that watcher's host to one node, subject to the network
between them and to the action's timeout, like any other. The process running the steps is
the watcher's: a crash ends the sequence, a SIGSTOP holds it until SIGCONT.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from haredis.core.events import PromoteDone
from haredis.core.model import Address

from .redis_node import FENCE, PAUSE_WRITES, PROMOTE, REPLICAOF, UNPAUSE, Request

if TYPE_CHECKING:
    from .watcher_host import WatcherHost
    from .world import World

FENCE_TIMEOUT = 2.0  # the runtime's CONFIG SET timeout
RESUME_POLL = 0.05  # how often a step waits for its SIGSTOPped watcher process


@dataclass(frozen=True, slots=True)
class Step:
    """One command the executor sends on its own (what `World._redis` needs of an action)."""

    primary: str
    address: Address
    timeout: float
    epoch: int = 0  # PROMOTE (for the checker)
    target: Address | None = None  # REPLICAOF
    seconds: float = 0.0  # CLIENT PAUSE
    min_replicas: int = 0  # CONFIG SET
    max_lag: int = 0


def send_fence(world: World, host: WatcherHost, action: Any) -> None:
    node = world.node_at(action.address)
    world.note(
        host.name,
        f"FENCE {node.name if node else '?'} min-replicas {action.min_replicas} max-lag {action.max_lag}s",
    )
    step = Step(
        action.primary,
        action.address,
        FENCE_TIMEOUT,
        min_replicas=action.min_replicas,
        max_lag=action.max_lag,
    )
    world.send_step(host, step, FENCE, _ignore)


def _ignore(req: Request, ok: bool, payload: Any) -> None:
    """The core learns whether a fence took from the next INFO."""


class FencedPromote:
    """One Promote with fence_old, from the first pause to the PromoteDone."""

    def __init__(self, world: World, host: WatcherHost, action: Any) -> None:
        self.world = world
        self.host = host
        self.action = action
        self.incarnation = host.incarnation
        self.paused = False
        self.promoted = False
        self.detail = ""

    def start(self) -> None:
        a = self.action
        step = Step(a.primary, a.fence_old, a.timeout, seconds=a.fence_pause)
        self.world.send_step(self.host, step, PAUSE_WRITES, self._paused)

    # -- continuations ----------------------------------------------------------------------

    def _live(self) -> bool:
        return self.host.alive and self.host.incarnation == self.incarnation

    def _later(self, fn: Any, *args: Any) -> None:
        """Run the next step as soon as the watcher process runs (never after a crash)."""
        if not self._live():
            return
        if self.host.paused:
            self.world.sched.after(RESUME_POLL, self._later, fn, *args)
            return
        fn(*args)

    def _paused(self, req: Request, ok: bool, payload: Any) -> None:
        self._later(self._after_pause, ok)

    def _after_pause(self, ok: bool) -> None:
        world = self.world
        self.paused = ok
        old = world.node_at(self.action.fence_old)
        name = old.name if old else "?"
        world.note(self.host.name, f"fence: pause writes on {name}: {'ok' if ok else 'FAILED'}")
        world.checker.on_fence_pause(self.host, self.action, ok)
        if not ok:
            # As the runtime: an old primary that could not be paused may still take writes,
            # so nothing is promoted; the core aborts and its next attempt waits the lease.
            self.promoted = False
            self.detail = "fence: the old primary could not be paused; not promoting"
            self._answer()
            return
        a = self.action
        world.send_step(self.host, Step(a.primary, a.address, a.timeout, epoch=a.epoch), PROMOTE, self._done)

    def _done(self, req: Request, ok: bool, payload: Any) -> None:
        self._later(self._after_promote, ok, payload)

    def _after_promote(self, ok: bool, payload: Any) -> None:
        self.promoted = bool(ok and payload)
        if not ok:
            self.detail = payload.value
        if not self.paused:
            self._answer()
            return
        a = self.action
        if self.promoted:
            step = Step(a.primary, a.fence_old, a.timeout, target=a.address)
            self.world.send_step(self.host, step, REPLICAOF, self._demoted)
        else:
            self._unpause()

    def _demoted(self, req: Request, ok: bool, payload: Any) -> None:
        self._later(self._after_demote, ok and bool(payload))

    def _after_demote(self, ok: bool) -> None:
        old = self.world.node_at(self.action.fence_old)
        self.world.note(
            self.host.name, f"fence: demote {old.name if old else '?'}: {'ok' if ok else 'FAILED'}"
        )
        if ok:
            self._unpause()
        else:
            self._answer()  # the runtime's try block ends: the pause expires by itself

    def _unpause(self) -> None:
        a = self.action
        self.world.send_step(self.host, Step(a.primary, a.fence_old, a.timeout), UNPAUSE, self._unpaused)

    def _unpaused(self, req: Request, ok: bool, payload: Any) -> None:
        self._later(self._answer)

    def _answer(self) -> None:
        a = self.action
        builder: Any
        if self.detail:
            builder = partial(
                PromoteDone,
                primary=a.primary,
                address=a.address,
                epoch=a.epoch,
                role_ok=self.promoted,
                detail=self.detail,
            )
        else:
            builder = partial(
                PromoteDone, primary=a.primary, address=a.address, epoch=a.epoch, role_ok=self.promoted
            )
        self.host.deliver(builder)
