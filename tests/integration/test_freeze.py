"""The selection freeze on real redis-server processes: RedisLink.freeze (detach a replica
from its primary, reading INFO before and after), then the promotion and the repointing
haredis does next, and what they guarantee.

The scenario is the one that lost confirmed writes without it: the old primary keeps
streaming to its replicas while the leader chooses. Writes confirmed with WAIT before a
replica's freeze must survive on the promoted replica and on the repointed one, the
repointing must be a partial resync (a full one costs a whole copy on a big dataset), and
no write after the freeze may be confirmed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from haredis.core.actions import FREEZE_TARGET
from haredis.core.model import Role
from haredis.redis_link import RedisLink

from .redis_procs import RedisCluster, RedisProc

pytestmark = pytest.mark.integration

ClusterFactory = Callable[..., RedisCluster]


@pytest.fixture
async def link_to() -> AsyncIterator[Callable[[RedisProc], RedisLink]]:
    links: list[RedisLink] = []

    def make(proc: RedisProc) -> RedisLink:
        link = RedisLink(proc.address, username=None, password=None, connect_timeout=1.0)
        links.append(link)
        return link

    yield make
    for link in links:
        await link.close()


def _stats(proc: RedisProc) -> dict[str, Any]:
    return proc.client().info("stats")


def _offset(proc: RedisProc) -> int:
    return int(proc.client().info("replication")["master_repl_offset"])


def _write_confirmed(conn: redis.Redis, key: str, wanted: int, timeout_ms: int = 5000) -> int:
    """SET then WAIT `wanted` on the same connection: how many replicas confirmed. WAIT
    returns as soon as `wanted` confirm, so a long timeout costs only when fewer can."""
    conn.set(key, "v")
    return int(conn.execute_command("WAIT", wanted, timeout_ms))


def _until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


async def test_frozen_replicas_keep_every_confirmed_write_and_resync_partially(
    redis_cluster: ClusterFactory, link_to: Callable[[RedisProc], RedisLink]
) -> None:
    cluster = redis_cluster(replicas=2)
    old, first, second = cluster.primary, cluster.replicas[0], cluster.replicas[1]
    conn = redis.Redis(host=old.address.host, port=old.address.port, single_connection_client=True)
    try:
        assert _write_confirmed(conn, "before", 2) == 2

        before, after = await link_to(second).freeze(FREEZE_TARGET, 2.0)
        # The INFO before says it followed the old primary, the one after that it is detached
        # at the same offset.
        assert before.role is Role.REPLICA and before.master == old.address and before.link_up
        assert after is not None and after.role is Role.REPLICA and after.master is None
        assert not after.link_up and after.offset == before.offset
        assert _write_confirmed(conn, "between", 2, timeout_ms=1000) == 1  # confirmed by `first` only
        await link_to(first).freeze(FREEZE_TARGET, 2.0)
        # Both frozen: the old primary still takes writes, and no replica confirms them.
        assert _write_confirmed(conn, "after", 1, timeout_ms=500) == 0
        assert _offset(first) > _offset(second)

        # The leader promotes the freshest (first) and repoints the other to it.
        full_syncs = _stats(first)["sync_full"]
        assert await link_to(first).promote(2.0)
        await link_to(second).replicaof(first.address, 2.0)
        _until(
            "second follows first", lambda: second.client().info("replication")["master_link_status"] == "up"
        )
    finally:
        conn.close()
    first.client().set("new", "1")  # the new primary takes writes, and the replica applies them
    _until("the new write reached second", lambda: second.client().get("new") == "1")
    for proc in (first, second):
        c = proc.client()
        assert c.get("before") == "v" and c.get("between") == "v"
        assert c.get("after") is None  # never confirmed, rightly gone
    assert _stats(first)["sync_full"] == full_syncs, "the repointing took a full resync"
    assert _stats(first)["sync_partial_ok"] >= 1


async def test_reattach_resumes_from_the_old_primary_partially(
    redis_cluster: ClusterFactory, link_to: Callable[[RedisProc], RedisLink]
) -> None:
    """An aborted selection reattaches its frozen replicas: they catch up on what the primary
    took meanwhile, without a full resync."""
    cluster = redis_cluster(replicas=1)
    primary, replica = cluster.primary, cluster.replicas[0]
    await link_to(replica).freeze(FREEZE_TARGET, 2.0)
    primary.client().set("meanwhile", "v")
    full_syncs = _stats(primary)["sync_full"]
    assert await link_to(replica).reattach(primary.address, 2.0)
    _until("the replica caught up", lambda: replica.client().get("meanwhile") == "v")
    assert _stats(primary)["sync_full"] == full_syncs
    assert _stats(primary)["sync_partial_ok"] >= 1


async def test_a_primary_is_never_detached(
    redis_cluster: ClusterFactory, link_to: Callable[[RedisProc], RedisLink]
) -> None:
    # What the core believes is a replica may have become a primary (promoted by an earlier
    # attempt): freezing it would demote it. The step reads its role first and leaves it.
    cluster = redis_cluster(replicas=1)
    before, after = await link_to(cluster.primary).freeze(FREEZE_TARGET, 2.0)
    assert before.role is Role.PRIMARY and after is None
    assert cluster.primary.client().info("replication")["role"] == "master"
    cluster.primary.client().set("still", "writable")


async def test_reattach_leaves_a_replica_that_is_no_longer_detached_alone(
    redis_cluster: ClusterFactory, link_to: Callable[[RedisProc], RedisLink]
) -> None:
    """A late Unfreeze (its attempt was superseded) must not undo a newer leader's work: a
    replica repointed or promoted since is not pointed back at the old primary."""
    cluster = redis_cluster(replicas=2)
    old, first, second = cluster.primary, cluster.replicas[0], cluster.replicas[1]
    await link_to(second).freeze(FREEZE_TARGET, 2.0)
    await link_to(first).freeze(FREEZE_TARGET, 2.0)
    assert await link_to(first).promote(2.0)  # a newer leader promoted first
    await link_to(second).replicaof(first.address, 2.0)  # and repointed second to it
    assert not await link_to(first).reattach(old.address, 2.0)
    assert not await link_to(second).reattach(old.address, 2.0)
    assert first.client().info("replication")["role"] == "master"
    assert int(second.client().info("replication")["master_port"]) == first.address.port
