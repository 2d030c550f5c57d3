"""RedisLink against real redis-server processes on loopback (no mocks).

Timing: deadlines are checked loosely (a generous slack on top of the timeout) and the
"one hung instance does not delay another" property is checked by ordering, not by numbers.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from haredis.core.events import FailureKind
from haredis.core.model import Address, ReplicaLink, Role
from haredis.redis_link import LinkError, RedisLink, RoleReply, classify, parse_role

from .redis_procs import RedisCluster, RedisProc, free_port

pytestmark = pytest.mark.integration

ProcFactory = Callable[..., RedisProc]
ClusterFactory = Callable[..., RedisCluster]

# Generous slack on top of a deadline: a loaded CI machine may be slow to wake us up.
SLACK = 2.0


@pytest.fixture
async def make_link() -> AsyncIterator[Callable[..., RedisLink]]:
    links: list[RedisLink] = []

    def make(address: Address, **kwargs: Any) -> RedisLink:
        options: dict[str, Any] = {"username": None, "password": None, "connect_timeout": 1.0}
        options.update(kwargs)
        link = RedisLink(address, **options)
        links.append(link)
        return link

    yield make
    for link in links:
        await link.close()


async def _until(what: str, predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def _client_ids(proc: RedisProc, name: str) -> set[int]:
    with proc.client() as client:
        clients = client.client_list()
    return {int(entry["id"]) for entry in clients if entry.get("name") == name}


async def _expect_failure(coro: Any, kind: FailureKind) -> LinkError:
    with pytest.raises(LinkError) as caught:
        await coro
    assert caught.value.kind is kind, caught.value
    return caught.value


@pytest.fixture
def thread_runner() -> Iterator[Callable[[Callable[[], Any]], threading.Thread]]:
    """Run blocking client calls in threads; every thread is joined (bounded) at teardown."""
    threads: list[threading.Thread] = []

    def run(target: Callable[[], Any]) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True)
        threads.append(thread)
        thread.start()
        return thread

    yield run
    for thread in threads:
        thread.join(timeout=15)


# -- PING and failure classification --------------------------------------------------------------


async def test_ping_pong(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    assert link.connected
    assert _client_ids(proc, "haredis"), "the link names its connection with CLIENT SETNAME"


async def test_killed_instance_resets_then_refuses(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    proc.kill()
    # The established connection sees the close: RESET.
    await _expect_failure(link.ping(1.0), FailureKind.RESET)
    assert not link.connected
    # A new connection finds nothing listening: REFUSED.
    await _expect_failure(link.ping(1.0), FailureKind.REFUSED)
    # A fresh link (never connected) is refused too.
    await _expect_failure(make_link(proc.address).ping(1.0), FailureKind.REFUSED)
    proc.restart()
    assert await link.ping(1.0) == "PONG"


async def test_stopped_instance_times_out_and_connection_is_renewed(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    before = _client_ids(proc, "haredis")
    proc.stop()
    try:
        started = time.monotonic()
        error = await _expect_failure(link.ping(0.3), FailureKind.TIMEOUT)
        assert time.monotonic() - started < 0.3 + SLACK
        assert "0.3" in error.detail
        assert not link.connected
        # A fresh link connects (the kernel accepts for the stopped process) and then hangs.
        await _expect_failure(make_link(proc.address).ping(0.3), FailureKind.TIMEOUT)
    finally:
        proc.cont()
    # The late PONG of the timed-out PING must not be taken as the reply to INFO: the
    # connection was dropped and a new one is used.
    info = await link.info(2.0)
    assert info.role is Role.PRIMARY
    assert await link.ping(1.0) == "PONG"
    assert _client_ids(proc, "haredis").isdisjoint(before)


async def test_stopped_instance_does_not_delay_another(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    hung, healthy = redis_proc(), redis_proc()
    hung_link, healthy_link = make_link(hung.address), make_link(healthy.address)
    assert await hung_link.ping(1.0) == await healthy_link.ping(1.0) == "PONG"
    finished: list[str] = []

    async def probe(name: str, link: RedisLink) -> str:
        try:
            return await link.ping(1.5)
        except LinkError as exc:
            return exc.kind.value
        finally:
            finished.append(name)

    hung.stop()
    try:
        results = await asyncio.gather(probe("hung", hung_link), probe("healthy", healthy_link))
    finally:
        hung.cont()
    assert results == ["timeout", "PONG"]
    assert finished == ["healthy", "hung"]


async def test_cancellation_propagates_and_drops_the_connection(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    proc.stop()
    try:
        task = asyncio.create_task(link.ping(30.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not link.connected
    finally:
        proc.cont()
    assert await link.ping(1.0) == "PONG"


async def test_localhost_hostname(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc()
    link = make_link(Address("localhost", proc.port))
    assert await link.ping(1.0) == "PONG"
    assert (await link.info(1.0)).role is Role.PRIMARY
    proc.kill()
    await _expect_failure(link.ping(1.0), FailureKind.RESET)
    await _expect_failure(link.ping(1.0), FailureKind.REFUSED)


async def test_unknown_host_is_an_error(make_link: Callable[..., RedisLink]) -> None:
    link = make_link(Address("no-such-host.invalid", 6379))
    with pytest.raises(LinkError) as caught:
        await link.ping(3.0)
    if caught.value.kind is FailureKind.TIMEOUT:
        pytest.skip("this machine's DNS resolver does not answer for .invalid within 3 s")
    assert caught.value.kind is FailureKind.ERROR
    assert "no-such-host.invalid" in caught.value.detail


# -- error replies are answers to PING --------------------------------------------------------


async def test_loading_is_an_answer(
    redis_proc: ProcFactory,
    make_link: Callable[..., RedisLink],
    thread_runner: Callable[[Callable[[], Any]], threading.Thread],
) -> None:
    # DEBUG RELOAD keeps the server loading for a while when each key takes key-load-delay
    # microseconds; meanwhile it serves other clients (every 1024 loaded bytes) with -LOADING.
    proc = redis_proc(
        extra_args=["--enable-debug-command", "yes", "--loading-process-events-interval-bytes", "1024"]
    )
    admin = proc.client(timeout=30.0)
    admin.execute_command("DEBUG", "POPULATE", "4000")
    admin.config_set("key-load-delay", "300")
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    reload_done = threading.Event()

    def reload() -> None:
        try:
            admin.execute_command("DEBUG", "RELOAD")
        finally:
            reload_done.set()

    thread_runner(reload)
    replies: list[str] = []

    async def loading_seen() -> bool:
        replies.append(await link.ping(2.0))
        return replies[-1] == "LOADING" or reload_done.is_set()

    await _until("PING to answer LOADING", loading_seen)
    assert "LOADING" in replies, f"the reload finished before a PING saw it loading: {replies}"
    assert link.connected  # an error reply is an answer: the connection is kept
    # INFO is served while loading.
    assert (await link.info(2.0)).role is Role.PRIMARY
    await _until("the reload to finish", lambda: asyncio.to_thread(reload_done.wait, 0.05))
    assert await link.ping(1.0) == "PONG"


async def test_masterdown_and_noauth_are_answers(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    # A replica whose primary is gone and that must not serve stale data answers MASTERDOWN.
    gone = redis_proc()
    gone.kill()
    stale = redis_proc(replicaof=gone.address, extra_args=["--replica-serve-stale-data", "no"])
    link = make_link(stale.address)
    assert await link.ping(1.0) == "MASTERDOWN"
    assert (await link.info(1.0)).role is Role.REPLICA  # INFO is allowed on a stale replica
    # Without the password the server is still alive: NOAUTH is an answer.
    guarded = redis_proc(requirepass="s3cret")
    assert await make_link(guarded.address).ping(1.0) == "NOAUTH"


async def test_busy_script_is_an_answer(
    redis_proc: ProcFactory,
    make_link: Callable[..., RedisLink],
    thread_runner: Callable[[Callable[[], Any]], threading.Thread],
) -> None:
    proc = redis_proc(extra_args=["--busy-reply-threshold", "50"])
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    runner = proc.client(timeout=20.0)
    outcome: list[BaseException] = []

    def spin() -> None:
        try:
            runner.eval("while true do end", 0)
        except redis.RedisError as exc:
            outcome.append(exc)

    thread = thread_runner(spin)

    async def busy() -> bool:
        return await link.ping(2.0) == "BUSY"

    try:
        await _until("PING to answer BUSY", busy)
    finally:
        with proc.client() as killer:
            killer.script_kill()
    await asyncio.to_thread(thread.join, 10)
    assert outcome and "killed" in str(outcome[0]).lower()
    assert await link.ping(1.0) == "PONG"


# -- INFO and ROLE ----------------------------------------------------------------------------


async def test_info_on_primary_and_replica(
    redis_cluster: ClusterFactory, make_link: Callable[..., RedisLink]
) -> None:
    cluster = redis_cluster(replicas=2, priorities=[10, 20])
    writer = cluster.primary.client()
    for i in range(10):
        writer.set(f"k{i}", "v" * i)
    cluster.wait_synced()
    primary_raw = cluster.primary.info("server", "replication")

    primary = await make_link(cluster.primary.address).info(1.0)
    assert primary.role is Role.PRIMARY
    assert primary.run_id == primary_raw["run_id"]
    assert primary.offset == primary_raw["master_repl_offset"] > 0
    assert primary.master is None
    # The primary lists each replica with the offset it last acknowledged (once a second).
    expected = {ReplicaLink(r.address, offset=primary.offset, online=True) for r in cluster.replicas}
    primary_link = make_link(cluster.primary.address)

    async def acked() -> bool:
        return set((await primary_link.info(1.0)).replicas) == expected

    await _until("the primary to list both replicas as caught up", acked)

    for replica, priority in zip(cluster.replicas, [10, 20], strict=True):
        info = await make_link(replica.address).info(1.0)
        assert info.role is Role.REPLICA
        assert info.master == cluster.primary.address
        assert info.link_up is True
        assert info.link_down_seconds == 0.0
        assert info.priority == priority
        assert info.replid == primary.replid
        assert info.offset == primary.offset
        assert info.run_id == replica.info("server")["run_id"] != primary.run_id

    # The link goes down when the primary dies; the replica keeps its offset and history.
    cluster.primary.kill()
    replica_link = make_link(cluster.replicas[0].address)

    async def link_down() -> bool:
        return not (await replica_link.info(1.0)).link_up

    await _until("the replica to see its link down", link_down)
    info = await replica_link.info(1.0)
    assert info.offset == primary.offset
    assert info.replid == primary.replid
    assert info.link_down_seconds >= 0.0
    role = await replica_link.role(1.0)
    assert role.role is Role.REPLICA and role.master == cluster.primary.address
    assert role.link_state in ("connect", "connecting")


async def test_role(redis_cluster: ClusterFactory, make_link: Callable[..., RedisLink]) -> None:
    cluster = redis_cluster(replicas=1)
    cluster.primary.client().set("a", "1")
    cluster.wait_synced()
    primary_role = await make_link(cluster.primary.address).role(1.0)
    replica_role = await make_link(cluster.replicas[0].address).role(1.0)
    assert primary_role.role is Role.PRIMARY
    assert primary_role.master is None
    assert primary_role.offset > 0
    assert replica_role == RoleReply(
        Role.REPLICA, master=cluster.primary.address, link_state="connected", offset=primary_role.offset
    )


# -- topology changes -------------------------------------------------------------------------


async def test_promote_kills_clients_but_not_its_own_connection(
    redis_cluster: ClusterFactory, make_link: Callable[..., RedisLink]
) -> None:
    cluster = redis_cluster(replicas=1)
    replica = cluster.replicas[0]
    link = make_link(replica.address)
    assert (await link.role(1.0)).role is Role.REPLICA
    (link_id,) = _client_ids(replica, "haredis")

    victim = replica.client(client_name="victim")
    victim_id = victim.client_id()
    listener = replica.client(client_name="listener")
    pubsub = listener.pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1.0) is not None  # the subscribe confirmation
    assert _client_ids(replica, "victim") and _client_ids(replica, "listener")

    assert await link.promote(2.0) is True

    assert (await link.role(1.0)).role is Role.PRIMARY
    assert link.connected
    assert _client_ids(replica, "haredis") == {link_id}, "CLIENT KILL must skip the caller"
    assert not _client_ids(replica, "victim")
    assert not _client_ids(replica, "listener")
    # redis-py reconnects a pooled connection it finds closed: a new connection, a new id.
    assert victim.client_id() != victim_id
    pubsub.close()
    # Promoting a primary again is harmless and still says master.
    assert await link.promote(2.0) is True


async def test_replicaof_repoints(redis_cluster: ClusterFactory, make_link: Callable[..., RedisLink]) -> None:
    cluster = redis_cluster(replicas=2)
    new_primary, other = cluster.replicas
    assert await make_link(new_primary.address).promote(2.0) is True
    other_link = make_link(other.address)
    victim = other.client(client_name="victim")
    assert victim.ping()

    await other_link.replicaof(new_primary.address, 2.0)

    role = await other_link.role(1.0)
    assert role.role is Role.REPLICA and role.master == new_primary.address
    assert not _client_ids(other, "victim")
    new_primary.client().set("after", "repoint")
    new_primary.wait_synced(other)
    info = await other_link.info(1.0)
    assert info.link_up and info.master == new_primary.address
    # The old primary can be turned into a replica the same way.
    await make_link(cluster.primary.address).replicaof(new_primary.address, 2.0)
    new_primary.wait_synced(cluster.primary)


async def test_failover_to_switches_roles(
    redis_cluster: ClusterFactory, make_link: Callable[..., RedisLink]
) -> None:
    cluster = redis_cluster(replicas=2)
    writer = cluster.primary.client()
    for i in range(100):
        writer.set(f"k{i}", i)
    cluster.wait_synced()
    target, bystander = cluster.replicas
    old_link, target_link = make_link(cluster.primary.address), make_link(target.address)
    assert await old_link.failover_state(1.0) == "no-failover"
    old_history = (await old_link.info(1.0)).replid

    await old_link.failover_to(target.address, timeout_ms=5000, timeout=2.0)

    async def switched() -> bool:
        old, new = await old_link.role(1.0), await target_link.role(1.0)
        return old.role is Role.REPLICA and new.role is Role.PRIMARY

    await _until("FAILOVER to finish", switched)
    old_role = await old_link.role(1.0)
    assert old_role.master == target.address
    await _until("the failover state to clear", lambda: _state_is(old_link, "no-failover"))
    new_info = await target_link.info(1.0)
    # The new primary keeps the old history as replid2 and has every write.
    assert new_info.replid2 == old_history != new_info.replid
    with target.client() as check:
        assert check.get("k99") == "99"
    # The other replica stays chained below the old primary until someone repoints it.
    assert (await make_link(bystander.address).role(1.0)).master == cluster.primary.address


async def _state_is(link: RedisLink, state: str) -> bool:
    return await link.failover_state(1.0) == state


async def test_failover_to_a_non_replica_is_refused(
    redis_cluster: ClusterFactory, redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    cluster = redis_cluster(replicas=1)
    stranger = redis_proc()
    error = await _expect_failure(
        make_link(cluster.primary.address).failover_to(stranger.address, 1000, timeout=2.0), FailureKind.ERROR
    )
    assert error.reply == "ERR"
    with pytest.raises(ValueError):
        await make_link(cluster.primary.address).failover_to(stranger.address, 0, timeout=1.0)


async def test_a_command_on_a_link_killed_while_idle_runs_on_a_new_connection(
    redis_cluster: ClusterFactory, make_link: Callable[..., RedisLink]
) -> None:
    """Another watcher's REPLICAOF (or promotion) sends CLIENT KILL TYPE normal, which
    closes our idle link to that instance too; our next REPLICAOF must not fail for that
    (chaos schedule:1014: a RECONF lost this way left a frozen replica detached)."""
    cluster = redis_cluster(replicas=1)
    replica = cluster.replicas[0]
    link = make_link(replica.address, client_name="haredis-test")
    other = make_link(replica.address, client_name="haredis-other")
    assert (await link.info(1.0)).role is Role.REPLICA
    before = _client_ids(replica, "haredis-test")
    # The other link repoints the replica to where it already points: its CLIENT KILL
    # disconnects our idle connection.
    await other.replicaof(cluster.primary.address, 2.0)
    assert not _client_ids(replica, "haredis-test"), "CLIENT KILL left our connection open"
    await link.replicaof(cluster.primary.address, 2.0)
    after = _client_ids(replica, "haredis-test")
    assert after and not after & before, "the retry ran on a new connection"
    assert (await link.info(1.0)).master == cluster.primary.address


async def test_a_killed_instance_is_still_reported_refused_not_retried_forever(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert (await link.info(1.0)).role is Role.PRIMARY
    proc.kill()
    # The idle connection meets the close, the one retry finds nothing listening.
    await _expect_failure(link.info(1.0), FailureKind.REFUSED)
    await _expect_failure(link.info(1.0), FailureKind.REFUSED)


async def test_a_timeout_is_not_retried(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert (await link.info(1.0)).role is Role.PRIMARY
    proc.stop()
    try:
        started = time.monotonic()
        await _expect_failure(link.info(0.5), FailureKind.TIMEOUT)
        assert time.monotonic() - started < 0.5 + SLACK
    finally:
        proc.cont()


# -- authentication and TLS -------------------------------------------------------------------


async def test_auth_with_requirepass(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc(requirepass="s3cret")
    good = make_link(proc.address, password="s3cret")
    assert await good.ping(1.0) == "PONG"
    assert (await good.info(1.0)).role is Role.PRIMARY
    error = await _expect_failure(make_link(proc.address, password="wrong").ping(1.0), FailureKind.ERROR)
    assert "s3cret" not in str(error) and "wrong" not in str(error)


ACL = [
    "user default on nopass ~* &* +@all",
    "user haredis on >hapw resetchannels -@all +ping +info +role +replicaof +slaveof +failover "
    "+client|pause +client|unpause +client|kill +client|setname +config|get +config|set +multi +exec",
    "user prober on >probepw resetchannels -@all +ping +info",
]


async def test_auth_with_acl_user(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc(acl=ACL)
    link = make_link(proc.address, username="haredis", password="hapw")
    assert await link.ping(1.0) == "PONG"
    assert (await link.info(1.0)).role is Role.PRIMARY
    assert await link.config_get("maxmemory", 1.0) == "0"
    assert await link.promote(1.0) is True
    assert _client_ids(proc, "haredis")
    # Wrong password: an ERROR, not a crash.
    await _expect_failure(
        make_link(proc.address, username="haredis", password="nope").ping(1.0), FailureKind.ERROR
    )
    # A user without client|setname still works (the refused SETNAME is ignored)...
    prober = make_link(proc.address, username="prober", password="probepw")
    assert await prober.ping(1.0) == "PONG"
    assert (await prober.info(1.0)).role is Role.PRIMARY
    # ...and a command it may not run is an ERROR carrying the NOPERM code.
    error = await _expect_failure(prober.config_get("maxmemory", 1.0), FailureKind.ERROR)
    assert error.reply == "NOPERM"
    assert await prober.ping(1.0) == "PONG"  # the connection survives an error reply
    # Inside MULTI, a command refused at queue time aborts the whole transaction.
    error = await _expect_failure(prober.promote(1.0), FailureKind.ERROR)
    assert error.reply == "NOPERM"


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=haredis test CA",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
            "-out", "server.csr")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
async def test_tls(redis_proc: ProcFactory, make_link: Callable[..., RedisLink], tmp_path: Path) -> None:
    ca, cert, key = _make_certs(tmp_path)
    tls_port = free_port()
    try:
        tls_args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        tls_args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        proc = redis_proc(extra_args=tls_args)
    except Exception as exc:  # pragma: no cover - a redis-server built without TLS
        pytest.skip(f"redis-server does not start with TLS: {exc}")
    context = ssl.create_default_context(cafile=str(ca))
    link = make_link(Address("localhost", tls_port), ssl=context)
    assert await link.ping(1.0) == "PONG"
    assert (await link.info(1.0)).role is Role.PRIMARY
    assert proc.port != tls_port
    # A context that does not trust the CA fails the handshake: ERROR.
    untrusting = make_link(Address("localhost", tls_port), ssl=ssl.create_default_context())
    await _expect_failure(untrusting.ping(1.0), FailureKind.ERROR)


# -- pause, client kill, config, rename-command -----------------------------------------------


async def test_client_pause_write_blocks_writes_until_unpause(
    redis_proc: ProcFactory,
    make_link: Callable[..., RedisLink],
    thread_runner: Callable[[Callable[[], Any]], threading.Thread],
) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    writer = proc.client(timeout=10.0)
    await link.client_pause_write(10_000, 1.0)
    written = threading.Event()
    thread_runner(lambda: (writer.set("x", "1"), written.set()))
    # Reads still work while writes wait.
    assert await link.ping(1.0) == "PONG"
    assert not await asyncio.to_thread(written.wait, 0.3), "a write went through during CLIENT PAUSE WRITE"
    await link.client_unpause(1.0)
    assert await asyncio.to_thread(written.wait, 5.0)


async def test_client_kill_normal_and_pubsub(
    redis_proc: ProcFactory, make_link: Callable[..., RedisLink]
) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    assert await link.ping(1.0) == "PONG"
    victim = proc.client(client_name="victim")
    victim.ping()
    pubsub = proc.client(client_name="listener").pubsub()
    pubsub.subscribe("news")
    assert pubsub.get_message(timeout=1.0) is not None
    assert await link.client_kill_normal_and_pubsub(1.0) == 2
    assert link.connected
    assert await link.ping(1.0) == "PONG"
    assert not _client_ids(proc, "victim") and not _client_ids(proc, "listener")
    pubsub.close()


async def test_config_set_and_get(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc()
    link = make_link(proc.address)
    await link.config_set("min-replicas-max-lag", "3", 1.0)
    assert await link.config_get("min-replicas-max-lag", 1.0) == "3"
    assert await link.config_get("no-such-parameter", 1.0) is None
    error = await _expect_failure(link.config_set("no-such-parameter", "1", 1.0), FailureKind.ERROR)
    assert error.reply == "ERR"
    for bad in ("1\r\nnotification-script /tmp/x", "a\x00b"):
        with pytest.raises(ValueError):
            await link.config_set("masterauth", bad, 1.0)
    with pytest.raises(ValueError):
        await link.replicaof(Address("evil\nhost", 6379), 1.0)
    assert await link.ping(1.0) == "PONG"


async def test_renamed_commands(redis_proc: ProcFactory, make_link: Callable[..., RedisLink]) -> None:
    proc = redis_proc(
        extra_args=["--rename-command", "CONFIG", "hidden-config", "--rename-command", "FAILOVER", ""]
    )
    plain = make_link(proc.address)
    error = await _expect_failure(plain.config_get("maxmemory", 1.0), FailureKind.ERROR)
    assert error.reply == "ERR"
    renamed = make_link(proc.address, renamed={"config": "hidden-config", "FAILOVER": ""})
    assert await renamed.config_get("maxmemory", 1.0) == "0"
    error = await _expect_failure(renamed.failover_to(proc.address, 1000, timeout=1.0), FailureKind.ERROR)
    assert "disabled" in error.detail
    assert await renamed.ping(1.0) == "PONG"


# -- classification of low-level failures (pure) ----------------------------------------------


def _wrapped(inner: BaseException) -> redis.ConnectionError:
    """Mimic redis-py: a ConnectionError raised while handling the OS error."""
    try:
        try:
            raise inner
        except OSError:
            raise redis.ConnectionError("Error while reading from 127.0.0.1:6379") from None
    except redis.ConnectionError as exc:
        exc.__context__ = inner
        return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(111, "Connection refused"), FailureKind.REFUSED),
        (_wrapped(ConnectionRefusedError(111, "Connection refused")), FailureKind.REFUSED),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 6379, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 6379)"
            ),
            FailureKind.REFUSED,
        ),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed, [Errno 101] Network is unreachable"
            ),
            FailureKind.ERROR,
        ),
        (_wrapped(ConnectionResetError(104, "Connection reset by peer")), FailureKind.RESET),
        (_wrapped(BrokenPipeError(32, "Broken pipe")), FailureKind.RESET),
        (redis.ConnectionError("Connection closed by server."), FailureKind.RESET),
        (redis.TimeoutError("Timeout connecting to server"), FailureKind.TIMEOUT),
        (TimeoutError(), FailureKind.TIMEOUT),
        (_wrapped(socket.gaierror(-2, "Name or service not known")), FailureKind.ERROR),
        (redis.AuthenticationError("invalid username-password pair"), FailureKind.ERROR),
        (redis.exceptions.InvalidResponse("Protocol error"), FailureKind.ERROR),
    ],
)
def test_classify(exc: BaseException, kind: FailureKind) -> None:
    assert classify(exc) is kind


def test_parse_role_shapes() -> None:
    assert parse_role(["master", 42, []]) == RoleReply(Role.PRIMARY, offset=42)
    assert parse_role(["slave", "10.0.0.1", 6379, "connect", -1]) == RoleReply(
        Role.REPLICA, master=Address("10.0.0.1", 6379), link_state="connect", offset=-1
    )
    assert parse_role(["sentinel", ["mymaster"]]).role is Role.UNKNOWN
    for bad in ([], "master", ["slave", "h", 0, "connect", 1], ["master"], ["slave", "h", "x", "c", 1]):
        with pytest.raises(LinkError) as caught:
            parse_role(bad)
        assert caught.value.kind is FailureKind.ERROR
