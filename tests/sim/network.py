"""The network between watchers, and between watchers and Redis nodes.

Every message gets a one-way delay (base + uniform jitter, plus extra jitter during a delay
phase, which reorders messages). During a drop phase each message is lost with probability
`drop`; during a duplicate phase a peer message is delivered twice. Redis commands ride on
TCP: they are never duplicated or reordered within a request, a lost one ends in a timeout.

Cuts are sets of directed (from, to) host pairs. A symmetric partition blocks both
directions; a one-way cut only one. Reachability is checked when a message is sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from .history import History
from .scheduler import Scheduler


class Network:
    __slots__ = (
        "_cuts",
        "_next_cut",
        "blocked",
        "drop",
        "dup",
        "extra_jitter",
        "history",
        "peer_delay",
        "peer_jitter",
        "redis_delay",
        "redis_jitter",
        "rng",
        "sched",
    )

    def __init__(
        self,
        sched: Scheduler,
        rng: random.Random,
        history: History,
        *,
        peer_delay: float,
        peer_jitter: float,
        redis_delay: float,
        redis_jitter: float,
    ) -> None:
        self.sched = sched
        self.rng = rng
        self.history = history
        self.peer_delay = peer_delay
        self.peer_jitter = peer_jitter
        self.redis_delay = redis_delay
        self.redis_jitter = redis_jitter
        self.blocked: set[tuple[str, str]] = set()
        self._cuts: dict[int, frozenset[tuple[str, str]]] = {}
        self._next_cut = 0
        self.drop = 0.0
        self.dup = 0.0
        self.extra_jitter = 0.0

    # -- cuts -------------------------------------------------------------------------------

    def cut(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Block the directed pairs until `heal(id)`; returns the cut's id."""
        frozen = frozenset(pairs)
        self._next_cut += 1
        self._cuts[self._next_cut] = frozen
        now = self.sched.now
        for a, b in sorted(frozen):
            self.history.open(f"link:{a}>{b}", now)
        self.blocked |= frozen
        return self._next_cut

    def heal(self, cut_id: int) -> None:
        pairs = self._cuts.pop(cut_id, None)
        if pairs is None:
            return
        now = self.sched.now
        for a, b in sorted(pairs):
            self.history.close(f"link:{a}>{b}", now)
        self.blocked = set().union(*self._cuts.values()) if self._cuts else set()

    def heal_all(self) -> None:
        for cut_id in sorted(self._cuts):
            self.heal(cut_id)

    def can(self, a: str, b: str) -> bool:
        return (a, b) not in self.blocked

    # -- phases -----------------------------------------------------------------------------

    def set_phase(
        self, *, drop: float | None = None, dup: float | None = None, jitter: float | None = None
    ) -> None:
        was = self.drop > 0 or self.dup > 0 or self.extra_jitter > 0
        dropping = self.drop > 0
        if drop is not None:
            self.drop = drop
        if dup is not None:
            self.dup = dup
        if jitter is not None:
            self.extra_jitter = jitter
        now = (self.drop > 0) or (self.dup > 0) or (self.extra_jitter > 0)
        if now and not was:
            self.history.open("net", self.sched.now)
        elif was and not now:
            self.history.close("net", self.sched.now)
        if self.drop > 0 and not dropping:
            self.history.open("net-drop", self.sched.now)
        elif dropping and not self.drop > 0:
            self.history.close("net-drop", self.sched.now)

    # -- sending ----------------------------------------------------------------------------

    def send_peer(self, a: str, b: str, fn: Callable[..., None], *args: Any) -> None:
        """A watcher-to-watcher message: may be dropped, duplicated, delayed and reordered."""
        if (a, b) in self.blocked:
            return
        rng = self.rng
        if self.drop and rng.random() < self.drop:
            return
        copies = 2 if self.dup and rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.peer_delay + rng.random() * self.peer_jitter
            if self.extra_jitter:
                delay += rng.random() * self.extra_jitter
            self.sched.after(delay, fn, *args)

    def redis_delay_or_loss(self, a: str, b: str) -> float:
        """The delay of one leg of a Redis request or reply, or -1.0 if it never arrives
        (then the watcher's timeout answers)."""
        if (a, b) in self.blocked:
            return -1.0
        rng = self.rng
        if self.drop and rng.random() < self.drop:
            return -1.0
        delay = self.redis_delay + rng.random() * self.redis_jitter
        if self.extra_jitter:
            delay += rng.random() * self.extra_jitter
        return delay
