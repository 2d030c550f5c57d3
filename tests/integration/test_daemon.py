"""haredis watchers (real processes) failing over real redis-server processes on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from haredis.core.model import Address

from .haredis_procs import HaredisCluster, wait_until
from .redis_procs import RedisCluster

pytestmark = pytest.mark.slow

FAILOVER_DEADLINE = 10.0


@pytest.fixture
def watchers() -> Iterator[Callable[..., HaredisCluster]]:
    started: list[HaredisCluster] = []

    def start(primary: Address, **kwargs: object) -> HaredisCluster:
        cluster = HaredisCluster(primary, **kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.close()


def roles(redis: RedisCluster) -> dict[Address, str]:
    out: dict[Address, str] = {}
    for proc in redis.all:
        try:
            out[proc.address] = proc.role()
        except Exception:
            out[proc.address] = "down"
    return out


def write_some(redis: RedisCluster, n: int = 50) -> None:
    client = redis.primary.client()
    for i in range(n):
        client.set(f"k{i}", i)
    redis.wait_synced()


def test_kill_primary_promotes_a_replica_and_the_other_follows(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    write_some(redis)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    redis.primary.kill()
    new = wait_until(
        lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
        FAILOVER_DEADLINE,
        "a new primary",
    )
    cluster.wait_agree(new)
    promoted = next(r for r in redis.replicas if r.address == new)
    other = next(r for r in redis.replicas if r.address != new)
    wait_until(lambda: promoted.role() == "master", 5, "the promoted replica to be a master")
    wait_until(
        lambda: other.info("replication").get("master_port") == new.port, 5, "the other replica to follow"
    )
    other_info = other.info("replication")
    assert other_info["master_host"] == new.host
    # The data survived: the new primary has what was written before the crash.
    assert promoted.client().get("k49") == "49"
    # Every watcher persisted the new topology with the same config epoch.
    epochs = {
        json.loads(w.state_file.read_text())["primaries"]["mymaster"]["config_epoch"]
        for w in cluster.watchers
    }
    assert len(epochs) == 1 and epochs.pop() >= 1


def test_hang_longer_than_down_after_fails_over_and_old_primary_rejoins_as_replica(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    redis.primary.stop()
    try:
        new = wait_until(
            lambda: (a := cluster.watchers[1].master_addr()) != redis.primary.address and a,
            FAILOVER_DEADLINE,
            "a failover after a hang",
        )
    finally:
        redis.primary.cont()
    cluster.wait_agree(new)
    # Read in the wait: right after the demotion the watcher kills the old primary's normal
    # clients (they must reconnect to the new one), which may close the connection we open.
    wait_until(
        lambda: (
            redis.primary.role() == "slave" and redis.primary.info("replication")["master_port"] == new.port
        ),
        10,
        "the old primary to be demoted and to follow the new one",
    )
    assert [a for a, r in roles(redis).items() if r == "master"] == [new]


def test_pause_shorter_than_down_after_causes_no_failover(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address, down_after_ms=2000)
    cluster.wait_agree(redis.primary.address)
    redis.primary.stop()
    time.sleep(1.0)
    redis.primary.cont()
    time.sleep(3.0)
    cluster.wait_agree(redis.primary.address, timeout=1.0)
    assert redis.primary.role() == "master"
    for w in cluster.watchers:
        assert "+switch-master" not in w.log_text()
        assert w.master_info()["config-epoch"] == "0"


def test_one_of_three_watchers_down_still_fails_over(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    cluster.watchers[2].kill()
    redis.primary.kill()
    new = wait_until(
        lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
        FAILOVER_DEADLINE,
        "a failover with one watcher down",
    )
    cluster.wait_agree(new, among=cluster.watchers[:2])


def test_two_of_three_watchers_down_never_fails_over(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address, quorum=1)
    cluster.wait_agree(redis.primary.address)
    cluster.watchers[1].kill()
    cluster.watchers[2].kill()
    redis.primary.kill()
    survivor = cluster.watchers[0]
    # The survivor sees the primary down (quorum 1) and tries, but cannot win a majority.
    wait_until(lambda: "-failover-abort-not-elected" in survivor.log_text(), 10, "a failed election")
    time.sleep(2.0)
    assert survivor.master_addr() == redis.primary.address
    assert all(r.role() == "slave" for r in redis.replicas)


def test_priority_zero_replica_is_never_chosen(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2, priorities=[0, 100])
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    redis.primary.kill()
    new = wait_until(
        lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
        FAILOVER_DEADLINE,
        "a failover",
    )
    assert new == redis.replicas[1].address
    assert redis.replicas[0].role() == "slave"


def test_lagging_replica_loses_to_a_fresh_one(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address, down_after_ms=1500)
    cluster.wait_agree(redis.primary.address)
    lagging, fresh = redis.replicas
    # Freeze one replica while the primary takes writes. The writes must exceed what the
    # kernel buffers on the frozen replica's socket (a few MB at most): that part would
    # still reach it after SIGCONT. The rest sits in the primary's output buffer and dies
    # with it, so the frozen replica really is behind, by megabytes.
    lagging.stop()
    client = redis.primary.client()
    value = "x" * 1000
    for batch in range(40):
        pipe = client.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"lag{batch * 1000 + i}", value)
        pipe.execute()
    wait_until(
        lambda: (
            fresh.info("replication")["slave_repl_offset"]
            == redis.primary.info("replication")["master_repl_offset"]
        ),
        10,
        "the fresh replica to catch up",
    )
    redis.primary.kill()
    lagging.cont()
    # The precondition of this test: the frozen replica ends up behind the fresh one.
    wait_until(lambda: lagging.info("replication")["master_link_status"] == "down", 10, "the link to drop")
    lag = fresh.info("replication")["slave_repl_offset"] - lagging.info("replication")["slave_repl_offset"]
    assert lag > 1_000_000
    new = wait_until(
        lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
        FAILOVER_DEADLINE,
        "a failover",
    )
    assert new == fresh.address
    assert fresh.client().get("lag39999") == value


def test_watcher_killed_mid_failover_and_restarted_keeps_one_primary_and_epochs(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    redis.primary.kill()
    # Kill whichever watcher wins the election as soon as it has voted for itself.
    leader = wait_until(
        lambda: next((w for w in cluster.watchers if "+try-failover" in w.log_text()), None),
        FAILOVER_DEADLINE,
        "a candidate",
        interval=0.005,
    )
    leader.kill()
    before = json.loads(leader.state_file.read_text())["primaries"]["mymaster"]
    new = wait_until(
        lambda: next(
            (a for w in cluster.running() if (a := w.master_addr()) not in (None, redis.primary.address)),
            None,
        ),
        FAILOVER_DEADLINE * 2,
        "a failover despite the candidate's death",
    )
    leader.start()
    cluster.wait_agree(new, timeout=10)
    after = json.loads(leader.state_file.read_text())["primaries"]["mymaster"]
    for key in ("current_epoch", "voted_epoch", "config_epoch"):
        assert after[key] >= before[key], key
    time.sleep(2.0)
    masters = [a for a, r in roles(redis).items() if r == "master"]
    assert masters == [new]


def test_redis_py_sentinel_client_discovers_writes_and_follows_a_failover(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    from redis.sentinel import Sentinel

    redis = redis_cluster(replicas=2)
    cluster = watchers(redis.primary.address)
    cluster.wait_agree(redis.primary.address)
    sentinel = Sentinel([("127.0.0.1", w.port) for w in cluster.watchers], socket_timeout=0.5)
    assert sentinel.discover_master("mymaster") == (redis.primary.address.host, redis.primary.address.port)
    replicas = set(sentinel.discover_slaves("mymaster"))
    assert replicas == {(r.address.host, r.address.port) for r in redis.replicas}
    primary = sentinel.master_for("mymaster", socket_timeout=0.5, decode_responses=True)
    primary.set("before", "1")
    redis.wait_synced()
    redis.primary.kill()
    # The same client object keeps working: it re-discovers the new primary on reconnect.
    wait_until(lambda: primary.set("after", "2"), FAILOVER_DEADLINE, "writes through the Sentinel client")
    host, port = sentinel.discover_master("mymaster")
    assert (host, port) != (redis.primary.address.host, redis.primary.address.port)
    assert primary.get("before") == "1" and primary.get("after") == "2"
    reader = sentinel.slave_for("mymaster", socket_timeout=0.5, decode_responses=True)
    wait_until(lambda: reader.get("after") == "2", 10, "the remaining replica to serve the new write")
    primary.connection_pool.disconnect()
    reader.connection_pool.disconnect()
    for s in sentinel.sentinels:
        s.close()
