"""`[watcher] max_clients` and `client_idle_timeout_ms` reach the RESP port of a real daemon.

(The server's own behaviour at its limits is tested in test_server.py; this checks the
configuration gets there.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from .haredis_procs import HaredisCluster
from .redis_procs import RedisCluster

pytestmark = pytest.mark.integration

LIMITS = "max_clients = 16\nclient_idle_timeout_ms = 400\n"


@pytest.fixture
def one_watcher(redis_cluster: Callable[..., RedisCluster]) -> Iterator[HaredisCluster]:
    redis = redis_cluster(replicas=1)
    cluster = HaredisCluster(redis.primary.address, watchers=1, quorum=1, extra_watcher=LIMITS)
    try:
        yield cluster.start()
    finally:
        cluster.close()


def _connect(cluster: HaredisCluster) -> socket.socket:
    address = cluster.watchers[0].address
    return socket.create_connection((address.host, address.port), timeout=5.0)


def _ping(sock: socket.socket) -> bytes:
    sock.sendall(b"PING\r\n")
    return sock.recv(100)


def test_connections_beyond_max_clients_are_refused(one_watcher: HaredisCluster) -> None:
    held: list[socket.socket] = []
    try:
        # The daemon may hold some of its own (a peer link, the CLI): fill up to the limit.
        refused = b""
        for _ in range(40):
            sock = _connect(one_watcher)
            held.append(sock)
            reply = _ping(sock)
            if reply.startswith(b"-ERR max number of clients reached"):
                refused = reply
                break
            assert reply == b"+PONG\r\n"
        assert refused, "40 connections accepted with max_clients = 16"
        assert len(held) <= 17
    finally:
        for sock in held:
            sock.close()
    # Below the limit again, a new client is served.
    with _connect(one_watcher) as sock:
        assert _ping(sock) == b"+PONG\r\n"


def test_a_silent_client_is_closed_after_the_idle_timeout(one_watcher: HaredisCluster) -> None:
    with _connect(one_watcher) as sock:
        assert _ping(sock) == b"+PONG\r\n"
        deadline = time.monotonic() + 10.0
        closed = False
        while time.monotonic() < deadline:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            if sock.recv(100) == b"":
                closed = True
                break
        assert closed
