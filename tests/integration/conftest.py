"""Fixtures that start real Redis servers (see redis_procs.py).

The backend comes from ``HAREDIS_TEST_BACKEND=auto|binary|docker`` (default auto): the
``redis-server`` binary when it is on PATH, else the pinned ``redis`` image via testcontainers
when a Docker engine answers, else every test that needs Redis is skipped with the reason.

Factories, so a test can start as many servers as it needs; each is closed at teardown, even
when the test fails::

    def test_x(redis_proc, redis_cluster):
        proc = redis_proc(requirepass="s3cret")
        cluster = redis_cluster(replicas=2, priorities=[10, 20])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .redis_procs import BackendUnavailable, RedisBackend, RedisCluster, RedisProc, choose_backend

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything in this directory needs a Redis server.
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_backend() -> RedisBackend:
    try:
        return choose_backend()
    except BackendUnavailable as exc:
        pytest.skip(f"no Redis backend for the integration tests: {exc}")


@pytest.fixture
def redis_proc(redis_backend: RedisBackend) -> Iterator[Callable[..., RedisProc]]:
    """``redis_proc(**kwargs)`` starts a RedisProc (see RedisProc for the arguments)."""
    started: list[RedisProc] = []

    def start(**kwargs: Any) -> RedisProc:
        proc = redis_backend.proc(**kwargs)
        started.append(proc)
        return proc.start()

    yield start
    for proc in reversed(started):
        proc.close()


@pytest.fixture
def redis_cluster(redis_backend: RedisBackend) -> Iterator[Callable[..., RedisCluster]]:
    """``redis_cluster(replicas=2, **kwargs)`` starts a primary and replicas, links up."""
    started: list[RedisCluster] = []

    def start(replicas: int = 2, **kwargs: Any) -> RedisCluster:
        cluster = redis_backend.cluster(replicas, **kwargs)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in reversed(started):
        cluster.close()
