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
- A replica may follow a replica (a chain): it gets the same stream, but a new (P)SYNC to a
  replica whose own master link is down is refused (Redis's -NOMASTERLINK), so a loop of
  replicas never syncs.
- Write fencing (min-replicas-to-write N / min-replicas-max-lag M, set by the watchers'
  `Fence` action and forgotten on restart): a replica acks its master from its
  replicationCron, once a second, while its link is up and the network carries
  replica->master; a master records the ack time, and its replicationCron (once a second,
  at the node's own phase) counts the replicas whose lag, in whole seconds of the node's
  wall clock (server.unixtime - repl_ack_time), is <= M. That cached count decides whether
  writes are accepted until the next cron, as in Redis. A replica that attaches (PSYNC)
  counts as acked at once (putSlaveOnline), and CONFIG SET recounts at once. Acks sent to
  a SIGSTOPped master are read when it resumes, with the resume time as their time (a
  buffered ack looks fresh), and until its next cron it acts on the count it had when it
  stopped (unless a replica's close, read at resume, makes it recount).
- A node accepts writes iff it is alive, not paused, a master, not LOADING, not under
  FAILOVER's or CLIENT PAUSE WRITE's write pause, and (no fence, or enough good replicas).
- The watchers' pre-selection freeze (`QueryInfo.freeze`, the runtime's RedisLink.freeze):
  on a node that reports role replica, INFO, then REPLICAOF 127.0.0.1:0 (FREEZE_TARGET:
  nothing listens there) and INFO again, in one step; the answer carries both. The detached
  replica keeps its replid and offset (its master is cached, not blocked), so a later
  REPLICAOF of the new primary is a partial resync; it neither applies nor acknowledges the
  old primary's stream any more. Unfreeze is a REPLICAOF of the old primary, only if the
  node is still detached (a newer leader may have repointed or promoted it).
- CLIENT PAUSE WRITE on a node that is (or becomes, like a fenced old primary demoted while
  paused) a replica stops it APPLYING its master's stream: it keeps reading (`read_off`,
  INFO's slave_read_repl_offset, and last_io), but its applied offset, which INFO reports
  and its acks carry, stands still until CLIENT UNPAUSE or the pause's end; then it applies
  what it buffered at once. Redis postpones the master client while paused, and a postponed
  (blocked) master client that is dropped is NOT cached (freeClient): a REPLICAOF, a link
  loss or a master's death while unapplied data waits leaves no cached master, so the next
  PSYNC is a full resync. REPLICAOF NO ONE promotes at the applied offset.
- WAIT: every offset a replica applies while its link to a PRIMARY is up (and its acks get
  through) is acknowledged at once (Redis answers WAIT's GETACK promptly), so the writes up
  to it count as WAIT-confirmed (`wait_acks`, invariant 14). A blocked WAIT never times out
  here (WAIT 1 0): a late ack confirms too, which only makes the check stricter.
- Kill: connections are refused. Pause: requests queue and are answered on resume (so the
  watchers time out). Restart: a new run id; with persistence the data, replid and offset
  are kept (LOADING for `load_time`); EMPTY restarts get a new replid and offset 0. The role
  is kept, as if the config was rewritten by every REPLICAOF: a restarted old primary comes
  back as a primary. The write fence survives a restart only on a node with a config file
  (NodeSpec.config_file: the watchers' CONFIG REWRITE kept it); it then starts with no good
  replica and refuses writes until one acknowledges.

`Lineage` is the simulator's ground truth about histories (not visible to watchers): each
replid's parent (replid, offset), so "is this data a prefix of that data" is exact.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from haredis.core.actions import FREEZE_TARGET
from haredis.core.events import FailureKind
from haredis.core.model import Address, InstanceInfo, ReplicaLink, Role

from .config import NodeSpec

if TYPE_CHECKING:
    from .watcher_host import WatcherHost
    from .world import World

PING, INFO, PROMOTE, REPLICAOF, SWITCHOVER = 0, 1, 2, 3, 4
FENCE, PAUSE_WRITES, UNPAUSE = 5, 6, 7  # CONFIG SET min-replicas-*, CLIENT PAUSE WRITE, CLIENT UNPAUSE
REATTACH = 8  # Unfreeze: REPLICAOF the old primary, only if still detached
CRON_PERIOD = 1.0  # replicationCron
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
        "on_done",
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
        # Set for the executor's internal steps (fencing): called with (ok, payload) instead
        # of handing an event to the watcher.
        self.on_done: Any = None


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

    def canonical(self, replid: str, off: int) -> tuple[str, int]:
        """The same data named on the oldest history that holds it: a history's first
        offsets, up to where it branched, are its parent's."""
        while True:
            parent = self._parent.get(replid)
            if parent is None or off > parent[1]:
                return (replid, off)
            replid = parent[0]

    def descends(self, replid: str, ancestor: str) -> bool:
        """Is `replid` the history `ancestor` or one branched (at any depth) from it?"""
        cur: str | None = replid
        while cur is not None:
            if cur == ancestor:
                return True
            parent = self._parent.get(cur)
            cur = parent[0] if parent is not None else None
        return False

    def compatible(self, a: tuple[str, int], b: tuple[str, int]) -> bool:
        """One is a prefix of the other: the two have not diverged."""
        return self.is_prefix(a[0], a[1], b[0], b[1]) or self.is_prefix(b[0], b[1], a[0], a[1])


class FakeRedis:
    __slots__ = (
        "_off",
        "_off_t",
        "_writing",
        "acks",
        "address",
        "alive",
        "buffered_acks_read_at",
        "client_pause_until",
        "failover_req",
        "fence",
        "freed_while_paused",
        "good_replicas",
        "last_change",
        "last_io",
        "link_down_since",
        "link_run_id",
        "link_up",
        "loading_until",
        "master",
        "name",
        "no_cached_master",
        "past_histories",
        "paused",
        "paused_long",
        "pending_acks",
        "priority",
        "queue",
        "read_off",
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
        self.read_off = 0  # what a CLIENT PAUSEd replica has read from its master (>= its applied offset)
        self.no_cached_master = False  # its next PSYNC must be a full resync (see the docstring)
        self.loading_until = 0.0
        self.last_change = 0.0  # when replication last moved this node's offset
        self.queue: list[Request] = []
        self.failover_req: Request | None = None  # a FAILOVER TO in progress on this primary
        self.writes_paused = False  # CLIENT PAUSE WRITE, as FAILOVER does while it waits
        self.client_pause_until = 0.0  # CLIENT PAUSE <ms> WRITE from a watcher (fencing)
        self.fence: tuple[int, int] | None = None  # (min-replicas-to-write, min-replicas-max-lag)
        self.acks: dict[str, float] = {}  # replica name -> when its last ack was read (repl_ack_time)
        self.pending_acks: set[str] = set()  # acks sent to this node while it was SIGSTOPped
        self.buffered_acks_read_at: float | None = None  # when it last resumed and read some
        self.good_replicas = 0  # repl_good_slaves_count, refreshed by the cron
        self.freed_while_paused = False  # a replica closed its link during a SIGSTOP
        # The data this node held before each EMPTY restart since it last took a full copy
        # from someone else: what a watcher may still rightly consider its history.
        self.past_histories: list[tuple[str, int]] = []
        self._update_writing()
        self.ticking = False
        if self.role is Role.REPLICA:
            self.ticking = True
            world.sched.after(world.rng.random() * self.repl_period, self._repl_tick)
        if world.config.fencing:
            world.sched.at(spec.cron_phase, self._cron)

    def _new_run_id(self) -> str:
        return f"{self.name}-{self.restarts:02d}" + "0" * 34

    # -- offsets and the writer -------------------------------------------------------------

    def offset(self) -> int:
        if self._writing:
            return self._off + int(self.world.write_rate * (self.world.sched.now - self._off_t))
        return self._off

    def history_point(self) -> tuple[str, int]:
        return (self.replid, self.offset())

    def accepts_writes(self) -> bool:
        """Would a client's write succeed now (see the module docstring)?"""
        now = self.world.sched.now
        return (
            self.alive
            and not self.paused
            and self.role is Role.PRIMARY
            and not self.writes_paused
            and now >= self.client_pause_until
            and now >= self.loading_until
            and (self.fence is None or self.good_replicas >= self.fence[0])
        )

    def _update_writing(self) -> None:
        writing = self.accepts_writes()
        if writing != self._writing:
            self._off = self.offset()
            self._off_t = self.world.sched.now
            self._writing = writing
            self.world.checker.on_writable(self, writing)

    # -- write fencing ----------------------------------------------------------------------

    def unixtime(self, t: float) -> int:
        """This node's wall clock in whole seconds at simulated time `t`."""
        return math.floor(t + self.spec.clock_phase)

    def _refresh_good_replicas(self) -> None:
        """refreshGoodSlavesCount: replicas online whose whole-second lag is <= max-lag."""
        if self.fence is None or self.paused:
            return  # a SIGSTOPped process runs no code: it recounts when it runs again
        now_s = self.unixtime(self.world.sched.now)
        max_lag = self.fence[1]
        self.good_replicas = sum(1 for t in self.acks.values() if now_s - self.unixtime(t) <= max_lag)
        self._update_writing()

    def set_fence(self, min_replicas: int, max_lag: int) -> None:
        self.fence = (min_replicas, max_lag)
        self._refresh_good_replicas()  # CONFIG SET recounts at once (updateGoodSlaves)

    def replica_attached(self, replica: FakeRedis) -> None:
        """A replica finished PSYNC: it counts as acked now (putSlaveOnline)."""
        self.acks[replica.name] = self.world.sched.now
        self.world.checker.write_fence.on_replica_attached(self, replica)
        self._refresh_good_replicas()

    def replica_detached(self, replica: FakeRedis) -> None:
        """The replica closed its connection (REPLICAOF elsewhere, promotion, death): the
        master frees it at once if the FIN gets through, else it ages out by lag."""
        if replica.name in self.acks and self.world.network.can(replica.name, self.name):
            del self.acks[replica.name]
            self.pending_acks.discard(replica.name)
            if self.paused:
                self.freed_while_paused = True  # it reads the close when it resumes
            else:
                self._refresh_good_replicas()

    def _cron(self) -> None:
        """replicationCron, once a second: a replica acks its master; a master recounts."""
        world = self.world
        world.sched.after(CRON_PERIOD, self._cron)
        if not self.alive or self.paused:
            return
        if self.role is Role.REPLICA and self.link_up and self.master is not None:
            m = world.node_at(self.master)
            if m is not None and m.alive and world.network.can(self.name, m.name):
                if m.paused:
                    m.pending_acks.add(self.name)
                elif m.run_id == self.link_run_id:
                    m.acks[self.name] = world.sched.now
        self._refresh_good_replicas()

    def pause_writes(self, seconds: float) -> None:
        """CLIENT PAUSE <ms> WRITE: expires by itself. A paused replica stops applying."""
        until = self.world.sched.now + seconds
        if until > self.client_pause_until:
            self.client_pause_until = until
            self.world.sched.at(until, self._pause_expired)
        self._update_writing()

    def unpause_writes(self) -> None:
        """CLIENT UNPAUSE. A replica then applies what it read while paused."""
        was_paused = self.client_paused()
        self.client_pause_until = 0.0
        self._update_writing()
        if was_paused:
            self._apply_buffer()

    def _pause_expired(self) -> None:
        if self.world.sched.now >= self.client_pause_until:
            self._update_writing()
            self._apply_buffer()

    def client_paused(self) -> bool:
        """Under CLIENT PAUSE WRITE: as a replica, reading its master's stream, not applying it."""
        return self.world.sched.now < self.client_pause_until

    def _holds_unapplied(self) -> bool:
        """A paused replica whose master link carries data it has not applied: Redis's master
        client is postponed (blocked), and a blocked master client is not cached when freed."""
        return (
            self.role is Role.REPLICA and self.link_up and self.client_paused() and self.read_off > self._off
        )

    def _apply_buffer(self) -> None:
        """The pause is over: apply (and acknowledge) what was read while paused."""
        if self.role is not Role.REPLICA or not self.link_up or not self.alive or self.paused:
            return
        m = self.world.node_at(self.master)
        if m is None or m.run_id != self.link_run_id or m.replid != self.replid:
            return
        if self.read_off > self._off:
            self._set_offset(self.read_off)
            self._acked(m)

    def _acked(self, m: FakeRedis) -> None:
        """This replica applied up to its offset on `m`'s stream; its ack confirms the writes
        up to there to any client blocked in WAIT on `m` (if `m` is a primary that hears it)."""
        if (
            m.role is Role.PRIMARY
            and m.alive
            and not m.paused
            and self.link_up
            and self.link_run_id == m.run_id
            and self.replid == m.replid
            and self.world.network.can(self.name, m.name)
        ):
            self.world.checker.wait_acks.on_ack(m, self)

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
        self._leave_master()
        self.link_up = False
        self.sync_until = None
        for other in self.world.nodes:
            if other is not self and other.alive and other.master == self.address and other.link_up:
                other.master_closed()
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
            self.world.sched.at(self.loading_until, self._update_writing)
        self.link_up = False
        self.link_down_since = now
        self.sync_until = None
        self.read_off = self._off
        self.no_cached_master = False
        # A new process: replicas' acks and client pauses are gone, and so is the fence
        # unless CONFIG REWRITE had a config file to keep it in.
        if not self.spec.config_file:
            self.fence = None
        self.acks = {}
        self.pending_acks = set()
        self.freed_while_paused = False
        self.good_replicas = 0
        self.client_pause_until = 0.0
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
        # Acks that arrived while stopped are read now; the cached good-replica count is
        # what it was until the next cron (so writes may be taken at once, as in Redis).
        for name in sorted(self.pending_acks):
            self.acks[name] = now
        if self.pending_acks:
            self.buffered_acks_read_at = now
        self.pending_acks = set()
        if self.freed_while_paused:  # freeClient recounts
            self.freed_while_paused = False
            self._refresh_good_replicas()
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
            if getattr(req.action, "freeze", False):
                # The selection's freeze (the runtime's RedisLink.freeze): INFO, then, on a
                # replica, REPLICAOF FREEZE_TARGET and INFO again; answered as (after,
                # before). A node that is not a replica is left alone: (info, info). The
                # ignore_freeze control answers every freeze that way, detaching nobody.
                before = result
                if self.role is Role.REPLICA and not world.config.ignore_freeze:
                    self.replicaof(FREEZE_TARGET)
                    world.checker.covered("freezes")
                    result = self.info()
                result = (result, before)
        elif kind == PROMOTE:
            if self.role is Role.REPLICA:
                world.checker.on_node_promoted(self, req.host, req.action)
                before = self.history_point()
                self.replicaof_no_one()
                world.checker.wait_acks.on_promoted(self, req.host, req.action, before)
            result = True
        elif kind == SWITCHOVER:
            self._failover_start(req)
            return  # answered when it completes or gives up
        elif kind == FENCE:
            self.set_fence(req.action.min_replicas, req.action.max_lag)
            result = True
        elif kind == PAUSE_WRITES:
            self.pause_writes(req.action.seconds)
            result = True
        elif kind == UNPAUSE:
            self.unpause_writes()
            result = True
        elif kind == REATTACH:
            # Unfreeze: only a replica still detached by a freeze (the runtime reads INFO first).
            result = self.role is Role.REPLICA and self.master == FREEZE_TARGET
            if result:
                self.replicaof(req.action.target)
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
        extra: dict[str, Any] = {"fence_configured": self.fence is not None}
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
            # Whole seconds of this node's clock, as Redis prints them.
            link_down_seconds=0.0
            if self.link_up
            else float(self.unixtime(now) - self.unixtime(self.link_down_since)),
            last_io_seconds=float(self.unixtime(now) - self.unixtime(self.last_io)) if self.link_up else 0.0,
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
        self._leave_master()
        self.role = Role.PRIMARY
        self.role_since = now
        self.master = None
        self.read_off = self._off
        self.link_up = False
        self.sync_until = None
        self._update_writing()
        self.world.on_role_change(self)

    def replicaof(self, target: Address) -> None:
        if self.role is Role.REPLICA and self.master == target:
            return  # "+OK Already connected to specified master"
        now = self.world.sched.now
        if self._holds_unapplied():
            self._lose_cached_master("REPLICAOF")
        if self.role is Role.PRIMARY:
            self.role = Role.REPLICA
            self.role_since = now
            self.acks = {}  # its replicas are disconnected
            self.pending_acks = set()
            self.good_replicas = 0
            self._update_writing()
        self._leave_master()
        self.master = target
        self.read_off = self._off
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
                # The RDB is loaded even while paused (it is not a command), and acknowledged.
                self.sync_until = None
                self.no_cached_master = False
                self.replid = m.replid
                self.replid2 = ""
                self.second_offset = -1
                self._set_offset(m.offset())
                self.past_histories = []
                self._link_established(m)
                self._acked(m)
            return
        if not self.link_up:
            if m.role is Role.REPLICA and not m.link_up:
                # Redis refuses SYNC/PSYNC from a replica whose own master link is not up
                # (-NOMASTERLINK) and the replica retries later: a chain must reach a primary
                # before data flows. Without this, two replicas pointed at each other (two
                # leaders' reconfigurations crossing) synced from each other (seed 1014004).
                return
            moff = m.offset()
            off = self.offset()
            same = self.replid == m.replid or (self.replid == m.replid2 and off <= m.second_offset)
            if same and not self.no_cached_master and off <= moff and moff - off <= world.config.backlog:
                if self.replid != m.replid:
                    self.replid2 = self.replid
                    self.second_offset = off
                    self.replid = m.replid
                self._link_established(m)
                self._receive(m, moff)
            else:
                self.sync_until = now + world.config.full_sync_time
            return
        self._receive(m, m.offset())

    def _link_established(self, m: FakeRedis) -> None:
        self.link_up = True
        self.link_run_id = m.run_id
        self.read_off = self._off
        m.replica_attached(self)

    def _receive(self, m: FakeRedis, moff: int) -> None:
        """The stream from `m` up to `moff` arrived: applied and acknowledged, unless paused."""
        if self.client_paused():
            self.read_off = max(self.read_off, moff)
            return
        if moff != self._off:
            self._set_offset(moff)
        self._acked(m)

    def _lose_cached_master(self, why: str) -> None:
        """The blocked master client is freed uncached: the next PSYNC is a full resync."""
        self.no_cached_master = True
        self.world.checker.covered("paused-link-dropped-uncached")
        self.world.note(
            self.name, f"{why} while paused with unapplied data: no cached master (full resync next)"
        )

    def master_closed(self) -> None:
        """Its master died: the connection closes at once (the link is marked down at the
        next tick); a paused replica with unapplied data loses its cached master now."""
        if self._holds_unapplied():
            self._lose_cached_master("master closed the link")
        self.read_off = self._off

    def _leave_master(self) -> None:
        """This replica closes its replication connection (its master forgets it)."""
        if self.role is Role.REPLICA and self.master is not None:
            m = self.world.node_at(self.master)
            if m is not None and m is not self and m.alive:
                m.replica_detached(self)

    def _link_down(self, now: float) -> None:
        if self._holds_unapplied():
            self._lose_cached_master("link lost")
        self.read_off = self._off
        if self.link_up:
            self.link_up = False
            self.link_down_since = now
        self.sync_until = None
