"""The test harness itself: ports for test servers must not collide with anything."""

from __future__ import annotations

import socket
from pathlib import Path

import redis

from .redis_procs import _PORT_HIGH, LOOPBACK, RedisBackend, free_port


def test_free_ports_are_unique_and_below_the_ephemeral_range() -> None:
    """Outgoing connections take ports from the ephemeral range; a test port from there
    could be taken between free_port() and the server's bind (a CI failure)."""
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(1024 <= port < low for port in ports)
    assert max(ports) < _PORT_HIGH


def test_a_replica_whose_port_was_taken_meanwhile_starts_on_another(
    redis_backend: RedisBackend,
) -> None:
    cluster = redis_backend.cluster(1)
    replica_port = None
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        cluster.primary.start()
        replica = redis_backend.proc(replicaof=cluster.primary.address)
        cluster.replicas.append(replica)
        replica_port = replica.port
        squatter.bind((LOOPBACK, replica_port))
        squatter.listen()
        replica.start(wait=False)
        replica.finish_start()
        assert replica.port != replica_port
        client = redis.Redis(LOOPBACK, replica.port, socket_timeout=5)
        assert client.ping()
        client.close()
    finally:
        squatter.close()
        cluster.close()
