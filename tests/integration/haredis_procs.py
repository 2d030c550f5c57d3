"""Real haredis watcher processes on loopback, for the integration tests, the demo and the
benchmarks. Each watcher is `python -m haredis run -c <file>` in its own temp dir, with a
generated config (free ports, a shared peer secret, its own data_dir).

Every wait has a deadline; every process is killed at close(), even after a failed test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from haredis.core.model import Address

from .redis_procs import LOOPBACK, free_port

START_TIMEOUT = 15.0


class HaredisProcError(RuntimeError):
    pass


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing we wait for may not answer yet
            last_exc = exc
        if time.monotonic() >= deadline:
            raise HaredisProcError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")
        time.sleep(interval)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class HaredisProc:
    """One watcher process."""

    def __init__(self, name: str, port: int, workdir: Path, config_text: str) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []

    @property
    def address(self) -> Address:
        return Address(LOOPBACK, self.port)

    @property
    def state_file(self) -> Path:
        return self.workdir / f"{self.name}-data" / "state.json"

    def start(self, *, wait: bool = True) -> Self:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "haredis", "run", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        def answers() -> bool:
            if self.popen is not None and self.popen.poll() is not None:
                raise HaredisProcError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            return bool(self.client(timeout=0.5).ping())

        wait_until(answers, timeout, f"watcher {self.name} to answer PING")

    def client(self, *, timeout: float = 2.0) -> redis.Redis:
        client = redis.Redis(LOOPBACK, self.port, socket_timeout=timeout, decode_responses=True, protocol=2)
        self._clients.append(client)
        return client

    def master_addr(self, primary: str = "mymaster") -> Address | None:
        reply = self.client(timeout=1.0).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", primary)
        if not reply:
            return None
        return Address(str(reply[0]), int(reply[1]))

    def master_info(self, primary: str = "mymaster") -> dict[str, str]:
        reply = self.client(timeout=1.0).execute_command("SENTINEL", "MASTER", primary)
        if isinstance(reply, dict):
            return {str(k): str(v) for k, v in reply.items()}
        return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply), 2)}

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(5)

    def stop(self) -> None:
        self._signal(signal.SIGSTOP)

    def cont(self) -> None:
        self._signal(signal.SIGCONT)

    def terminate(self, timeout: float = 10.0) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
            raise HaredisProcError(f"{self.name} did not stop on SIGTERM within {timeout}s") from None

    def _signal(self, sig: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)
            self.popen.kill()
            with contextlib.suppress(Exception):
                self.popen.wait(5)


class HaredisCluster:
    """`n` watchers watching one primary ("mymaster"), peers of each other."""

    def __init__(
        self,
        primary: Address,
        *,
        watchers: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        extra_primary: str = "",
        extra_watcher: str = "",
        workdir: str | None = None,
        metrics: bool = False,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="haredis-") if workdir is None else None
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        (self.workdir / "secret").write_text("test-secret-of-enough-length\n")
        ports = [free_port() for _ in range(watchers)]
        self.metrics_ports = [free_port() if metrics else 0 for _ in range(watchers)]
        self.watchers: list[HaredisProc] = []
        for i, port in enumerate(ports):
            name = f"w{i + 1}"
            peers = ", ".join(_toml_str(f"{LOOPBACK}:{p}") for p in ports if p != port)
            text = f"""
[watcher]
name = {_toml_str(name)}
bind = "{LOOPBACK}"
port = {port}
metrics_port = {self.metrics_ports[i]}
peers = [{peers}]
data_dir = {_toml_str(str(self.workdir / f"{name}-data"))}
secret_file = {_toml_str(str(self.workdir / "secret"))}
log_level = "debug"
{extra_watcher}

[[primaries]]
name = "mymaster"
address = "{primary.host}:{primary.port}"
quorum = {quorum}
down_after_ms = {down_after_ms}
failover_timeout_ms = 10000
min_failover_interval_ms = 2000
{extra_primary}
"""
            self.watchers.append(HaredisProc(name, port, self.workdir, text))

    def start(self, only: Sequence[int] | None = None) -> Self:
        chosen = [self.watchers[i] for i in only] if only is not None else self.watchers
        try:
            for w in chosen:
                w.start(wait=False)
            for w in chosen:
                w.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def running(self) -> list[HaredisProc]:
        return [w for w in self.watchers if w.popen is not None and w.popen.poll() is None]

    def wait_agree(
        self, address: Address, timeout: float = 10.0, among: Sequence[HaredisProc] | None = None
    ) -> None:
        group = list(among) if among is not None else self.running()

        def agreed() -> bool:
            return all(w.master_addr() == address for w in group)

        wait_until(agreed, timeout, f"watchers {[w.name for w in group]} to agree on {address}")

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log_tail(60)}" for w in self.watchers)

    def close(self) -> None:
        for w in self.watchers:
            w.close()
        if self._tmp is not None:
            with contextlib.suppress(Exception):
                self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
