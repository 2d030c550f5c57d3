"""The asyncio driver around the pure core: it stamps events with the loop's monotonic clock,
feeds them to the Watcher one at a time, and carries out the actions that come back.

Rules it keeps:
* One event at a time. `feed` is synchronous and never awaits, so the core is never
  re-entered; everything slow (Redis commands) runs in tasks that feed their result back.
* Actions run in order, and PersistState is a barrier: nothing after it runs before the
  state is durable (fsync + rename). The write is a group commit done off the event loop
  (see `_commit`): every action that follows a pending PersistState, in its batch or in any
  later one, waits in order until a write covering it is done; one write carries the state
  of every batch fed meanwhile, so a burst of votes costs one fsync, not one each, and the
  loop keeps reading messages while the disk works. Until the write is done the snapshot
  (what clients and the CLI read) is not rebuilt either, so no one learns a vote, an epoch
  or a topology before it is on disk. If a write fails, everything held is dropped and the
  runtime stops: a watcher that cannot remember its votes must not hand any out.
* A task per Redis command, one connection per instance and purpose (probe, info, command),
  so one slow or dead instance never delays another, and a slow INFO never delays a PING.
  Probes, the steady job, are the exception: no task each, a write and a callback (see
  haredis.prober) on a link that offers it; any other link is probed with a task.
* The loop survives: an unexpected exception in a cycle or an action is logged and the loop
  goes on; CancelledError always propagates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from haredis.core.actions import (
    FREEZE_TARGET,
    Action,
    Fence,
    PersistState,
    Probe,
    Promote,
    Publish,
    QueryInfo,
    ReplicaOf,
    RequestVotes,
    SendGossip,
    SendVoteReply,
    Switchover,
    Unfreeze,
)
from haredis.core.events import (
    Event,
    FailureKind,
    InfoFailed,
    InfoReply,
    ProbeFailed,
    ProbeReply,
    PromoteDone,
    ReplicaOfDone,
    SwitchoverDone,
    Tick,
)
from haredis.core.messages import PeerMessage
from haredis.core.model import Address, DurableState, InstanceInfo, Role, Snapshot
from haredis.core.views import StatusRow
from haredis.core.watcher import Watcher
from haredis.prober import ProbeChannel, Prober, as_info_target, as_probe_target

log = logging.getLogger("haredis.runtime")
# Reattaching a replica frozen by an aborted selection; if it fails, the steady state repoints
# it (a replica that follows nothing is misconfigured).
_UNFREEZE_TIMEOUT = 2.0

# Longest a status line (logs, systemd STATUS=) lags a change that published no event.
STATUS_PERIOD = 1.0


class RoleLike(Protocol):
    @property
    def role(self) -> Role: ...


class RedisPort(Protocol):
    """What the runtime needs from one connection to one Redis instance (redis_link.RedisLink)."""

    async def ping(self, timeout: float) -> str: ...
    async def info(self, timeout: float) -> InstanceInfo: ...
    async def role(self, timeout: float) -> RoleLike: ...
    async def promote(self, timeout: float) -> bool: ...
    async def replicaof(self, target: Address, timeout: float) -> None: ...
    async def freeze(
        self, freeze_target: Address, timeout: float
    ) -> tuple[InstanceInfo, InstanceInfo | None]: ...
    async def reattach(self, target: Address, timeout: float) -> bool: ...
    async def failover_to(
        self, target: Address, timeout_ms: int, force: bool = False, *, timeout: float
    ) -> None: ...
    async def failover_state(self, timeout: float) -> str: ...
    async def client_kill_normal_and_pubsub(self, timeout: float) -> int: ...
    async def client_pause_write(self, ms: int, timeout: float) -> None: ...
    async def client_unpause(self, timeout: float) -> None: ...
    async def config_set_many(self, settings: dict[str, str], timeout: float) -> None: ...
    async def config_rewrite(self, timeout: float) -> None: ...
    async def close(self) -> None: ...


class PeerPort(Protocol):
    """What the runtime needs from the peer mesh (peers.PeerMesh)."""

    def broadcast(self, message: PeerMessage) -> None: ...
    def send_to(self, name: str, message: PeerMessage) -> None: ...


LinkFactory = Callable[[str, Address, str], RedisPort]  # (primary, address, purpose) -> link


class PersistFailed(Exception):
    """The durable state could not be written; the watcher must stop."""


def classify(exc: BaseException) -> tuple[FailureKind, str]:
    """Map an exception from a link to a failure kind (links raise LinkError already)."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, FailureKind):
        return kind, str(getattr(exc, "detail", "") or exc)
    if isinstance(exc, ConnectionRefusedError):
        return FailureKind.REFUSED, str(exc)
    if isinstance(exc, ConnectionResetError | BrokenPipeError | EOFError):
        return FailureKind.RESET, str(exc)
    if isinstance(exc, TimeoutError):
        return FailureKind.TIMEOUT, "timeout"
    return FailureKind.ERROR, f"{type(exc).__name__}: {exc}"


