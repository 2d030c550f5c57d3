"""The daemon speaks sd_notify to a real datagram socket, as systemd's Type=notify expects."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .haredis_procs import HaredisCluster, wait_until
from .redis_procs import RedisProc


def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(
    tmp_path: Path, redis_proc: Callable[..., RedisProc]
) -> None:
    primary = redis_proc()
    cluster = HaredisCluster(primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    w = cluster.watchers[0]
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "haredis", "run", "-c", str(w.config_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    messages: list[str] = []

    def receive_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout}s; got {messages}")
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue

    try:
        receive_until(lambda: any("READY=1" in m for m in messages), 15, "READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        # READY comes after the first full cycle, with that cycle's status line.
        assert f"STATUS=mymaster ok primary={primary.address}" in ready, ready
        # With WATCHDOG_USEC=1s the loop pings every half second while it makes progress.
        start = len(messages)
        receive_until(lambda: sum("WATCHDOG=1" in m for m in messages[start:]) >= 2, 5, "two WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        receive_until(lambda: any("STOPPING=1" in m for m in messages), 10, "STOPPING=1")
        assert proc.wait(10) == 0
        wait_until(lambda: w.state_file.exists(), 1, "the state file")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        sock.close()
        cluster.close()
