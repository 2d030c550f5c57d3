"""Observers that run during a schedule, each a thread inside one host's namespace.

* :class:`WriteProber` (one per Redis node): every ~50 ms a tiny ``SET probe:<node>`` against
  its node, from inside the node's own namespace, so no partition ever hides the node from its
  prober. The node *accepts writes* at that moment when the SET succeeds (a replica answers
  READONLY, a fenced primary NOREPLICAS, a paused or dead one nothing). The checker overlays
  the nodes' timelines to find the longest time two nodes accepted writes at once.
* :class:`EpochSampler` (one per watcher): every ~250 ms ``HAREDIS.STATUS`` on its watcher,
  recording ``current_epoch`` and ``config_epoch``, so the checker sees any epoch going back.

Both are bounded: they stop at :meth:`stop` or after ``max_seconds``, whichever comes first.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .rig import PRIMARY_NAME, REDIS_PORT, WATCHER_PORT, enter_netns

PROBE_INTERVAL = 0.05
EPOCH_INTERVAL = 0.25


@dataclass
class _Observer:
    ns: str
    ip: str
    name: str
    max_seconds: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._body, name=f"obs-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _body(self) -> None:
        enter_netns(self.ns)
        deadline = time.monotonic() + self.max_seconds
        self.loop(deadline)

    def loop(self, deadline: float) -> None:
        raise NotImplementedError


@dataclass
class WriteProber(_Observer):
    # (wall time of the attempt, accepted?)
    samples: list[tuple[float, bool]] = field(default_factory=list)

    def loop(self, deadline: float) -> None:
        client = redis.Redis(
            self.ip,
            REDIS_PORT,
            socket_timeout=0.2,
            socket_connect_timeout=0.2,
            protocol=2,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                began = time.monotonic()
                at = time.time()
                try:
                    accepted = bool(client.set(f"probe:{self.name}", at))
                except (redis.RedisError, OSError):
                    accepted = False
                self.samples.append((at, accepted))
                self._stop.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - began)))
        finally:
            client.close()


@dataclass
class EpochSampler(_Observer):
    # (wall time, current_epoch, config_epoch)
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def loop(self, deadline: float) -> None:
        client = redis.Redis(
            self.ip,
            WATCHER_PORT,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            protocol=2,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError, OSError, ValueError, KeyError, IndexError):
                    doc = json.loads(client.execute_command("HAREDIS.STATUS"))
                    for p in doc["primaries"]:
                        if p["name"] == PRIMARY_NAME:
                            self.samples.append(
                                (time.time(), int(p["current_epoch"]), int(p["config_epoch"]))
                            )
                self._stop.wait(EPOCH_INTERVAL)
        finally:
            client.close()
