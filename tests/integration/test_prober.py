"""haredis.prober against real redis-server processes on loopback (no mocks): the probes the
runtime sends without a task each must answer and fail exactly as RedisLink.ping does (the
same scenarios as tests/integration/test_redis_link.py's PING tests).

Timing: deadlines are checked loosely (a generous slack on top of the timeout); "one hung
instance does not delay another" is checked by ordering, not by numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from haredis.core.events import FailureKind
from haredis.core.model import Address, InstanceInfo, Role
from haredis.metrics import TimedProbeLink
from haredis.prober import ProbeChannel, Prober, as_info_target, as_probe_target
from haredis.redis_link import LinkError, RedisLink

from .redis_procs import RedisProc, free_port
from .test_redis_link import ACL, _client_ids, _make_certs

pytestmark = pytest.mark.integration

ProcFactory = Callable[..., RedisProc]
ChannelFactory = Callable[..., ProbeChannel]

SLACK = 2.0


@pytest.fixture
async def make_channel() -> AsyncIterator[ChannelFactory]:
    prober = Prober()
    channels: list[ProbeChannel] = []

    def make(address: Address, **kwargs: Any) -> ProbeChannel:
        options: dict[str, Any] = {"username": None, "password": None, "connect_timeout": 1.0}
        options.update(kwargs)
        channel = prober.channel(RedisLink(address, **options))
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.close()
    prober.close()


async def ping(channel: ProbeChannel, timeout: float) -> str:
    """One probe, awaited: its reply, or its failure raised."""
    answer: asyncio.Future[tuple[str | None, LinkError | None]] = asyncio.get_running_loop().create_future()
    channel.request(timeout, lambda reply, error: answer.set_result((reply, error)))
    reply, error = await asyncio.wait_for(answer, timeout + SLACK + 3.0)
    if error is not None:
        raise error
    assert reply is not None
    return reply


async def expect_failure(channel: ProbeChannel, timeout: float, kind: FailureKind) -> LinkError:
    with pytest.raises(LinkError) as caught:
        await ping(channel, timeout)
    assert caught.value.kind is kind, caught.value
    return caught.value


# -- answers ------------------------------------------------------------------------------------


async def test_ping_pong_on_a_named_connection(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    proc = redis_proc()
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    assert channel.connected
    clients = _client_ids(proc, "haredis")
    assert len(clients) == 1, "the probe connection names itself with CLIENT SETNAME"
    for _ in range(5):
        assert await ping(channel, 1.0) == "PONG"
    assert _client_ids(proc, "haredis") == clients, "every probe goes over the same connection"


async def test_no_callback_runs_inside_ping(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    """The runtime calls ping while it executes the core's actions: an answer fed from
    there would run an event in the middle of another's actions."""
    gone = redis_proc()
    gone.kill()
    for address in (redis_proc().address, gone.address):
        channel = make_channel(address)
        answers: list[object] = []
        channel.request(1.0, lambda reply, error, answers=answers: answers.append(reply or error))
        assert answers == []
        await asyncio.wait_for(_until(lambda answers=answers: bool(answers)), 5.0)


