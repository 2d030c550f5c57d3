"""PING probes without a task per probe: the watcher's steady job, done with callbacks.

A probe used to be a task awaiting ``RedisLink.ping`` under its own ``asyncio.timeout``;
with a thousand primaries (two thousand instances probed every second) the task, the
timeout and the stream reader's round were most of what a probe cost. Here a probe is a
write and a callback:

* `Prober.channel(link)` gives the one `ProbeChannel` of a probe link: the connection it
  probes over, opened by the link itself (TCP or TLS, AUTH, CLIENT SETNAME, connect timeout:
  `ProbeTarget.open_transport`) in one task per (re)connect, and then handed to a small
  `asyncio.Protocol` that splits the replies into lines.
* `ProbeChannel.request(timeout, done)` writes the PING at once (or when the connect is done)
  and returns; the reply line is turned into the answer by the link (`ping_answer`: PONG, or
  the first word of an error reply such as LOADING, BUSY, MASTERDOWN or NOAUTH, which are
  answers) and `done(reply, None)` runs from the protocol's ``data_received``.
* Deadlines: ONE timer for every probe of the runtime (`_Deadlines`, a heap). It is armed
  at the earliest deadline of a probe still waiting, so it fires about once per probe
  timeout, not once per probe. A probe past its deadline fails with TIMEOUT and, if its
  PING was sent, its connection is dropped (a late PONG would otherwise answer the next
  PING); one still waiting for the connect fails without aborting the connect (the next
  probe finds it ready), as `RedisLink.ping` does.

Failures are mapped by the link exactly as `RedisLink.ping` maps them (`ProbeTarget.failure`):
REFUSED and connect errors come from the connect; a connection the server closed or reset
fails the PING in flight with RESET, or, if it was idle, the next PING (as the next PING on
such a connection did before: a killed instance is seen as reset, then refused); our own
deadline is TIMEOUT. A reply that our loop received in the same iteration as the deadline
counts: the loop runs its I/O callbacks before its timers.

Callbacks never run inside `ping` itself (a failure known at once is reported on the next
loop pass): the runtime calls `ping` while executing the core's actions, and feeding the core
from there would run an event in the middle of another's actions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, cast

from haredis.core.events import FailureKind
from haredis.redis_link import SERVER_CLOSED, LinkError

log = logging.getLogger("haredis.prober")

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

# (reply, None) for an answer, (None, error) for a failure; exactly one is None.
ProbeDone = Callable[[str | None, LinkError | None], None]
ReplyDone = Callable[[_T | None, LinkError | None], None]

# A reply line longer than this is not a PING reply (asyncio's StreamReader limit).
_MAX_LINE = 64 * 1024
# A bulk reply (INFO's text) longer than this is not an INFO reply (a few KB in practice).
_MAX_BULK = 4 * 1024 * 1024


class ChannelTarget(Protocol):
    """What every channel needs from its link: connections and failure mapping."""

    async def open_transport(self) -> asyncio.StreamWriter:
        """A new connected, authenticated and named connection, handed over: its transport
        gets our protocol; the writer is kept as long as the transport (it closes the
        transport when it is collected)."""
        ...

    def failure(self, exc: Exception, timeout: float) -> LinkError:
        """What a request that met `exc` reports (TimeoutError: our deadline)."""
        ...


class ProbeTarget(ChannelTarget, Protocol):
    """What the prober needs from a probe link (redis_link.RedisLink; metrics.TimedProbeLink
    around one adds the round-trip observation)."""

    def ping_wire(self) -> bytes:
        """The PING command as sent to this instance (rename-command applied)."""
        ...

    def ping_answer(self, line: bytes) -> str:
        """The answer in one reply line (PONG, or an error reply's code); raises otherwise."""
        ...

    def answered_in(self, seconds: float) -> None:
        """An answered PING took `seconds` from the write (or the request) to its reply."""
        ...


class InfoTarget(ChannelTarget, Protocol, Generic[_T_co]):
    """What an INFO channel needs from an info link (redis_link.RedisLink)."""

    def info_wire(self) -> bytes:
        """The INFO command as sent to this instance (sections, rename-command applied)."""
        ...

    def info_answer(self, frame: bytes) -> _T_co:
        """The answer in one whole reply frame (a bulk string or an error reply); raises
        if the frame is not an INFO reply at all."""
        ...


_TARGET_METHODS = ("ping_wire", "open_transport", "ping_answer", "failure", "answered_in")
_INFO_METHODS = ("info_wire", "open_transport", "info_answer", "failure")


def as_probe_target(link: object) -> ProbeTarget | None:
    """`link` if it offers what the prober needs (directly, or through a wrapper that hands
    on its wrapped link's attributes, as metrics.TimedProbeLink does), else None."""
    if all(callable(getattr(link, name, None)) for name in _TARGET_METHODS):
        return cast(ProbeTarget, link)
    return None


def as_info_target(link: object) -> InfoTarget[object] | None:
    """`link` if it can be asked INFO over an info channel, else None."""
    if all(callable(getattr(link, name, None)) for name in _INFO_METHODS):
        return cast(InfoTarget[object], link)
    return None


class _Probe:
    """One PING waiting for its answer."""

    __slots__ = ("channel", "deadline", "done", "key", "retried", "settled", "started", "timeout")

    def __init__(
        self, channel: ProbeChannel[object], timeout: float, done: ReplyDone[object], now: float, key: int
    ) -> None:
        self.channel = channel
        self.timeout = timeout
        self.done = done
        self.started = now
        self.deadline = now + timeout
        self.key = key
        self.settled = False
        self.retried = False  # sent again after its connection was lost (info channels)


class _Deadlines:
    """The deadlines of every probe in flight, behind one loop timer.

    The heap holds (deadline, key) pairs and `_waiting` the probes by key: an answered probe
    leaves `_waiting` at once (and is freed: a probe that lived until its deadline in the heap
    outlived the young generations and made the cyclic collector scan the whole heap far more
    often), while its pair stays in the heap (removing it would cost a search) until it
    reaches the top. The timer is always armed at the earliest probe still waiting, so it
    fires about once per probe timeout rather than once per probe."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int]] = []  # no references: the collector skips them
        self._waiting: dict[int, _Probe] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def new_probe(self, channel: ProbeChannel[object], timeout: float, done: ReplyDone[object]) -> _Probe:
        probe = _Probe(channel, timeout, done, self._loop.time(), next(self._keys))
        self._waiting[probe.key] = probe
        heapq.heappush(self._heap, (probe.deadline, probe.key))
        if self._timer is None or probe.deadline < self._timer_at:
            self._arm()
        return probe

    def settled(self, probe: _Probe) -> None:
        self._waiting.pop(probe.key, None)

    def _arm(self) -> None:
        heap, waiting = self._heap, self._waiting
        while heap and heap[0][1] not in waiting:
            heapq.heappop(heap)
        if self._timer is not None:
            if heap and self._timer_at == heap[0][0]:
                return
            self._timer.cancel()
            self._timer = None
        if heap:
            self._timer_at = heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        heap, waiting = self._heap, self._waiting
        expired: list[_Probe] = []
        while heap and (heap[0][1] not in waiting or heap[0][0] <= now):
            probe = waiting.pop(heapq.heappop(heap)[1], None)
            if probe is not None:
                expired.append(probe)
        for probe in expired:
            if not probe.settled:  # an earlier one's dropped connection may have failed it
                probe.channel.timed_out(probe)
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._waiting.clear()


class _LineProtocol(asyncio.Protocol):
    """Splits what one channel connection receives into replies for its channel: a reply
    line, or a whole bulk string (``$<size>\\r\\n<size bytes>\\r\\n``: INFO's reply)."""

    def __init__(self, channel: ProbeChannel[object], writer: asyncio.StreamWriter) -> None:
        self.channel: ProbeChannel[object] | None = channel  # None once the channel dropped it
        self.writer = writer  # kept: it closes the transport when it is collected
        self.transport = writer.transport
        self._partial = b""

    def data_received(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
            self._partial = b""
        start = 0
        while self.channel is not None:
            end = data.find(b"\n", start)
            if end < 0:
                break
            stop = end + 1
            if data[start] == 0x24:  # "$": the line is a bulk string's header
                try:
                    size = int(data[start + 1 : end])
                except ValueError:
                    size = -1  # not a bulk header: handed on as a line, the answer refuses it
                if size > _MAX_BULK:
                    self.channel.overlong(data[start:stop])
                    return
                if size >= 0:
                    stop += size + 2
                    if stop > len(data):
                        break  # the rest of the bulk string is still on its way
            self.channel.line(self, data[start:stop])
            start = stop
        if self.channel is not None and start < len(data):
            self._partial = data[start:]
            limit = _MAX_BULK + _MAX_LINE if self._partial[0] == 0x24 else _MAX_LINE
            if len(self._partial) > limit:
                self.channel.overlong(self._partial)

    def eof_received(self) -> bool:
        return False  # close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None:
            self.channel.lost(self, exc)


class ProbeChannel(Generic[_T]):
    """The probes of one instance: one connection, PINGs sent on it in order (the core has
    one in flight per instance; a second one is pipelined behind it and answered in order).

    The same for INFO (`Prober.info_channel`): a connection of its own (a slow INFO never
    delays a PING), the reply frame turned into the answer by the link's `info_answer`."""

    def __init__(
        self,
        target: ChannelTarget,
        deadlines: _Deadlines,
        loop: asyncio.AbstractEventLoop,
        *,
        wire: bytes,
        answer: Callable[[bytes], _T],
        observe: Callable[[float], None] | None = None,
        reconnect_after_idle_close: bool = False,
        what: str = "PING",
    ) -> None:
        self._target = target
        self._what = what  # the command, in failures
        self._wire = wire
        self._answer = answer
        self._observe = observe
        # INFO as RedisLink.info ran it: a connection the server closed while idle is
        # replaced and the request goes on the new one (a PING meets the close: RESET).
        self._reconnect_after_idle_close = reconnect_after_idle_close
        self._deadlines = deadlines
        self._loop = loop
        self._protocol: _LineProtocol | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._sent: collections.deque[_Probe] = collections.deque()  # written, in order
        self._waiting: list[_Probe] = []  # for the connect
        self._lost_idle: Exception | None = None  # the server closed the idle connection
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    def request(self, timeout: float, done: ReplyDone[_T]) -> None:
        """Send the request (PING, INFO) now (or once connected); `done` runs with its
        answer or failure."""
        if self._closed:
            raise RuntimeError("probe channel closed")
        probe = self._deadlines.new_probe(
            cast("ProbeChannel[object]", self), timeout, cast("ReplyDone[object]", done)
        )
        lost, self._lost_idle = self._lost_idle, None
        if lost is not None and self._reconnect_after_idle_close:
            lost = None
        if lost is not None:
            # As a PING written to a connection the server had closed: it meets the close.
            self._loop.call_soon(self._fail, probe, lost)
        elif self._protocol is not None:
            self._protocol.transport.write(self._wire)
            self._sent.append(probe)
        else:
            self._waiting.append(probe)
            if self._connecting is None:
                self._connecting = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            writer = await self._target.open_transport()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            waiting, self._waiting = self._waiting, []
            for probe in waiting:
                self._fail(probe, exc)
            return
        finally:
            self._connecting = None
        if self._closed:
            writer.close()
            return
        protocol = _LineProtocol(cast("ProbeChannel[object]", self), writer)
        transport = protocol.transport
        transport.set_protocol(protocol)
        self._protocol = protocol
        waiting, self._waiting = self._waiting, []
        for probe in waiting:
            if not probe.settled:
                transport.write(self._wire)
                self._sent.append(probe)

    def line(self, protocol: _LineProtocol, line: bytes) -> None:
        """One reply line arrived: it answers the oldest PING sent."""
        if not self._sent:  # nothing asked: the stream is out of step with our PINGs
            self._drop()
            return
        probe = self._sent.popleft()
        try:
            reply = self._answer(line)
        except Exception as exc:
            self._drop()
            self._fail(probe, exc)
            return
        if probe.settled:
            return
        self._settle(probe)
        if self._observe is not None:
            self._observe(self._loop.time() - probe.started)
        self._report(probe, reply, None)

    def overlong(self, data: bytes) -> None:
        """More than a reply line's worth without a line end: not a PING reply."""
        probe = self._sent.popleft() if self._sent else None
        self._drop()
        if probe is not None:
            self._fail(probe, LinkError(FailureKind.ERROR, f"unexpected {self._what} reply: {data!r:.200}"))

    def lost(self, protocol: _LineProtocol, exc: Exception | None) -> None:
        """The server closed or reset the connection."""
        failure = exc if exc is not None else ConnectionResetError(SERVER_CLOSED)
        protocol.channel = None
        if self._protocol is protocol:
            self._protocol = None
        sent = [probe for probe in self._sent if not probe.settled]
        self._sent.clear()
        if not sent:
            self._lost_idle = failure
        if self._reconnect_after_idle_close:
            # As RedisLink's calls: a request that met a closed connection goes once more on
            # a new one (the close may have come before the request: a restarted server).
            again = [probe for probe in sent if not probe.retried]
            sent = [probe for probe in sent if probe.retried]
            for probe in again:
                probe.retried = True
                self._waiting.append(probe)
            if again and self._connecting is None and not self._closed:
                self._connecting = self._loop.create_task(self._connect())
        for probe in sent:
            self._fail(probe, failure)

    def timed_out(self, probe: _Probe) -> None:
        if probe in self._waiting:  # the connect goes on: the next probe may find it ready
            self._waiting.remove(probe)
        else:
            # Sent and unanswered: a late PONG would answer the next PING, so the connection
            # is never used again.
            self._sent.remove(probe)
            self._drop()
        self._fail(probe, TimeoutError())

    def _drop(self) -> None:
        """Close the connection (it is out of step with our PINGs). PINGs sent on it after
        the one that failed go again on a new connection, as if they had waited for it."""
        protocol, self._protocol = self._protocol, None
        self._lost_idle = None
        if protocol is not None:
            protocol.channel = None
            protocol.transport.close()
        later = [probe for probe in self._sent if not probe.settled]
        self._sent.clear()
        if later:
            self._waiting.extend(later)
            if self._connecting is None and not self._closed:
                self._connecting = self._loop.create_task(self._connect())

    def _fail(self, probe: _Probe, exc: Exception) -> None:
        if probe.settled:
            return
        self._settle(probe)
        error = exc if isinstance(exc, LinkError) else self._target.failure(exc, probe.timeout)
        self._report(probe, None, error)

    def _settle(self, probe: _Probe) -> None:
        probe.settled = True
        self._deadlines.settled(probe)

    @staticmethod
    def _report(probe: _Probe, reply: object, error: LinkError | None) -> None:
        try:
            probe.done(reply, error)
        except Exception:
            log.exception("probe callback failed")

    async def close(self) -> None:
        """Drop the connection and stop; probes still in flight are never answered."""
        self._closed = True
        for probe in [*self._sent, *self._waiting]:
            self._settle(probe)
        self._sent.clear()
        self._waiting.clear()
        self._drop()
        task = self._connecting
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


class Prober:
    """The probe channels of a runtime (one per probe link) and their shared deadline timer.
    Create it inside the running loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadlines = _Deadlines(self._loop)

    def channel(self, target: ProbeTarget) -> ProbeChannel[str]:
        return ProbeChannel(
            target,
            self._deadlines,
            self._loop,
            wire=target.ping_wire(),
            answer=target.ping_answer,
            observe=target.answered_in,
        )

    def info_channel(self, target: InfoTarget[_T]) -> ProbeChannel[_T]:
        """INFO over a connection of its own: `request` writes the link's INFO command and
        `done` gets `info_answer` of the reply frame."""
        return ProbeChannel(
            target,
            self._deadlines,
            self._loop,
            wire=target.info_wire(),
            answer=target.info_answer,
            reconnect_after_idle_close=True,
            what="INFO",
        )

    def close(self) -> None:
        self._deadlines.close()


__all__ = [
    "ChannelTarget",
    "InfoTarget",
    "ProbeChannel",
    "ProbeDone",
    "ProbeTarget",
    "Prober",
    "ReplyDone",
    "as_info_target",
    "as_probe_target",
]
