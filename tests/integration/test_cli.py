"""The `haredis` operations commands against a live 3-watcher cluster on real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis as redis_py

from haredis.core.model import Address

from .haredis_procs import HaredisCluster, wait_until
from .redis_procs import RedisCluster

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 40.0, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haredis", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


@pytest.fixture
def live(
    redis_cluster: Callable[..., RedisCluster],
) -> Iterator[tuple[RedisCluster, HaredisCluster]]:
    redis = redis_cluster(replicas=2)
    cluster = HaredisCluster(redis.primary.address)
    try:
        cluster.start()
        cluster.wait_agree(redis.primary.address)
        # Every watcher has read every replica's INFO before the tests look at them.
        wait_until(
            lambda: all(len(status(cluster, i)["primaries"][0]["replicas"]) == 2 for i in range(3)),
            10,
            "replica discovery",
        )
        yield redis, cluster
    finally:
        cluster.close()


def status(cluster: HaredisCluster, i: int = 0) -> dict:  # type: ignore[type-arg]
    result = cli("status", "--json", "--watcher", f"127.0.0.1:{cluster.watchers[i].port}")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_status_json_is_the_documented_contract(live: tuple[RedisCluster, HaredisCluster]) -> None:
    redis, cluster = live
    doc = status(cluster)
    assert doc["watcher"] == "w1" and doc["electorate"] == 3 and doc["in_hold"] is False
    [p] = doc["primaries"]
    assert p["name"] == "mymaster" and p["address"] == str(redis.primary.address)
    assert p["status"] == "ok" and p["quorum_ok"] is True and p["paused"] is False
    assert {r["address"] for r in p["replicas"]} == {str(r.address) for r in redis.replicas}
    assert all(r["link"] == "up" and r["lag_bytes"] is not None for r in p["replicas"])
    assert sorted(w["name"] for w in p["watchers"]) == ["w2", "w3"]
    human = cli("status", "--watcher", f"127.0.0.1:{cluster.watchers[0].port}")
    assert human.returncode == 0 and f"mymaster: primary {redis.primary.address} [ok]" in human.stdout


def test_unreachable_watcher_exits_4_with_a_clear_message() -> None:
    result = cli("status", "--watcher", "127.0.0.1:1")
    assert result.returncode == 4
    assert "cannot reach the watcher at 127.0.0.1:1" in result.stderr


def test_dry_run_lists_every_candidate_and_changes_nothing(live: tuple[RedisCluster, HaredisCluster]) -> None:
    redis, cluster = live
    port = str(cluster.watchers[0].port)
    result = cli("failover", "mymaster", "--dry-run", "--json", "--watcher", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["mode"] == "switchover" and plan["refusal"] is None
    assert {c["address"] for c in plan["candidates"]} == {str(r.address) for r in redis.replicas}
    assert all(c["eligible"] and c["reason"] == "eligible" for c in plan["candidates"])
    time.sleep(0.5)
    assert status(cluster)["primaries"][0]["config_epoch"] == 0


def test_failover_without_yes_asks_and_aborts_on_no(live: tuple[RedisCluster, HaredisCluster]) -> None:
    redis, cluster = live
    result = cli("failover", "mymaster", "--watcher", f"127.0.0.1:{cluster.watchers[0].port}", stdin="n\n")
    assert result.returncode == 1 and "Proceed?" in result.stdout
    assert redis.primary.role() == "master"


def test_switchover_loses_no_acknowledged_write_and_moves_the_epoch(
    live: tuple[RedisCluster, HaredisCluster],
) -> None:
    redis, cluster = live
    target = redis.replicas[1].address
    from redis.sentinel import Sentinel

    sentinel = Sentinel([("127.0.0.1", w.port) for w in cluster.watchers], socket_timeout=0.3)
    client = sentinel.master_for("mymaster", socket_timeout=0.3)
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 100_000:
            n += 1
            try:
                client.set(f"sw:{n}", n)
                acked.append(n)
            except (redis_py.ConnectionError, redis_py.TimeoutError, redis_py.ResponseError):
                time.sleep(0.01)
            time.sleep(0.002)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(acked) > 100, 10, "the writer to start")
        result = cli(
            "failover",
            "mymaster",
            "--to",
            str(target),
            "--yes",
            "--json",
            "--watcher",
            f"127.0.0.1:{cluster.watchers[1].port}",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outcome = json.loads(result.stdout)
        assert outcome["mode"] == "switchover" and outcome["new"] == str(target)
        before = len(acked)
        wait_until(lambda: len(acked) > before + 100, 10, "writes to resume on the new primary")
    finally:
        stop.set()
        thread.join(5)
    cluster.wait_agree(target)
    wait_until(lambda: redis.primary.role() == "slave", 10, "the old primary to follow")
    new_primary = next(r for r in redis.replicas if r.address == target).client()
    values = new_primary.mget([f"sw:{n}" for n in acked])
    assert all(v is not None for v in values), f"{sum(v is None for v in values)} acknowledged writes lost"
    doc = status(cluster, 2)
    assert doc["primaries"][0]["config_epoch"] >= 1 and doc["primaries"][0]["address"] == str(target)
    # Every watcher agrees, and no watcher failed over a second time afterwards (redis#13118).
    time.sleep(2.0)
    assert [w.master_addr() for w in cluster.watchers] == [target] * 3
    history = json.loads(
        cli("history", "mymaster", "--json", "--watcher", f"127.0.0.1:{cluster.watchers[1].port}").stdout
    )
    leader = [
        e
        for w in cluster.watchers
        for e in json.loads(cli("history", "--json", "--watcher", f"127.0.0.1:{w.port}").stdout)
        if e["role"] == "leader"
    ]
    assert len(leader) == 1 and leader[0]["reason"] == "switchover" and leader[0]["new"] == str(target)
    assert history and history[-1]["new"] == str(target)
    for s in sentinel.sentinels:
        s.close()
    client.connection_pool.disconnect()


def test_pause_blocks_failover_on_every_watcher_and_resume_ends_it(
    live: tuple[RedisCluster, HaredisCluster],
) -> None:
    redis, cluster = live
    port = f"127.0.0.1:{cluster.watchers[0].port}"
    result = cli("pause", "mymaster", "--ttl", "10m", "--reason", "kernel upgrade", "--watcher", port)
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: all(status(cluster, i)["primaries"][0]["paused"] for i in range(3)), 10, "the pause to spread"
    )
    assert status(cluster, 2)["primaries"][0]["pause_reason"] == "kernel upgrade"
    redis.primary.kill()
    time.sleep(3.0)
    assert all(w.master_addr() == redis.primary.address for w in cluster.watchers)
    result = cli("resume", "mymaster", "--watcher", f"127.0.0.1:{cluster.watchers[2].port}")
    assert result.returncode == 0, result.stderr
    new = wait_until(
        lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a, 15, "the failover"
    )
    assert isinstance(new, Address) and new in {r.address for r in redis.replicas}


def test_bad_arguments_get_clear_errors(live: tuple[RedisCluster, HaredisCluster]) -> None:
    _, cluster = live
    port = f"127.0.0.1:{cluster.watchers[0].port}"
    result = cli("pause", "nosuch", "--watcher", port)
    assert result.returncode == 6 and "No such master" in result.stderr
    result = cli("pause", "mymaster", "--ttl", "soon", "--watcher", port)
    assert result.returncode == 2 and "expected a duration" in result.stderr
    result = cli("failover", "mymaster", "--to", "10.9.9.9:1", "--yes", "--watcher", port)
    assert result.returncode == 6 and "not a known replica" in result.stderr


def test_metrics_health_ready_and_topology_on_a_live_cluster(
    redis_cluster: Callable[..., RedisCluster],
) -> None:
    import shutil
    import urllib.error
    import urllib.request

    redis = redis_cluster(replicas=2)
    cluster = HaredisCluster(redis.primary.address, metrics=True)
    try:
        cluster.start()
        cluster.wait_agree(redis.primary.address)
        base = f"http://127.0.0.1:{cluster.metrics_ports[0]}"

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=3) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                # /ready answers 503 until the first full cycle: close the error's response,
                # or its socket is reported unclosed when the exception is collected.
                with exc:
                    return exc.code, exc.read().decode()

        wait_until(lambda: get("/ready")[0] == 200, 10, "/ready")
        assert get("/health")[0] == 200
        topology = json.loads(get("/topology")[1])
        assert json.dumps(topology).count(str(redis.primary.address)) >= 1
        wait_until(lambda: "haredis_master_ok_replicas" in get("/metrics")[1], 10, "metrics")
        text = get("/metrics")[1]
        assert (
            'haredis_master_config_epoch{master_address="' in text or "haredis_master_config_epoch{" in text
        )
        assert "haredis_build_info" in text and "haredis_last_cycle_timestamp_seconds" in text
        if shutil.which("promtool"):
            check = subprocess.run(
                ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False
            )
            assert check.returncode == 0, check.stdout + check.stderr
        # A failover shows in the counters of the watcher that led it.
        redis.primary.kill()
        new = wait_until(
            lambda: (a := cluster.watchers[0].master_addr()) != redis.primary.address and a,
            15,
            "the failover",
        )
        cluster.wait_agree(new)

        def led_ok() -> bool:
            for port in cluster.metrics_ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
                    body = r.read().decode()
                if 'haredis_failovers_total{master_name="mymaster",result="ok"} 1.0' in body:
                    return True
            return False

        wait_until(led_ok, 10, "one watcher to count the failover it led")
    finally:
        cluster.close()