async def _until(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_error_replies_are_answers(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    gone = redis_proc()
    gone.kill()
    stale = redis_proc(replicaof=gone.address, extra_args=["--replica-serve-stale-data", "no"])
    channel = make_channel(stale.address)
    assert await ping(channel, 1.0) == "MASTERDOWN"
    assert channel.connected  # an error reply is an answer: the connection is kept
    guarded = redis_proc(requirepass="s3cret")
    assert await ping(make_channel(guarded.address), 1.0) == "NOAUTH"


async def test_busy_script_is_an_answer(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    proc = redis_proc(extra_args=["--busy-reply-threshold", "50"])
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    runner = proc.client(timeout=20.0)
    thread = threading.Thread(target=lambda: _spin(runner), daemon=True)
    thread.start()
    try:
        replies = []
        for _ in range(100):
            replies.append(await ping(channel, 2.0))
            if replies[-1] == "BUSY":
                break
            await asyncio.sleep(0.02)
        assert replies[-1] == "BUSY", replies
    finally:
        with proc.client() as killer:
            killer.script_kill()
        await asyncio.to_thread(thread.join, 10)
    assert await ping(channel, 1.0) == "PONG"


def _spin(client: Any) -> None:
    with contextlib.suppress(Exception):  # killed by SCRIPT KILL: expected
        client.eval("while true do end", 0)


async def test_renamed_ping(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    proc = redis_proc(extra_args=["--rename-command", "PING", "hidden-ping"])
    assert await ping(make_channel(proc.address, renamed={"PING": "hidden-ping"}), 1.0) == "PONG"
    # Plain PING is an unknown command there: Redis's error reply is an answer (its code).
    assert await ping(make_channel(proc.address), 1.0) == "ERR"


async def test_a_second_probe_in_flight_is_answered_in_order(
    redis_proc: ProcFactory, make_channel: ChannelFactory
) -> None:
    proc = redis_proc()
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    first, second = await asyncio.gather(ping(channel, 1.0), ping(channel, 1.0))
    assert first == second == "PONG"


# -- failures -----------------------------------------------------------------------------------


async def test_killed_instance_resets_then_refuses(
    redis_proc: ProcFactory, make_channel: ChannelFactory
) -> None:
    proc = redis_proc()
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    proc.kill()
    # The established connection was closed by the kill: the next PING meets it (RESET).
    await expect_failure(channel, 1.0, FailureKind.RESET)
    assert not channel.connected
    # A new connection finds nothing listening: REFUSED.
    await expect_failure(channel, 1.0, FailureKind.REFUSED)
    await expect_failure(make_channel(proc.address), 1.0, FailureKind.REFUSED)
    proc.restart()
    assert await ping(channel, 1.0) == "PONG"


async def test_connection_killed_while_idle_is_reset_once_then_renewed(
    redis_proc: ProcFactory, make_channel: ChannelFactory
) -> None:
    """CLIENT KILL (as every promotion sends) closes an idle probe connection: the next PING
    reports RESET, as a PING written to it did before, and the one after reconnects."""
    proc = redis_proc()
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    with proc.client() as admin:
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
    await asyncio.wait_for(_until(lambda: not channel.connected), 5.0)
    error = await expect_failure(channel, 1.0, FailureKind.RESET)
    assert "closed by server" in error.detail
    assert await ping(channel, 1.0) == "PONG"


async def test_stopped_instance_times_out_and_connection_is_renewed(
    redis_proc: ProcFactory, make_channel: ChannelFactory
) -> None:
    proc = redis_proc()
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    before = _client_ids(proc, "haredis")
    proc.stop()
    try:
        started = time.monotonic()
        error = await expect_failure(channel, 0.3, FailureKind.TIMEOUT)
        assert time.monotonic() - started < 0.3 + SLACK
        assert "0.3" in error.detail
        assert not channel.connected
        # A fresh channel connects (the kernel accepts for the stopped process), then hangs.
        await expect_failure(make_channel(proc.address), 0.3, FailureKind.TIMEOUT)
    finally:
        proc.cont()
    # The late PONG of the timed-out PING went with its connection: a new one answers.
    assert await ping(channel, 2.0) == "PONG"
    assert _client_ids(proc, "haredis").isdisjoint(before)


async def test_stopped_instance_does_not_delay_another(
    redis_proc: ProcFactory, make_channel: ChannelFactory
) -> None:
    hung, healthy = redis_proc(), redis_proc()
    hung_channel, healthy_channel = make_channel(hung.address), make_channel(healthy.address)
    assert await ping(hung_channel, 1.0) == await ping(healthy_channel, 1.0) == "PONG"
    finished: list[str] = []

    async def probe(name: str, channel: ProbeChannel) -> str:
        try:
            return await ping(channel, 1.5)
        except LinkError as exc:
            return exc.kind.value
        finally:
            finished.append(name)

    hung.stop()
    try:
        results = await asyncio.gather(probe("hung", hung_channel), probe("healthy", healthy_channel))
    finally:
        hung.cont()
    assert results == ["timeout", "PONG"]
    assert finished == ["healthy", "hung"]


async def test_deadlines_of_different_lengths(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    """One timer serves every deadline: a short one set after a long one still fires first."""
    slow, quick = redis_proc(), redis_proc()
    slow_channel, quick_channel = make_channel(slow.address), make_channel(quick.address)
    assert await ping(slow_channel, 1.0) == await ping(quick_channel, 1.0) == "PONG"
    order: list[str] = []

    async def probe(name: str, channel: ProbeChannel, timeout: float) -> None:
        with pytest.raises(LinkError) as caught:
            await ping(channel, timeout)
        assert caught.value.kind is FailureKind.TIMEOUT
        order.append(name)

    slow.stop()
    quick.stop()
    try:
        await asyncio.gather(probe("long", slow_channel, 2.5), probe("short", quick_channel, 0.2))
    finally:
        slow.cont()
        quick.cont()
    assert order == ["short", "long"]


async def test_a_reply_that_arrived_while_our_loop_stalled_is_not_a_timeout(
    redis_proc: ProcFactory, make_channel: ChannelFactory
) -> None:
    """Our own loop blocks past the deadline while the PONG arrives: the loop handles the
    reply before the deadline, and the instance answered."""
    proc = redis_proc()
    channel = make_channel(proc.address)
    assert await ping(channel, 1.0) == "PONG"
    answer = asyncio.ensure_future(ping(channel, 0.2))
    await asyncio.sleep(0)  # the PING is written when ping() runs
    time.sleep(1.0)
    assert await answer == "PONG"
    assert channel.connected


async def test_localhost_hostname(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    proc = redis_proc()
    channel = make_channel(Address("localhost", proc.port))
    assert await ping(channel, 1.0) == "PONG"
    proc.kill()
    await expect_failure(channel, 1.0, FailureKind.RESET)
    await expect_failure(channel, 1.0, FailureKind.REFUSED)


async def test_unknown_host_is_an_error(make_channel: ChannelFactory) -> None:
    channel = make_channel(Address("no-such-host.invalid", 6379))
    with pytest.raises(LinkError) as caught:
        await ping(channel, 3.0)
    if caught.value.kind is FailureKind.TIMEOUT:
        pytest.skip("this machine's DNS resolver does not answer for .invalid within 3 s")
    assert caught.value.kind is FailureKind.ERROR
    assert "no-such-host.invalid" in caught.value.detail


@contextlib.asynccontextmanager
async def scripted_server(script: Callable[[socket.socket], None]) -> AsyncIterator[int]:
    """A one-connection TCP server on loopback that answers as `script` says (it gets the
    accepted connection once the CLIENT SETNAME a channel sends first was acknowledged);
    yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)  # CLIENT SETNAME
            conn.sendall(b"+OK\r\n")
            script(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        await asyncio.to_thread(thread.join, 5)
        listener.close()


async def test_a_stranger_that_does_not_speak_redis(make_channel: ChannelFactory) -> None:
    """A server that answers with something other than a PING reply line: ERROR."""

    def script(conn: socket.socket) -> None:
        conn.recv(1024)  # PING
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n")
        time.sleep(1.0)

    async with scripted_server(script) as port:
        error = await expect_failure(make_channel(Address("127.0.0.1", port)), 2.0, FailureKind.ERROR)
        assert "unexpected PING reply" in error.detail


def _reset_after_ping(conn: socket.socket) -> None:
    """Abort the connection (RST) with the PING unanswered."""
    conn.recv(1024)  # PING
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: RST


def _close_after_ping(conn: socket.socket) -> None:
    """Close the connection (EOF) with the PING unanswered."""
    conn.recv(1024)  # PING


def _close_after_half_a_reply(conn: socket.socket) -> None:
    """Part of a reply line, then the close: the PING met the close, it was not answered."""
    conn.recv(1024)  # PING
    conn.sendall(b"+PO")
    time.sleep(0.1)


@pytest.mark.parametrize(
    ("script", "detail"),
    [
        (_reset_after_ping, "reset"),
        (_close_after_ping, "closed by server"),
        (_close_after_half_a_reply, "closed by server"),
    ],
)
async def test_a_connection_lost_with_a_ping_in_flight_is_reset(
    make_channel: ChannelFactory, script: Callable[[socket.socket], None], detail: str
) -> None:
    async with scripted_server(script) as port:
        error = await expect_failure(make_channel(Address("127.0.0.1", port)), 2.0, FailureKind.RESET)
        assert detail in error.detail.lower()


# -- authentication and TLS ---------------------------------------------------------------------


async def test_auth(redis_proc: ProcFactory, make_channel: ChannelFactory) -> None:
    proc = redis_proc(requirepass="s3cret")
    assert await ping(make_channel(proc.address, password="s3cret"), 1.0) == "PONG"
    error = await expect_failure(make_channel(proc.address, password="wrong"), 1.0, FailureKind.ERROR)
    assert "s3cret" not in str(error) and "wrong" not in str(error)
    acl = redis_proc(acl=ACL)
    assert await ping(make_channel(acl.address, username="haredis", password="hapw"), 1.0) == "PONG"
    await expect_failure(
        make_channel(acl.address, username="haredis", password="nope"), 1.0, FailureKind.ERROR
    )
    # A user without client|setname still probes (the refused SETNAME is ignored).
    assert await ping(make_channel(acl.address, username="prober", password="probepw"), 1.0) == "PONG"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
async def test_tls(redis_proc: ProcFactory, make_channel: ChannelFactory, tmp_path: Path) -> None:
    ca, cert, key = _make_certs(tmp_path)
    tls_port = free_port()
    try:
        tls_args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        tls_args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        proc = redis_proc(extra_args=tls_args)
    except Exception as exc:  # pragma: no cover - a redis-server built without TLS
        pytest.skip(f"redis-server does not start with TLS: {exc}")
    channel = make_channel(Address("localhost", tls_port), ssl=ssl.create_default_context(cafile=str(ca)))
    for _ in range(3):
        assert await ping(channel, 1.0) == "PONG"
    assert proc.port != tls_port
    untrusting = make_channel(Address("localhost", tls_port), ssl=ssl.create_default_context())
    await expect_failure(untrusting, 1.0, FailureKind.ERROR)
    proc.stop()
    try:
        await expect_failure(channel, 0.3, FailureKind.TIMEOUT)
    finally:
        proc.cont()
    assert await ping(channel, 2.0) == "PONG"


# -- the metrics wrapper -------------------------------------------------------------------------


async def test_a_timed_probe_link_is_probed_lean_and_observes_each_answer(redis_proc: ProcFactory) -> None:
    proc = redis_proc()
    observed: list[float] = []
    link = RedisLink(proc.address, username=None, password=None, connect_timeout=1.0)
    target = as_probe_target(TimedProbeLink(link, observed.append))
    assert target is not None
    assert as_probe_target(object()) is None
    prober = Prober()
    channel = prober.channel(target)
    try:
        for _ in range(3):
            assert await ping(channel, 1.0) == "PONG"
        proc.kill()
        await expect_failure(channel, 1.0, FailureKind.RESET)
    finally:
        await channel.close()
        prober.close()
        await link.close()
    assert len(observed) == 3 and all(seconds >= 0 for seconds in observed)


# -- INFO over an info channel --------------------------------------------------------------------
#
# The runtime asks INFO every INFO period over a channel of its own (Prober.info_channel) instead
# of a redis-py round on the info link: the answers and failures must be RedisLink.info's.

ClusterFactory = Callable[..., Any]


@pytest.fixture
async def info_pair() -> AsyncIterator[Callable[..., tuple[ProbeChannel[object], RedisLink]]]:
    """``info_pair(address, **link options)``: an info channel and a separate RedisLink with
    the same options, to compare the channel with ``RedisLink.info``."""
    prober = Prober()
    channels: list[ProbeChannel[object]] = []
    links: list[RedisLink] = []

    def make(address: Address, **kwargs: Any) -> tuple[ProbeChannel[object], RedisLink]:
        options: dict[str, Any] = {"username": None, "password": None, "connect_timeout": 1.0}
        options.update(kwargs)
        target = as_info_target(RedisLink(address, **options))
        assert target is not None
        channel = prober.info_channel(target)
        link = RedisLink(address, **options)
        channels.append(channel)
        links.append(link)
        return channel, link

    yield make
    for channel in channels:
        await channel.close()
    for link in links:
        await link.close()
    prober.close()


async def ask_info(channel: ProbeChannel[object], timeout: float) -> InstanceInfo:
    """One INFO over the channel, awaited: its InstanceInfo, or its failure raised (an error
    reply is answered as a LinkError, raised here as RedisLink.info raises it)."""
    answer: asyncio.Future[tuple[object, LinkError | None]] = asyncio.get_running_loop().create_future()
    channel.request(timeout, lambda reply, error: answer.set_result((reply, error)))
    reply, error = await asyncio.wait_for(answer, timeout + SLACK + 3.0)
    if error is not None:
        raise error
    if isinstance(reply, LinkError):
        raise reply
    assert isinstance(reply, InstanceInfo), reply
    return reply


async def _same_info_both_ways(channel: ProbeChannel[object], link: RedisLink) -> InstanceInfo:
    """The channel's InstanceInfo equals RedisLink.info's. Offsets and seconds-ago fields
    move on their own, so the channel is asked between two link INFOs until those two agree
    (the instance stood still around the channel's INFO); bounded to 20 tries."""
    for _ in range(20):
        before = await link.info(2.0)
        lean = await ask_info(channel, 2.0)
        after = await link.info(2.0)
        if before == after:
            assert lean == before
            return lean
        await asyncio.sleep(0.05)
    raise AssertionError("the instance never stood still for three INFOs")


async def test_info_channel_answers_as_link_info_on_primary_and_replica(
    redis_cluster: ClusterFactory, info_pair: Callable[..., tuple[ProbeChannel[object], RedisLink]]
) -> None:
    cluster = redis_cluster(replicas=1)
    with cluster.primary.client() as client:
        client.mset({f"k{i}": "v" for i in range(7)})
    primary, link = info_pair(cluster.primary.address)
    seen = await _same_info_both_ways(primary, link)
    assert seen.role is Role.PRIMARY and len(seen.replicas) == 1 and seen.keys == 7
    replica, replica_link = info_pair(cluster.replicas[0].address)
    seen = await _same_info_both_ways(replica, replica_link)
    assert seen.role is Role.REPLICA and seen.master == cluster.primary.address and seen.link_up
    assert _client_ids(cluster.primary, "haredis"), "the info channel names its connection"


async def test_info_channel_reassembles_a_reply_cut_in_pieces() -> None:
    """A bulk reply that arrives a few bytes at a time (a large INFO over a slow link) is
    one answer; a second INFO on the same connection is answered too."""
    text = b"# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:42\r\n"
    frame = b"$%d\r\n%s\r\n" % (len(text), text)

    def script(conn: socket.socket) -> None:
        for _ in range(2):
            conn.recv(1024)  # INFO
            for start in range(0, len(frame), 5):
                conn.sendall(frame[start : start + 5])
                time.sleep(0.005)

    async with scripted_server(script) as port:
        prober = Prober()
        target = as_info_target(
            RedisLink(Address("127.0.0.1", port), username=None, password=None, connect_timeout=1.0)
        )
        assert target is not None
        channel = prober.info_channel(target)
        try:
            for _ in range(2):
                info = await ask_info(channel, 3.0)
                assert info.role is Role.PRIMARY and info.offset == 42
        finally:
            await channel.close()
            prober.close()


async def test_info_channel_errors_as_link_info(
    redis_proc: ProcFactory, info_pair: Callable[..., tuple[ProbeChannel[object], RedisLink]]
) -> None:
    """An error reply (no +info in the ACL), a wrong password, a renamed INFO: the same
    answers and failures as RedisLink.info, and an error reply keeps the connection."""
    acl = redis_proc(acl=[*ACL, "user noinfo on >nipw resetchannels -@all +ping +client|setname"])
    channel, link = info_pair(acl.address, username="noinfo", password="nipw")
    old, new = await _both_fail(channel, link)
    assert (new.kind, new.detail, new.reply) == (old.kind, old.detail, old.reply)
    assert new.reply == "NOPERM" and channel.connected
    channel, link = info_pair(acl.address, username="prober", password="probepw")
    assert (await ask_info(channel, 1.0)).role is Role.PRIMARY
    channel, link = info_pair(acl.address, username="haredis", password="wrong")
    old, new = await _both_fail(channel, link)
    assert (new.kind, new.detail) == (old.kind, old.detail)
    assert "wrong" not in str(new)
    renamed = redis_proc(extra_args=["--rename-command", "INFO", "xyz-info"])
    channel, link = info_pair(renamed.address, renamed={"INFO": "xyz-info"})
    assert await _same_info_both_ways(channel, link) is not None
    channel, link = info_pair(renamed.address)  # not told: INFO is an unknown command
    old, new = await _both_fail(channel, link)
    assert (new.kind, new.detail, new.reply) == (old.kind, old.detail, old.reply)


async def _both_fail(channel: ProbeChannel[object], link: RedisLink) -> tuple[LinkError, LinkError]:
    """INFO through RedisLink.info and through the channel must both fail: (old, new)."""
    with pytest.raises(LinkError) as old:
        await link.info(1.0)
    with pytest.raises(LinkError) as new:
        await ask_info(channel, 1.0)
    return old.value, new.value


async def test_info_channel_timeout_reset_and_idle_close_as_link_info(
    redis_proc: ProcFactory, info_pair: Callable[..., tuple[ProbeChannel[object], RedisLink]]
) -> None:
    proc = redis_proc()
    channel, link = info_pair(proc.address)
    await _same_info_both_ways(channel, link)
    proc.stop()
    try:
        with pytest.raises(LinkError) as old:
            await link.info(0.3)
        with pytest.raises(LinkError) as new:
            await ask_info(channel, 0.3)
        assert new.value.kind is old.value.kind is FailureKind.TIMEOUT
        assert new.value.detail == old.value.detail
    finally:
        proc.cont()
    assert (await ask_info(channel, 2.0)).role is Role.PRIMARY  # a new connection
    # The server closes the idle connection: RedisLink.info reconnects and asks again, so
    # does the channel (a PING would meet the close: RESET).
    with proc.client() as client:
        client.client_kill_filter(_type="normal", skipme=True)
    await asyncio.wait_for(_until(lambda: not channel.connected), 5.0)
    assert (await ask_info(channel, 2.0)).role is Role.PRIMARY
    assert (await link.info(2.0)).role is Role.PRIMARY
    proc.kill()
    with pytest.raises(LinkError) as new:
        await ask_info(channel, 1.0)
    assert new.value.kind is FailureKind.REFUSED


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
async def test_info_channel_over_tls(
    redis_proc: ProcFactory, info_pair: Callable[..., tuple[ProbeChannel[object], RedisLink]], tmp_path: Path
) -> None:
    ca, cert, key = _make_certs(tmp_path)
    tls_port = free_port()
    try:
        tls_args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        tls_args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        redis_proc(extra_args=tls_args)
    except Exception as exc:  # pragma: no cover - a redis-server built without TLS
        pytest.skip(f"redis-server does not start with TLS: {exc}")
    address = Address("localhost", tls_port)
    channel, link = info_pair(address, ssl=ssl.create_default_context(cafile=str(ca)))
    assert (await _same_info_both_ways(channel, link)).role is Role.PRIMARY
    untrusting, _ = info_pair(address, ssl=ssl.create_default_context())
    with pytest.raises(LinkError) as new:
        await ask_info(untrusting, 1.0)
    assert new.value.kind is FailureKind.ERROR