@dataclass
class Stats:
    events: int = 0
    actions: int = 0
    action_errors: int = 0
    cycle_errors: int = 0
    cycles: int = 0
    last_cycle_wall: float = 0.0
    last_cycle_mono: float = 0.0


class Runtime:
    def __init__(
        self,
        watcher: Watcher,
        *,
        links: LinkFactory,
        peers: PeerPort,
        persist: Callable[[DurableState], None],
        publish: Callable[[str, str], None],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.watcher = watcher
        self._link_factory = links
        self._links: dict[tuple[str, Address, str], RedisPort] = {}
        # One per probed instance: its channel, or None if its link cannot be probed lean.
        # (primary, address, "probe" | "info") -> channel; None: the link offers none
        self._probe_channels: dict[tuple[str, Address, str], ProbeChannel[Any] | None] = {}
        self._prober: Prober | None = None
        self._peers = peers
        self._persist = persist
        self._publish = publish
        self._clock = clock or time.monotonic
        self._tasks: set[asyncio.Task[None]] = set()
        self._snapshot: Snapshot = watcher.snapshot()
        self._snapshot_stale = False
        self._status = status_line(self._snapshot)
        self._status_at = self._clock()
        self._published = False  # since the status line was last built
        self.stats = Stats()
        self.fatal: BaseException | None = None
        self.stopped = asyncio.Event()
        # Group commit (see _commit): PersistStates seen and known durable, the newest state
        # to write, and the actions waiting, each with the number of PersistStates before it.
        self._persist_seq = 0
        self._durable_seq = 0
        self._newest_state: DurableState | None = None
        self._held: collections.deque[tuple[int, Action]] = collections.deque()
        self._commit_scheduled = False
        self._writing: asyncio.Future[None] | None = None
        # One thread: writes never overlap, so an older state can never land after a newer.
        self._writer: ThreadPoolExecutor | None = None
        self._closed = False  # after close(): writes are synchronous again

    # ------------------------------------------------------------------ feeding the core

    def now(self) -> float:
        return self._clock()

    def feed(self, event: Event) -> None:
        """Hand one event to the core and execute its actions in order."""
        if self.fatal is not None:
            return
        self.stats.events += 1
        try:
            actions = self.watcher.handle(event)
        except Exception:
            # A bug in the core must not kill the watcher; the next event starts clean.
            self.stats.cycle_errors += 1
            log.exception("core failed on an event", extra={"event": type(event).__name__})
            return
        self.run_actions(actions)

    def run_actions(self, actions: list[Action]) -> None:
        """Execute a batch from the core in order. A PersistState is handed to the group commit
        and every action after it waits until it is durable (so does everything after a
        batch still waiting); a failed write stops everything."""
        for action in actions:
            if self.fatal is not None:
                return
            self.stats.actions += 1
            if isinstance(action, PersistState):
                self._persist_seq += 1
                self._newest_state = action.state
                self._schedule_commit()
            elif self.commit_pending:
                self._held.append((self._persist_seq, action))
            else:
                self._run_action(action)

    def _run_action(self, action: Action) -> None:
        try:
            self._execute(action)
        except Exception:
            self.stats.action_errors += 1
            log.exception("action failed", extra={"action": type(action).__name__})

    # ------------------------------------------------------------------ group commit

    @property
    def commit_pending(self) -> bool:
        """Some PersistState is not durable yet (and the actions after it are held)."""
        return self._durable_seq < self._persist_seq

    def _schedule_commit(self) -> None:
        """Write at the end of this loop pass, not now: the events fed in the same pass (a
        pipelined burst of vote requests, say) then share the write."""
        if self._commit_scheduled or self._writing is not None:
            return  # the running write's completion schedules the next one
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self._closed:  # a synchronous caller, or shut down: write now
            self._commit_now()
            return
        self._commit_scheduled = True
        loop.call_soon(self._commit)

    def _commit(self) -> None:
        """Start writing the newest state in the writer thread. The write covers every
        PersistState seen so far: each is a whole DurableState, later ones include the
        changes of the earlier ones, so writing only the newest one is enough."""
        self._commit_scheduled = False
        if self._closed or self.fatal is not None or not self.commit_pending or self._writing is not None:
            return
        state, seq = self._newest_state, self._persist_seq
        assert state is not None
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="haredis-state")
        loop = asyncio.get_running_loop()
        self._writing = loop.run_in_executor(self._writer, self._persist, state)
        self._writing.add_done_callback(lambda done: self._written(seq, done))

    def _commit_now(self) -> None:
        state, seq = self._newest_state, self._persist_seq
        assert state is not None
        try:
            self._persist(state)
        except Exception as exc:
            self._persist_failed(exc)
            return
        self._durable(seq)

    def _written(self, seq: int, done: asyncio.Future[None]) -> None:
        self._writing = None
        if done.cancelled():
            return  # only on close: what is held is dropped, as in a crash
        exc = done.exception()
        if exc is not None:
            self._persist_failed(exc)
            return
        self._durable(seq)
        if self.commit_pending:
            self._schedule_commit()

    def _durable(self, seq: int) -> None:
        """PersistStates up to `seq` are on disk: release what waited for them, in order."""
        self._durable_seq = max(self._durable_seq, seq)
        self._snapshot_stale = True
        while self._held and self._held[0][0] <= self._durable_seq and self.fatal is None:
            self._run_action(self._held.popleft()[1])

    def _persist_failed(self, exc: BaseException) -> None:
        self.fatal = PersistFailed(str(exc))
        self.fatal.__cause__ = exc
        self._held.clear()
        log.critical("cannot persist state, stopping", extra={"error": str(exc)})
        self.stopped.set()

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot of the last completed cycle: what every renderer shows. Built when
        first asked for after a cycle rather than on every cycle: with many primaries it
        costs more than the cycle itself, and most cycles nobody reads it."""
        if self._snapshot_stale:
            self.refresh_snapshot()
        return self._snapshot

    def refresh_snapshot(self) -> Snapshot:
        """Rebuild the snapshot now, unless a state write is pending: the core may hold a
        vote, an epoch or a topology that is not on disk yet, which no client may see. The
        snapshot is then rebuilt when first asked for after the write."""
        if self.commit_pending:
            self._snapshot_stale = True
            return self._snapshot
        self._snapshot = self.watcher.snapshot()
        self._snapshot_stale = False
        return self._snapshot

    # ------------------------------------------------------------------ executing actions

    def _execute(self, action: Action) -> None:
        """One action other than PersistState (run_actions hands those to the commit)."""
        match action:
            case Probe():
                self._start_probe(action)
            case QueryInfo():
                self._start_info(action)
            case Promote():
                self._spawn(self._promote(action))
            case Fence():
                self._spawn(self._fence(action))
            case ReplicaOf():
                self._spawn(self._replicaof(action))
            case Unfreeze():
                self._spawn(self._unfreeze(action))
            case Switchover():
                self._spawn(self._switchover(action))
            case SendGossip(gossip, to):
                if to is None:
                    self._peers.broadcast(gossip)
                else:
                    self._peers.send_to(to, gossip)
            case RequestVotes(request):
                self._peers.broadcast(request)
            case SendVoteReply(to, reply):
                self._peers.send_to(to, reply)
            case Publish(channel, message):
                self._published = True
                self._publish(channel, message)

    def forget_links(self, primary: str) -> None:
        """Close the links of one primary (its credentials changed); re-created on next use."""
        for key in [k for k in self._links if k[0] == primary]:
            self._spawn(self._links.pop(key).close())
        for probed in [k for k in self._probe_channels if k[0] == primary]:
            channel = self._probe_channels.pop(probed)
            if channel is not None:
                self._spawn(channel.close())

    def link(self, primary: str, address: Address, purpose: str) -> RedisPort:
        key = (primary, address, purpose)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = self._link_factory(primary, address, purpose)
        return link

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_probe(self, a: Probe) -> None:
        """PING without a task when the probe link offers it (haredis.prober); the answer is
        fed from the prober's callback."""
        channel = self._lean_channel(a.primary, a.address, "probe")
        if channel is None:
            self._spawn(self._probe(a))
        else:
            channel.request(a.timeout, functools.partial(self._probed, a))

    def _start_info(self, a: QueryInfo) -> None:
        """INFO without a task or redis-py when the info link offers it (haredis.prober's
        info channel: a connection of its own); a freeze is a transaction: the link runs it."""
        channel = None if a.freeze else self._lean_channel(a.primary, a.address, "info")
        if channel is None:
            self._spawn(self._query_info(a))
        else:
            channel.request(a.timeout, functools.partial(self._info_answered, a))

    def _lean_channel(
        self, primary: str, address: Address, role: Literal["probe", "info"]
    ) -> ProbeChannel[Any] | None:
        """The prober channel over one instance's probe or info link, made on first use; None
        (remembered) when the link offers none: the caller then runs the command in a task."""
        key = (primary, address, role)
        try:
            return self._probe_channels[key]
        except KeyError:
            pass
        link = self.link(primary, address, role)
        channel: ProbeChannel[Any] | None = None
        if role == "probe":
            probe_target = as_probe_target(link)
            if probe_target is not None:
                channel = self._get_prober().channel(probe_target)
        else:
            info_target = as_info_target(link)
            if info_target is not None:
                channel = self._get_prober().info_channel(info_target)
        self._probe_channels[key] = channel
        return channel

    def _get_prober(self) -> Prober:
        if self._prober is None:
            self._prober = Prober()
        return self._prober

    def _info_answered(self, a: QueryInfo, reply: object, error: Exception | None) -> None:
        """As _query_info feeds what `RedisLink.info` returns or raises."""
        if isinstance(reply, Exception):
            error = reply
        if error is not None:
            _, detail = classify(error)
            self.feed(InfoFailed(now=self.now(), primary=a.primary, address=a.address, detail=detail))
        elif isinstance(reply, InstanceInfo):
            self.feed(InfoReply(now=self.now(), primary=a.primary, address=a.address, info=reply))
        else:
            detail = f"unexpected INFO answer: {reply!r:.200}"
            self.feed(InfoFailed(now=self.now(), primary=a.primary, address=a.address, detail=detail))

    def _probed(self, a: Probe, reply: str | None, error: Exception | None) -> None:
        if error is not None:
            kind, detail = classify(error)
            self.feed(
                ProbeFailed(now=self.now(), primary=a.primary, address=a.address, kind=kind, detail=detail)
            )
        elif reply is not None:
            self.feed(ProbeReply(now=self.now(), primary=a.primary, address=a.address, reply=reply))

    async def _probe(self, a: Probe) -> None:
        try:
            reply = await self.link(a.primary, a.address, "probe").ping(a.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind, detail = classify(exc)
            self.feed(
                ProbeFailed(now=self.now(), primary=a.primary, address=a.address, kind=kind, detail=detail)
            )
        else:
            self.feed(ProbeReply(now=self.now(), primary=a.primary, address=a.address, reply=reply))

    async def _query_info(self, a: QueryInfo) -> None:
        if a.freeze:
            await self._freeze(a)
            return
        try:
            info = await self.link(a.primary, a.address, "info").info(a.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _, detail = classify(exc)
            self.feed(InfoFailed(now=self.now(), primary=a.primary, address=a.address, detail=detail))
        else:
            self.feed(InfoReply(now=self.now(), primary=a.primary, address=a.address, info=info))

    async def _freeze(self, a: QueryInfo) -> None:
        """QueryInfo(freeze=True): detach the replica, answer with both INFOs (see QueryInfo)."""
        try:
            before, after = await self.link(a.primary, a.address, "info").freeze(FREEZE_TARGET, a.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            _, detail = classify(exc)
            log.warning(
                "could not freeze replica",
                extra={"primary": a.primary, "replica": str(a.address), "error": detail},
            )
            self.feed(InfoFailed(now=self.now(), primary=a.primary, address=a.address, detail=detail))
            return
        # Not a replica (left alone): its INFO answers the freeze all the same.
        info = after if after is not None else before
        frozen_from = before
        self.feed(
            InfoReply(
                now=self.now(), primary=a.primary, address=a.address, info=info, before_freeze=frozen_from
            )
        )

    async def _unfreeze(self, a: Unfreeze) -> None:
        try:
            await self.link(a.primary, a.address, "info").reattach(a.target, _UNFREEZE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "could not reattach frozen replica",
                extra={"primary": a.primary, "replica": str(a.address), "error": classify(exc)[1]},
            )

    async def _promote(self, a: Promote) -> None:
        detail = ""
        paused = a.fence_old is not None and await self._pause_old_primary(a)
        if a.fence_old is not None and not paused:
            # The core skipped the lease wait because it could reach the old primary; now it
            # cannot pause it, so it may still take writes: do not promote. The core sees a
            # failed step, aborts, and its next attempt waits the lease out.
            ok, detail = False, "fence: the old primary could not be paused; not promoting"
        else:
            try:
                ok = await self.link(a.primary, a.address, "command").promote(a.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ok = False
                detail = classify(exc)[1]
        if paused:
            await self._release_old_primary(a, demote=ok)
        log.info(
            "promote",
            extra={
                "primary": a.primary,
                "target": str(a.address),
                "epoch": a.epoch,
                "ok": ok,
                "detail": detail,
            },
        )
        self.feed(
            PromoteDone(
                now=self.now(), primary=a.primary, address=a.address, epoch=a.epoch, role_ok=ok, detail=detail
            )
        )

    async def _pause_old_primary(self, a: Promote) -> bool:
        """CLIENT PAUSE WRITE on the old primary before the promotion: from here until it is
        demoted, a client still talking to it waits instead of writing to a dead branch."""
        assert a.fence_old is not None
        try:
            await self.link(a.primary, a.fence_old, "fence").client_pause_write(
                max(1, int(a.fence_pause * 1000)), a.timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "fence: could not pause the old primary; the promotion waits for its lease",
                extra={"primary": a.primary, "instance": str(a.fence_old), "detail": classify(exc)[1]},
            )
            return False
        return True

    async def _release_old_primary(self, a: Promote, *, demote: bool) -> None:
        """After the promotion: demote the paused old primary to a replica of the new one
        (paused writers then get READONLY and go find the new primary), then unpause it.
        If the promotion failed, only unpause: the old primary is still the primary."""
        assert a.fence_old is not None
        link = self.link(a.primary, a.fence_old, "fence")
        try:
            if demote:
                await link.replicaof(a.address, a.timeout)
            await link.client_unpause(a.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The pause expires by itself (fence_pause); steady state demotes it later.
            log.warning(
                "fence: could not demote or unpause the old primary",
                extra={"primary": a.primary, "instance": str(a.fence_old), "detail": classify(exc)[1]},
            )
        else:
            log.info(
                "fence: old primary paused during the promotion" + (" and demoted" if demote else ""),
                extra={"primary": a.primary, "instance": str(a.fence_old), "target": str(a.address)},
            )

    async def _fence(self, a: Fence) -> None:
        link = self.link(a.primary, a.address, "command")
        try:
            await link.config_set_many(
                {
                    "min-replicas-to-write": str(a.min_replicas),
                    "min-replicas-max-lag": str(a.max_lag),
                    # A live primary pings its replicas every second, so a replica's
                    # master_last_io_seconds_ago tells when it last heard from it.
                    "repl-ping-replica-period": "1",
                },
                timeout=2.0,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "fence: CONFIG SET failed",
                extra={"primary": a.primary, "instance": str(a.address), "detail": classify(exc)[1]},
            )
        else:
            # Best effort: keep it across a Redis restart where Redis has a config file to
            # rewrite (without one, a restarted node is fenced again at its next INFO).
            with contextlib.suppress(Exception):
                await link.config_rewrite(timeout=2.0)
            log.info(
                "fence: min-replicas-to-write set",
                extra={
                    "primary": a.primary,
                    "instance": str(a.address),
                    "min_replicas": a.min_replicas,
                    "max_lag": a.max_lag,
                },
            )

    async def _replicaof(self, a: ReplicaOf) -> None:
        detail = ""
        ok = True
        try:
            await self.link(a.primary, a.address, "command").replicaof(a.target, a.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ok = False
            detail = classify(exc)[1]
        log.info(
            "replicaof",
            extra={
                "primary": a.primary,
                "instance": str(a.address),
                "target": str(a.target),
                "epoch": a.epoch,
                "ok": ok,
                "detail": detail,
            },
        )
        self.feed(
            ReplicaOfDone(
                now=self.now(),
                primary=a.primary,
                address=a.address,
                target=a.target,
                epoch=a.epoch,
                ok=ok,
                detail=detail,
            )
        )

    async def _switchover(self, a: Switchover) -> None:
        """FAILOVER TO on the old primary, then wait (bounded) for the target to be master."""
        detail = ""
        ok = False
        old = self.link(a.primary, a.old, "command")
        target = self.link(a.primary, a.target, "switchover")
        try:
            await old.failover_to(a.target, max(1, int(a.timeout * 1000)), a.force, timeout=2.0)
            deadline = self.now() + a.timeout + 2.0
            while self.now() < deadline:
                if (await target.role(1.0)).role is Role.PRIMARY:
                    ok = True
                    break
                # no-failover again on the old primary: it finished or gave up (timeout).
                if await old.failover_state(1.0) == "no-failover":
                    ok = (await target.role(1.0)).role is Role.PRIMARY
                    break
                await asyncio.sleep(0.005)
            if ok:
                # Clients still connected to the old primary must re-resolve the new one.
                await old.client_kill_normal_and_pubsub(2.0)
            else:
                detail = "FAILOVER did not complete (the target did not catch up in time?)"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            detail = classify(exc)[1]
        log.info(
            "switchover",
            extra={
                "primary": a.primary,
                "old": str(a.old),
                "target": str(a.target),
                "ok": ok,
                "error": detail,
            },
        )
        self.feed(
            SwitchoverDone(
                now=self.now(), primary=a.primary, address=a.target, epoch=a.epoch, role_ok=ok, detail=detail
            )
        )

    # ------------------------------------------------------------------ the cycle

    def cycle(self) -> str:
        """One decision cycle: a Tick, and the status string. The status (and the snapshot it
        reads) is rebuilt when the core published an event since the last one, and otherwise
        at most every STATUS_PERIOD: at 10 cycles a second, rebuilding it every cycle was most
        of a watcher's steady-state CPU with a thousand primaries."""
        self.feed(Tick(now=self.now()))
        self._snapshot_stale = True
        self.stats.cycles += 1
        self.stats.last_cycle_wall = time.time()
        now = self.stats.last_cycle_mono = self.now()
        if self._published or now - self._status_at >= STATUS_PERIOD:
            self._published = False
            self._status_at = now
            self._status = self._status_now()
        return self._status

    def _status_now(self) -> str:
        """The status line of the state clients may see: the core's own status rows (no
        snapshot is built for it), or, while a state write is pending, the snapshot from
        before it (what every client sees until the write is done: see refresh_snapshot)."""
        if self.commit_pending:
            return status_line(self.snapshot)
        return status_text(self.watcher.in_hold, self.watcher.status_rows())

    def first_cycle_complete(self) -> bool:
        """Every primary has been probed at least once (answered or failed)."""
        return all(
            view.primary.last_ok is not None or view.primary.last_error != ""
            for view in self.snapshot.primaries
        )

    async def close(self, grace: float) -> None:
        """Let in-flight Redis commands finish for `grace` seconds, then cancel; close links.
        A state write under way is waited for (the caller may write the final state after
        us: an older state must not land on top of it) and what waited for it runs; a
        write not started yet is done now, and what waited for it is dropped, as in a
        crash right after the write."""
        self._closed = True
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writing)
        self._held.clear()
        if self.commit_pending and self.fatal is None:
            self._commit_now()  # scheduled but not started
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        for channel in list(self._probe_channels.values()):
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()
        self._probe_channels.clear()
        if self._prober is not None:
            self._prober.close()
            self._prober = None
        for link in list(self._links.values()):
            with contextlib.suppress(Exception):
                await link.close()
        self._links.clear()


def status_line(snapshot: Snapshot) -> str:
    """The one human line for this cycle (logs, systemd STATUS=, `haredis status`)."""
    rows = [
        StatusRow(
            name=view.name,
            failover_state=view.failover_state,
            failover_epoch=view.failover_epoch,
            odown=view.odown,
            sdown=view.sdown,
            address=view.address,
            config_epoch=view.config_epoch,
            ok_replicas=sum(1 for r in view.replicas if not r.sdown),
            replicas=len(view.replicas),
        )
        for view in snapshot.primaries
    ]
    return status_text(snapshot.in_hold, rows)


def status_text(in_hold: bool, rows: list[StatusRow]) -> str:
    """status_line from the core's status rows (Watcher.status_rows), or a snapshot's."""
    parts: list[str] = []
    if in_hold:
        parts.append("HOLD (clock or loop stall): observing only")
    for row in rows:
        if row.failover_state != "none":
            state = f"failing over (epoch {row.failover_epoch}, {row.failover_state})"
        elif row.odown:
            state = "ODOWN"
        elif row.sdown:
            state = "sdown"
        else:
            state = "ok"
        parts.append(
            f"{row.name} {state} primary={row.address} epoch={row.config_epoch} "
            f"replicas={row.ok_replicas}/{row.replicas}"
        )
    return "; ".join(parts) if parts else "no primaries"
