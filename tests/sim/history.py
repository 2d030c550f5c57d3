"""When things were disturbed, so invariants can ask "was X healthy during [t0, t1]?".

Keys are strings: ``node:r1`` (dead or paused long enough to matter), ``node-any:r1`` (dead
or paused at all), ``watcher:w1`` (crashed, paused, or its clock jumped), ``link:a>b``
(a cannot send to b), ``net`` (a drop/duplicate/delay phase). Intervals may overlap; an
open interval ends at +inf.
"""

from __future__ import annotations

INF = float("inf")


class History:
    __slots__ = ("_depth", "_spans")

    def __init__(self) -> None:
        self._spans: dict[str, list[list[float]]] = {}
        self._depth: dict[str, int] = {}

    def open(self, key: str, t: float) -> None:
        depth = self._depth.get(key, 0)
        self._depth[key] = depth + 1
        if depth == 0:
            self._spans.setdefault(key, []).append([t, INF])

    def close(self, key: str, t: float) -> None:
        depth = self._depth.get(key, 0)
        if depth <= 0:
            return
        self._depth[key] = depth - 1
        if depth == 1:
            self._spans[key][-1][1] = t

    def point(self, key: str, t: float) -> None:
        self._spans.setdefault(key, []).append([t, t])

    def is_open(self, key: str) -> bool:
        return self._depth.get(key, 0) > 0

    def clean(self, key: str, t0: float, t1: float) -> bool:
        """No disturbance of `key` overlapped [t0, t1]."""
        return all(not (start <= t1 and end >= t0) for start, end in self._spans.get(key, ()))

    def covered(self, key: str, t0: float, t1: float) -> bool:
        """`key` was disturbed during all of [t0, t1] (by one interval)."""
        return any(start <= t0 and end >= t1 for start, end in self._spans.get(key, ()))
