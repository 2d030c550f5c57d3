"""Fake Redis nodes: roles, replication histories, offsets, the writer, resyncs, faults.

The model, close to Redis 7:

- A primary's offset grows at the writer's rate while it is alive, unpaused and a primary
  (the writer writes to every node that accepts writes, as clients stuck to a stale primary
  do). Offsets are computed lazily from (base, since).
- A replica pulls from its master every `repl_period` (its replication lag). The first pull
  after a (re)connection is a PSYNC: a partial resync if the master's history contains the
  replica's position (same replid, or replid2 up to second_offset) within the backlog, else a
  full resync that takes `full_sync_time` and replaces the replica's data.
- A master that is killed closes its connections: replicas see the link down at once. A
  paused or cut-off master is silent: replicas notice after `repl_timeout` (like Redis's
  repl-timeout) but their offsets stop moving immediately.
- REPLICAOF NO ONE starts a new history: replid2 = old replid, second_offset = offset.
- Kill: connections are refused. Pause: requests queue and are answered on resume (so the
  watchers time out). Restart: a new run id; with persistence the data, replid and offset
  are kept (LOADING for `load_time`); EMPTY restarts get a new replid and offset 0. The role
  is kept, as if the config was rewritten by every REPLICAOF: a restarted old primary comes
  back as a primary.

`Lineage` is the simulator's ground truth about histories (not visible to watchers): each
replid's parent (replid, offset), so "is this data a prefix of that data" is exact.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from haredis.core.events import FailureKind
from haredis.core.model import Address, InstanceInfo, ReplicaLink, Role

from .config import NodeSpec

if TYPE_CHECKING:
    from .watcher_host import WatcherHost
    from .world import World

PING, INFO, PROMOTE, REPLICAOF, SWITCHOVER = 0, 1, 2, 3, 4
FAILOVER_POLL = 0.01  # how often a primary in FAILOVER checks its target's offset
NO_REPLID = "0" * 40  # what Redis reports as master_replid2 when there is none

# Redis also reports second_repl_offset (the first offset NOT shared with replid2's history);
# fill it in if the core's InstanceInfo has grown a field for it.
_INFO_FIELDS = {f.name for f in dataclasses.fields(InstanceInfo)}
_SECOND_OFFSET_FIELD = next((n for n in ("second_repl_offset", "second_offset") if n in _INFO_FIELDS), None)


class Request:
    """One Redis command in flight from a watcher; resolved exactly once."""

    __slots__ = (
        "action",
        "deadline",
        "done",
        "gen_at",
        "host",
        "id",
        "incarnation",
        "kind",
        "node",
        "sent_at",
        "timer",
    )

    def __init__(
        self, rid: int, host: WatcherHost, action: Any, kind: int, node: FakeRedis | None, now: float
    ) -> None:
        self.id = rid
        self.host = host
        self.incarnation = host.incarnation
        self.action = action
        self.kind = kind
        self.node = node
        self.done = False
        self.sent_at = now
        self.deadline = now + action.timeout
        self.timer = False  # a timeout is scheduled at `deadline`
        self.gen_at = -1.0  # when the node produced the reply (INFO freshness)


class Lineage:
    """Ground truth: replid -> (parent replid, offset where it branched) or None for a root."""

    __slots__ = ("_parent", "_serial")

    def __init__(self) -> None:
        self._parent: dict[str, tuple[str, int] | None] = {}
        self._serial = 0

    def new(self, parent: tuple[str, int] | None) -> str:
        self._serial += 1
        replid = f"{self._serial:04x}" + "0" * 36
        self._parent[replid] = parent
        return replid

    def is_prefix(self, a_id: str, a_off: int, b_id: str, b_off: int) -> bool:
        """Is the data at (a_id, a_off) a prefix of the data at (b_id, b_off)?"""
        cur: str | None = b_id
        limit = b_off
        while cur is not None:
            if cur == a_id:
                return a_off <= limit
            parent = self._parent.get(cur)
            if parent is None:
                return False
            cur, limit = parent[0], min(limit, parent[1])
        return False

    def compatible(self, a: tuple[str, int], b: tuple[str, int]) -> bool:
        """One is a prefix of the other: the two have not diverged."""
        return self.is_prefix(a[0], a[1], b[0], b[1]) or self.is_prefix(b[0], b[1], a[0], a[1])


class FakeRedis:
    __slots__ = (
        "_off",
        "_off_t",
        "_writing",
        "address",
        "alive",
        "failover_req",
        "last_change",
        "last_io",
        "link_down_since",
        "link_run_id",
        "link_up",
        "loading_until",
        "master",
        "name",
        "past_histories",
        "paused",
        "paused_long",
        "priority",
        "queue",
        "repl_period",
        "replid",
        "replid2",
        "restarts",
        "role",
        "role_since",
        "run_id",
        "second_offset",
        "spec",
        "sync_until",
        "ticking",
        "world",
        "writes_paused",
    )

    def __init__(self, world: World, spec: NodeSpec, replid: str, master: Address | None) -> None:
        self.world = world
        self.spec = spec
        self.name = spec.name
        self.address = spec.address
        self.priority = spec.priority
        self.repl_period = spec.repl_period
        self.alive = True
        self.paused = False
        self.paused_long = False
        self.restarts = 0
        self.run_id = self._new_run_id()
        self.role = Role.PRIMARY if master is None else Role.REPLICA
        self.role_since = 0.0
        self.master = master
        self.replid = replid
        self.replid2 = ""
        self.second_offset = -1
        self._off = 0
        self._off_t = 0.0
        self._writing = False
        self.link_up = False
        self.link_down_since = 0.0
        self.link_run_id = ""
        self.last_io = 0.0
        self.sync_until: float | None = None
        self.loading_until = 0.0
        self.last_change = 0.0  # when replication last moved this node's offset
        self.queue: list[Request] = []
        self.failover_req: Request | None = None  # a FAILOVER TO in progress on this primary
        self.writes_paused = False  # CLIENT PAUSE WRITE, as FAILOVER does while it waits
        # The data this node held before each EMPTY restart since it last took a full copy
        # from someone else: what a watcher may still rightly consider its history.
        self.past_histories: list[tuple[str, int]] = []
        self._update_writing()
        self.ticking = False
        if self.role is Role.REPLICA:
            self.ticking = True
            world.sched.after(world.rng.random() * self.repl_period, self._repl_tick)

    def _new_run_id(self) -> str:
        return f"{self.name}-{self.restarts:02d}" + "0" * 34

    # -- offsets and the writer -------------------------------------------------------------

    def offset(self) -> int:
        if self._writing:
            return self._off + int(self.world.write_rate * (self.world.sched.now - self._off_t))
        return self._off

    def history_point(self) -> tuple[str, int]:
        return (self.replid, self.offset())

    def _update_writing(self) -> None:
        writing = self.alive and not self.paused and self.role is Role.PRIMARY and not self.writes_paused
        if writing != self._writing:
            self._off = self.offset()
            self._off_t = self.world.sched.now
            self._writing = writing

    def _set_offset(self, value: int) -> None:
        self._off = value
        self._off_t = self.world.sched.now
        self.last_change = self.world.sched.now

    # -- faults -----------------------------------------------------------------------------

    def kill(self) -> None:
        if not self.alive:
            return
        now = self.world.sched.now
        self._update_writing()
        self.alive = False
        if self.paused:
            self.paused = False
            self.paused_long = False
            self.world.history.close(f"node-any:{self.name}", now)
            self.world.history.close(f"node:{self.name}", now)
        self._update_writing()
        self.world.history.open(f"node:{self.name}", now)
        self.world.history.open(f"node-any:{self.name}", now)
        self.link_up = False
        self.sync_until = None
        queued, self.queue = self.queue, []
        if self.failover_req is not None:
            queued.append(self.failover_req)
            self.failover_req = None
            self.writes_paused = False
        for req in queued:
            self.world.redis_reply(req, self, False, FailureKind.RESET)

    def restart(self, empty: bool) -> None:
        if self.alive:
            return
        now = self.world.sched.now
        self.alive = True
        self.restarts += 1
        self.run_id = self._new_run_id()
        if empty:
            self.past_histories.append((self.replid, self._off))
            self.replid = self.world.lineage.new(None)
            self.replid2 = ""
            self.second_offset = -1
            self._set_offset(0)
            self.loading_until = now
        else:
            self.loading_until = now + self.spec.load_time
        self.link_up = False
        self.link_down_since = now
        self.sync_until = None
        self._update_writing()
        self.world.history.close(f"node:{self.name}", now)
        self.world.history.close(f"node-any:{self.name}", now)

    def pause(self, long: bool) -> None:
        if not self.alive or self.paused:
            return
        now = self.world.sched.now
        self.paused = True
        self.paused_long = long
        self._update_writing()
        self.world.history.open(f"node-any:{self.name}", now)
        if long:
            self.world.history.open(f"node:{self.name}", now)

    def resume(self) -> None:
        if not self.paused:
            return
        now = self.world.sched.now
        self.paused = False
        self.world.history.close(f"node-any:{self.name}", now)
        if self.paused_long:
            self.world.history.close(f"node:{self.name}", now)
        self.paused_long = False
        self._update_writing()
        queued, self.queue = self.queue, []
        for req in queued:
            self._process(req)

    # -- commands ---------------------------------------------------------------------------

    def receive(self, req: Request) -> None:
        if not self.alive:
            self.world.redis_reply(req, self, False, FailureKind.REFUSED)
        elif self.paused:
            self.queue.append(req)
            self.world.arm_timeout(req)
        else:
            self._process(req)

    def _process(self, req: Request) -> None:
        world = self.world
        kind = req.kind
        now = world.sched.now
        req.gen_at = now
        result: Any
        if kind == PING:
            result = "LOADING" if now < self.loading_until else "PONG"
        elif kind == INFO:
            result = self.info()
        elif kind == PROMOTE:
            self.replicaof_no_one()
            result = True
        elif kind == SWITCHOVER:
            self._failover_start(req)
            return  # answered when it completes or gives up
        else:
            target: Address = req.action.target
            if target == self.address:
                result = False
            else:
                self.replicaof(target)
                result = True
        world.redis_reply(req, self, True, result)

    # -- FAILOVER TO target TIMEOUT t [FORCE] (Redis 6.2+), for switchovers ---------------

    def _failover_start(self, req: Request) -> None:
        action = req.action
        target = self.world.node_at(action.target)
        error = ""
        if self.role is not Role.PRIMARY:
            error = "ERR FAILOVER is not valid when server is a replica."
        elif self.failover_req is not None:
            error = "ERR FAILOVER already in progress."
        elif (
            target is None
            or not target.alive
            or target.role is not Role.REPLICA
            or target.master != self.address
            or not target.link_up
        ):
            error = "ERR FAILOVER target replica is not online."
        if error:
            self.world.redis_reply(req, self, True, (False, error))
            return
        self.failover_req = req
        self.writes_paused = True  # clients' writes block from now on
        self._update_writing()
        self.world.sched.after(FAILOVER_POLL, self._failover_step, req, self.world.sched.now + action.timeout)

    def _failover_step(self, req: Request, deadline: float) -> None:
        if self.failover_req is not req:
            return  # killed meanwhile (answered with a reset)
        world = self.world
        now = world.sched.now
        if self.paused:
            world.sched.after(FAILOVER_POLL, self._failover_step, req, deadline)
            return
        action = req.action
        target = world.node_at(action.target)
        assert target is not None
        net = world.network
        talking = net.can(self.name, target.name) and net.can(target.name, self.name)
        connected = (
            target.alive
            and not target.paused
            and target.role is Role.REPLICA
            and target.master == self.address
            and talking
        )
        synced = connected and target.replid == self.replid and target.offset() >= self.offset()
        if synced or (connected and action.force and now >= deadline):
            before = self.history_point()
            target_before = target.history_point()
            self.failover_req = None
            self.writes_paused = False
            target.replicaof_no_one()  # PSYNC FAILOVER: the target takes over, keeping replid2
            self.replicaof(target.address)
            world.checker.on_redis_failover(self, target, before, target_before, forced=not synced)
            world.redis_reply(req, self, True, (True, "" if synced else "forced"))
        elif now >= deadline:
            self.failover_req = None
            self.writes_paused = False
            self._update_writing()
            world.redis_reply(req, self, True, (False, "ERR FAILOVER timed out, target not in sync"))
        else:
            world.sched.after(FAILOVER_POLL, self._failover_step, req, deadline)

    def info(self) -> InstanceInfo:
        """INFO replication. Like Redis, a replica also lists its own connected replicas."""
        now = self.world.sched.now
        links = tuple(
            ReplicaLink(other.address, other.offset(), True)
            for other in self.world.nodes
            if other is not self
            and other.alive
            and other.role is Role.REPLICA
            and other.link_up
            and other.master == self.address
        )
        extra: dict[str, Any] = {}
        if _SECOND_OFFSET_FIELD is not None:
            extra[_SECOND_OFFSET_FIELD] = self.second_offset + 1 if self.replid2 else -1
        if self.role is Role.PRIMARY:
            return InstanceInfo(
                role=Role.PRIMARY,
                run_id=self.run_id,
                replid=self.replid,
                replid2=self.replid2 or NO_REPLID,
                offset=self.offset(),
                replicas=links,
                **extra,
            )
        return InstanceInfo(
            role=Role.REPLICA,
            run_id=self.run_id,
            replid=self.replid,
            replid2=self.replid2 or NO_REPLID,
            offset=self.offset(),
            master=self.master,
            link_up=self.link_up,
            link_down_seconds=0.0 if self.link_up else round(now - self.link_down_since, 3),
            priority=self.priority,
            replicas=links,
            **extra,
        )

    def replicaof_no_one(self) -> None:
        if self.role is Role.PRIMARY:
            return
        now = self.world.sched.now
        off = self.offset()
        self.replid2 = self.replid
        self.second_offset = off
        self.replid = self.world.lineage.new((self.replid, off))
        self.role = Role.PRIMARY
        self.role_since = now
        self.master = None
        self.link_up = False
        self.sync_until = None
        self._update_writing()
        self.world.on_role_change(self)

    def replicaof(self, target: Address) -> None:
        if self.role is Role.REPLICA and self.master == target:
            return  # "+OK Already connected to specified master"
        now = self.world.sched.now
        if self.role is Role.PRIMARY:
            self.role = Role.REPLICA
            self.role_since = now
            self._update_writing()
        self.master = target
        self.link_up = False
        self.link_down_since = now
        self.sync_until = None
        if not self.ticking:
            self.ticking = True
            self.world.sched.after(self.world.rng.random() * self.repl_period, self._repl_tick)
        self.world.on_role_change(self)

    # -- replication ------------------------------------------------------------------------

    def _repl_tick(self) -> None:
        """The replication loop; it runs while the node is a replica (see `replicaof`)."""
        world = self.world
        if self.role is not Role.REPLICA:
            self.ticking = False
            return
        world.sched.after(self.repl_period, self._repl_tick)
        if not self.alive or self.paused or self.master is None:
            return
        now = world.sched.now
        m = world.node_at(self.master)
        if m is None or m is self or not m.alive:
            self._link_down(now)
            return
        net = world.network
        if m.paused or not net.can(self.name, m.name) or not net.can(m.name, self.name):
            # Silent master: the data stops; the link is declared down after repl_timeout.
            if self.link_up and now - self.last_io > world.config.repl_timeout:
                self._link_down(now)
            elif self.sync_until is not None:
                self.sync_until = None
            return
        self.last_io = now
        if self.link_up and (m.run_id != self.link_run_id or m.replid != self.replid):
            self.link_up = False  # the master restarted or changed history: reconnect
        if self.sync_until is not None:
            if now >= self.sync_until:
                self.sync_until = None
                self.replid = m.replid
                self.replid2 = ""
                self.second_offset = -1
                self._set_offset(m.offset())
                self.past_histories = []
                self._link_established(m)
            return
        if not self.link_up:
            moff = m.offset()
            off = self.offset()
            same = self.replid == m.replid or (self.replid == m.replid2 and off <= m.second_offset)
            if same and off <= moff and moff - off <= world.config.backlog:
                if self.replid != m.replid:
                    self.replid2 = self.replid
                    self.second_offset = off
                    self.replid = m.replid
                if moff != off:
                    self._set_offset(moff)
                self._link_established(m)
            else:
                self.sync_until = now + world.config.full_sync_time
            return
        moff = m.offset()
        if moff != self._off:
            self._set_offset(moff)

    def _link_established(self, m: FakeRedis) -> None:
        self.link_up = True
        self.link_run_id = m.run_id

    def _link_down(self, now: float) -> None:
        if self.link_up:
            self.link_up = False
            self.link_down_since = now
        self.sync_until = None
