"""Write fencing against real redis-server processes and real haredis watchers.

With `fencing = true`, haredis keeps min-replicas-to-write on every node, so a primary that
loses its replicas refuses writes by itself; a failover from an unreachable primary waits
out that lease; a primary that answers again is paused and demoted before the new one is
announced. The partition cases (a primary cut off with its clients) run in tests/chaos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis as redis_py

from haredis.core.model import Address

from .haredis_procs import HaredisCluster, wait_until
from .redis_procs import RedisCluster, RedisProc

pytestmark = pytest.mark.slow

FENCING = "fencing = true\nfencing_min_replicas = 1\nfencing_max_lag_s = {lag}\n"


@pytest.fixture
def watchers() -> Iterator[Callable[..., HaredisCluster]]:
    started: list[HaredisCluster] = []

    def start(primary: Address, *, lag: int = 2, **kwargs: object) -> HaredisCluster:
        cluster = HaredisCluster(primary, extra_primary=FENCING.format(lag=lag), **kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.close()


def fence_of(proc: RedisProc) -> tuple[str, str, str]:
    c = proc.client()
    return (
        c.config_get("min-replicas-to-write")["min-replicas-to-write"],
        c.config_get("min-replicas-max-lag")["min-replicas-max-lag"],
        c.config_get("repl-ping-replica-period")["repl-ping-replica-period"],
    )


def all_logs(cluster: HaredisCluster) -> str:
    return "\n".join(w.log_text() for w in cluster.watchers)


def can_write(proc: RedisProc, key: str) -> bool:
    try:
        proc.client().set(key, "1")
    except redis_py.ResponseError as exc:
        if "NOREPLICAS" in str(exc) or "READONLY" in str(exc):
            return False
        raise
    return True


def test_the_fence_is_set_on_every_node_and_a_primary_without_replicas_refuses_writes(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    wait_until(lambda: all(fence_of(p) == ("1", "2", "1") for p in redis.all), 10, "the fence on every node")
    assert can_write(redis.primary, "before")
    # Both replicas gone: the primary stops taking writes by itself once their acks are older
    # than the lease (no watcher involved: this is Redis enforcing what haredis configured).
    for replica in redis.replicas:
        replica.kill()
    wait_until(lambda: not can_write(redis.primary, "after"), 10, "the primary to refuse writes")
    with pytest.raises(redis_py.ResponseError, match="NOREPLICAS"):
        redis.primary.client().set("refused", "1")


def test_a_restarted_node_gets_the_fence_back(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    wait_until(lambda: all(fence_of(p)[0] == "1" for p in redis.all), 10, "the fence on every node")
    replica = redis.replicas[1]
    replica.kill()
    replica.restart()  # CONFIG SET is not persisted: a restart forgets it
    wait_until(lambda: fence_of(replica) == ("1", "2", "1"), 15, "the fence set again after the restart")
    assert cluster.watchers[0].master_addr() == redis.primary.address


def test_a_hung_primary_is_replaced_after_its_lease_and_rejoins_as_a_replica(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    wait_until(lambda: all(fence_of(p)[0] == "1" for p in redis.all), 10, "the fence on every node")
    redis.primary.stop()
    try:
        new = wait_until(
            lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
            20,
            "a failover after the hang",
        )
    finally:
        redis.primary.cont()
    logs = all_logs(cluster)
    assert "+fence-wait" in logs, "the leader waited out the old primary's lease"
    cluster.wait_agree(new)
    wait_until(lambda: redis.primary.role() == "slave", 15, "the old primary to be demoted")
    promoted = next(r for r in redis.replicas if r.address == new)
    # The new primary takes writes once a replica acknowledges it (the fence is on it too).
    wait_until(lambda: can_write(promoted, "after-failover"), 15, "writes on the new primary")
    assert fence_of(promoted)[0] == "1"


def test_a_primary_that_answers_again_during_the_lease_wait_keeps_its_place(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    # A long lease (5 s + 1.5 s) leaves time to bring the primary back while the leader waits.
    cluster = watchers(redis.primary.address, lag=5)
    cluster.wait_agree(redis.primary.address)
    wait_until(lambda: all(fence_of(p)[0] == "1" for p in redis.all), 10, "the fence on every node")
    redis.primary.stop()
    try:
        wait_until(lambda: "+fence-wait" in all_logs(cluster), 15, "the leader to wait out the lease")
    finally:
        redis.primary.cont()
    wait_until(
        lambda: "-failover-abort-primary-recovered" in all_logs(cluster), 15, "the failover to be abandoned"
    )
    cluster.wait_agree(redis.primary.address)
    assert redis.primary.role() == "master"
    assert "+switch-master" not in all_logs(cluster)
    assert can_write(redis.primary, "still-the-primary")


def test_a_primary_restarted_empty_is_paused_and_demoted_and_the_replicas_keep_the_data(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    # Persistence off and an instant restart: Redis would have its replicas resync from the
    # empty primary. Redis's default 5 s diskless-sync delay is the window haredis acts in.
    redis = redis_cluster(replicas=2, extra_args=("--repl-diskless-sync-delay", "5"))
    writer = redis.primary.client()
    for i in range(200):
        writer.set(f"key{i}", i)
    redis.wait_synced()
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    wait_until(lambda: all(fence_of(p)[0] == "1" for p in redis.all), 10, "the fence on every node")
    redis.primary.kill()
    redis.primary.restart()
    new = wait_until(
        lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
        20,
        "a failover away from the empty primary",
    )
    logs = all_logs(cluster)
    assert "+reboot-empty" in logs
    assert "old primary paused during the promotion and demoted" in logs
    cluster.wait_agree(new)
    promoted = next(r for r in redis.replicas if r.address == new)
    assert promoted.client().dbsize() == 200, "the promoted replica kept the data"
    wait_until(lambda: redis.primary.client().dbsize() == 200, 20, "the restarted node to resync from it")
    assert redis.primary.role() == "slave"
