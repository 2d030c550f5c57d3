"""The virtual clock: a heap of callbacks ordered by (time, sequence number).

The sequence number makes the order of simultaneous events the order they were scheduled,
so a run depends on nothing but the seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Scheduler:
    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self._seq = 0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (never earlier than now)."""
        if when < self.now:
            when = self.now
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + (delay if delay > 0 else 0.0), self._seq, fn, args))

    def run_until(self, end: float, stop: Callable[[], bool] | None = None) -> None:
        """Pop and run every callback due at or before ``end``; ``stop()`` ends early."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            when, _, fn, args = pop(heap)
            self.now = when
            fn(*args)
            if stop is not None and stop():
                return
        self.now = end

    def pending(self) -> int:
        return len(self._heap)
