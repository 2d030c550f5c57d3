"""Real redis-server processes on loopback, for the integration tests, the demo and the benchmarks.

No mocks: every :class:`RedisProc` is a real ``redis-server`` (Debian's binary, or the pinned
``redis`` image through testcontainers when only a Docker engine is available) listening on
127.0.0.1 on a free port, in its own temporary directory, without persistence
(``--save '' --appendonly no``).

Rules this module keeps:

* Every wait has a deadline and raises :class:`RedisProcError` with a clear message (and the
  tail of the server log) when it passes.
* Every process is cleaned up: use the objects as context managers or call ``close()``; a
  ``weakref.finalize`` kills whatever is left at garbage collection or interpreter exit, even
  after a failed test.
* Helper clients returned by ``client()`` are closed by ``close()`` too, so no ResourceWarning
  escapes under ``filterwarnings=error``.

Typical use::

    backend = choose_backend("auto")            # or RedisBackend("binary")
    with backend.cluster(replicas=2) as cluster:
        cluster.primary.kill()
        ...
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from haredis.core.model import Address, Role

__all__ = [
    "REDIS_IMAGE",
    "BackendUnavailable",
    "DockerRedisProc",
    "RedisBackend",
    "RedisCluster",
    "RedisProc",
    "RedisProcError",
    "choose_backend",
    "free_port",
]

# The Docker backend runs the same Redis version as Debian 12's package.
REDIS_IMAGE = "redis:7.0.15"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
WAIT_TIMEOUT = 10.0
POLL_INTERVAL = 0.02


class RedisProcError(RuntimeError):
    """A redis-server did not start, or a bounded wait on one ran out."""


class BackendUnavailable(RuntimeError):
    """Neither the requested redis-server binary nor a Docker engine can be used."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Test ports come from below the kernel's ephemeral range: a port from bind(("", 0)) lies
# inside it, and any outgoing connection (a client, a daemon's probe) may take it between
# our check and the server's bind (CI saw "Address already in use" that way). Each process
# starts at its own random point and never hands out a port twice.
_PORT_HIGH = max(_ephemeral_low(), 12000)
_PORT_LOW = max(1024, _PORT_HIGH - 20000)
_port_rng = random.Random(os.getpid() ^ time.monotonic_ns())
_handed_out: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A port free a moment ago, outside the ephemeral range, not handed out before."""
    for _ in range(2000):
        port = _port_rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RedisProcError(f"no free port in {_PORT_LOW}..{_PORT_HIGH} on {host}")


def _role_name(role: Role | str) -> str:
    return role.value if isinstance(role, Role) else role


def _wait_until(
    what: str, predicate: Callable[[], bool], timeout: float, describe: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise RedisProcError(f"timed out after {timeout:.1f}s waiting for {what}; {describe()}")
        time.sleep(POLL_INTERVAL)


def _reap_popen(popen_box: list[subprocess.Popen[bytes]], workdir: str | None) -> None:
    """Finalizer: kill (even a stopped process) and reap, then remove the temp dir."""
    for popen in popen_box:
        if popen.poll() is None:
            with contextlib.suppress(OSError):
                popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
    popen_box.clear()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class RedisProc:
    """One redis-server on 127.0.0.1:<port>, run from its own temporary directory.

    ``replicaof``: start as a replica of that address. ``replica_priority``: its priority.
    ``requirepass``: password of the default user (also used as ``masterauth`` so replicas of
    a password-protected primary can sync). ``acl``: lines of an ACL file (``user … on >pw …``)
    written into the work dir and passed as ``--aclfile``. ``auth``: the (username, password)
    the helper clients use; defaults to the default user with ``requirepass``.
    ``extra_args``: more ``redis-server`` arguments, e.g. ``["--enable-debug-command", "yes"]``.
    """

    kind = "binary"

    def __init__(
        self,
        *,
        port: int | None = None,
        replicaof: Address | None = None,
        replica_priority: int | None = None,
        requirepass: str | None = None,
        acl: Sequence[str] = (),
        auth: tuple[str | None, str] | None = None,
        extra_args: Sequence[str] = (),
        binary: str = "redis-server",
        workdir: str | Path | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self._auto_port = port is None
        self.host = LOOPBACK
        self.replicaof = replicaof
        self.replica_priority = replica_priority
        self.requirepass = requirepass
        self.acl = tuple(acl)
        if auth is None and requirepass is not None:
            auth = (None, requirepass)
        self.auth = auth
        self.extra_args = tuple(extra_args)
        self.binary = binary
        owns_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="haredis-redis-")) if workdir is None else Path(workdir)
        self._popens: list[subprocess.Popen[bytes]] = []
        self._clients: list[redis.Redis] = []
        self._finalizer = weakref.finalize(
            self, _reap_popen, self._popens, str(self.workdir) if owns_dir else None
        )
        self.stopped = False

    # -- identity -----------------------------------------------------------------------------

    @property
    def address(self) -> Address:
        return Address(self.host, self.port)

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._popens[-1].pid if self._popens else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} pid={self.pid}>"

    # -- lifecycle ----------------------------------------------------------------------------

    def server_args(self) -> list[str]:
        """The ``redis-server`` command line arguments (without the program name)."""
        args = [
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            # Start the (diskless) full sync at once instead of after Redis's default 5 s.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.replicaof is not None:
            args += ["--replicaof", self.replicaof.host, str(self.replicaof.port)]
        if self.replica_priority is not None:
            args += ["--replica-priority", str(self.replica_priority)]
        if self.requirepass is not None:
            args += ["--requirepass", self.requirepass, "--masterauth", self.requirepass]
        if self.acl:
            acl_path = self.workdir / "users.acl"
            acl_path.write_text("".join(line + "\n" for line in self.acl))
            args += ["--aclfile", str(acl_path)]
        args += list(self.extra_args)
        return args

    def _spawn(self) -> None:
        with open(self.workdir / "stdout.log", "ab") as out:
            popen = subprocess.Popen(
                [self.binary, *self.server_args()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._popens.append(popen)

    def _exited(self) -> bool:
        return not self._popens or self._popens[-1].poll() is not None

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT) -> Self:
        """Start the server; with ``wait``, return once it answers PING (see finish_start).
        Without, call finish_start later: it also retries a port taken meanwhile."""
        self._spawn()
        if wait:
            self.finish_start(timeout)
        return self

    def finish_start(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the started server answers PING; if its (automatic) port was taken
        between free_port() and the bind, start again on another one, at most twice."""
        for attempt in range(3):
            try:
                self.wait_ready(timeout)
                return
            except RedisProcError:
                if self._auto_port and attempt < 2 and self._exited() and "in use" in self.log_tail():
                    self.port = free_port()
                    self._spawn()
                    continue
                self.terminate()
                raise

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server answers PING (PONG, or an error reply such as LOADING)."""

        def answers() -> bool:
            if self._exited():
                raise RedisProcError(f"{self} exited during start; {self._describe()}")
            with self._raw_client(timeout=0.5) as client:
                try:
                    return bool(client.ping())
                except (redis.ResponseError, redis.exceptions.BusyLoadingError):
                    return True  # LOADING, MASTERDOWN, BUSY…: the server is up and answering

        _wait_until(f"{self} to answer PING", answers, timeout, self._describe)

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, without closing anything gracefully."""
        self._signal(signal.SIGKILL)
        self._popens[-1].wait(timeout=WAIT_TIMEOUT)
        self.stopped = False

    def stop(self) -> None:
        """SIGSTOP: the process hangs; the kernel still accepts TCP connections for it."""
        self._signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        """SIGCONT: resume a stopped process."""
        self._signal(signal.SIGCONT)
        self.stopped = False

    def restart(self, *, timeout: float = START_TIMEOUT) -> None:
        """Start again on the same port and directory (after kill() or terminate())."""
        if not self._exited():
            raise RedisProcError(f"{self} is still running; kill() or terminate() it first")
        self._auto_port = False
        self.start(timeout=timeout)

    def terminate(self, timeout: float = WAIT_TIMEOUT) -> None:
        """SIGTERM (after SIGCONT if stopped), wait, SIGKILL if it does not exit in time."""
        if self._exited():
            return
        popen = self._popens[-1]
        with contextlib.suppress(OSError):
            popen.send_signal(signal.SIGCONT)
            popen.terminate()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=WAIT_TIMEOUT)
        self.stopped = False

    def close(self) -> None:
        """Close helper clients, stop the server and remove its directory (idempotent)."""
        self._close_clients()
        self.terminate()
        self._finalizer()

    def _signal(self, signum: signal.Signals) -> None:
        if self._exited():
            raise RedisProcError(f"{self} is not running")
        self._popens[-1].send_signal(signum)

    def __enter__(self) -> Self:
        if self._exited():
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- clients and waits --------------------------------------------------------------------

    def _raw_client(self, timeout: float, **kwargs: Any) -> redis.Redis:
        username, password = self.auth if self.auth is not None else (None, None)
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": username,
            "password": password,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
            "protocol": 2,
        }
        options.update(kwargs)
        return redis.Redis(**options)

    def client(self, *, timeout: float = 5.0, **kwargs: Any) -> redis.Redis:
        """A synchronous redis.Redis (decoded replies, RESP2, no retries), closed by close().

        Keyword arguments override the defaults (e.g. ``client_name=…``, ``password=…``).
        """
        client = self._raw_client(timeout, **kwargs)
        self._clients.append(client)
        return client

    def _close_clients(self) -> None:
        clients, self._clients[:] = list(self._clients), []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()

    def info(self, *sections: str) -> dict[str, Any]:
        """INFO as redis-py parses it (numbers as int, ``slaveN`` as dicts)."""
        with self._raw_client(timeout=2.0) as client:
            return dict(client.info(*sections) if sections else client.info())

    def role(self) -> str:
        with self._raw_client(timeout=2.0) as client:
            reply = client.execute_command("ROLE")
        return str(reply[0])

    def wait_role(self, role: Role | str, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until ROLE reports ``role`` ("master" or "slave", or a Role)."""
        want = _role_name(role)
        _wait_until(f"{self} to have role {want}", lambda: self.role() == want, timeout, self._describe)

    def wait_synced(self, replica: RedisProc, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until ``replica`` follows this server with its link up and has caught up, and
        this server lists it as ``state=online``."""

        def synced() -> bool:
            mine = self.info("replication")
            target = int(mine.get("master_repl_offset", -1))
            listed_online = any(
                isinstance(entry, dict)
                and int(entry.get("port", 0)) == replica.port
                and entry.get("state") == "online"
                for key, entry in mine.items()
                if key.startswith("slave")
            )
            seen = replica.info("replication")
            return (
                listed_online
                and seen.get("role") == "slave"
                and int(seen.get("master_port", 0)) == self.port
                and seen.get("master_link_status") == "up"
                and int(seen.get("slave_repl_offset", -1)) >= target
            )

        _wait_until(f"{replica} to be in sync with {self}", synced, timeout, replica._describe)

    def log_tail(self, lines: int = 15) -> str:
        chunks: list[str] = []
        for name in ("stdout.log", "redis.log"):
            path = self.workdir / name
            with contextlib.suppress(OSError):
                chunks += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(chunks)

    def _describe(self) -> str:
        return f"last log lines of {self}:\n{self.log_tail()}"


class DockerRedisProc(RedisProc):
    """The same contract as RedisProc, run in the pinned ``redis`` image via testcontainers.

    The container shares the host network (so addresses, replication and failover work exactly
    as with the binary) and runs as the calling user with the work dir mounted at the same
    path. kill() is ``docker kill``; stop()/cont() are ``docker pause``/``unpause`` (the cgroup
    freezer, the container equivalent of SIGSTOP); restart() starts the same container again.
    Linux only (host networking).
    """

    kind = "docker"

    def __init__(self, *, image: str = REDIS_IMAGE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image = image
        self._container: Any = None
        self._container_port = 0
        self._containers: list[Any] = []
        weakref.finalize(self, _remove_containers, self._containers)

    @property
    def pid(self) -> int | None:
        return None

    def _spawn(self) -> None:
        if self._container is not None and self._container_port == self.port:
            self._container.get_wrapped_container().start()
            return
        container_class = _redis_container_class()
        container = container_class(image=self.image)
        container.with_command(["redis-server", *self.server_args()])
        container.with_volume_mapping(str(self.workdir), str(self.workdir), "rw")
        container.with_kwargs(network_mode="host", user=f"{os.getuid()}:{os.getgid()}")
        container.waiting_for(_no_wait_strategy())
        self._containers.append(container)
        container.start()
        self._container = container
        self._container_port = self.port

    def _exited(self) -> bool:
        if self._container is None:
            return True
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        return str(wrapped.status) not in ("running", "paused")

    def kill(self) -> None:
        if self.stopped:
            self.cont()
        self._container.get_wrapped_container().kill(signal="SIGKILL")
        _wait_until(f"{self} to exit", self._exited, WAIT_TIMEOUT, self._describe)

    def stop(self) -> None:
        self._container.get_wrapped_container().pause()
        self.stopped = True

    def cont(self) -> None:
        self._container.get_wrapped_container().unpause()
        self.stopped = False

    def terminate(self, timeout: float = WAIT_TIMEOUT) -> None:
        if self._container is None or self._exited():
            return
        if self.stopped:
            self.cont()
        self._container.get_wrapped_container().stop(timeout=int(timeout))

    def close(self) -> None:
        super().close()
        _remove_containers(self._containers)
        self._container = None


def _redis_container_class() -> Any:
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:  # testcontainers < 4.15
        from testcontainers.redis import RedisContainer
    return RedisContainer


def _remove_containers(containers: list[Any]) -> None:
    for container in containers:
        with contextlib.suppress(Exception):
            container.stop()
    containers.clear()


def _no_wait_strategy() -> Any:
    from testcontainers.core.waiting_utils import WaitStrategy

    class NoWait(WaitStrategy):
        """RedisProc waits for PING itself (the image's own check needs a mapped port)."""

        def wait_until_ready(self, container: Any) -> None:
            return None

    return NoWait()


class RedisCluster:
    """One primary and ``replicas`` replicas, started together; ready when every link is up.

    ``priorities``: replica-priority per replica (default: Redis's 100). Other keyword
    arguments (``requirepass``, ``acl``, ``auth``, ``extra_args``) go to every server.
    """

    def __init__(
        self,
        replicas: int = 2,
        *,
        backend: RedisBackend | None = None,
        priorities: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        self.backend = backend if backend is not None else RedisBackend("binary")
        if priorities is not None and len(priorities) != replicas:
            raise ValueError(f"expected {replicas} priorities, got {len(priorities)}")
        self._kwargs = kwargs
        self._priorities = list(priorities) if priorities is not None else [None] * replicas
        self.primary: RedisProc = self.backend.proc(**kwargs)
        self.replicas: list[RedisProc] = []

    @property
    def all(self) -> list[RedisProc]:
        return [self.primary, *self.replicas]

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        try:
            self.primary.start(timeout=timeout)
            for priority in self._priorities:
                replica = self.backend.proc(
                    replicaof=self.primary.address, replica_priority=priority, **self._kwargs
                )
                self.replicas.append(replica)
                replica.start(wait=False)
            for replica in self.replicas:
                replica.finish_start(timeout)
            self.wait_synced(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def wait_synced(self, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until every replica's link to the primary is up and caught up."""
        for replica in self.replicas:
            self.primary.wait_synced(replica, timeout)

    def close(self) -> None:
        for proc in reversed(self.all):
            with contextlib.suppress(Exception):
                proc.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class RedisBackend:
    """Creates RedisProc objects for one backend: ``binary`` (redis-server) or ``docker``."""

    def __init__(
        self, kind: Literal["binary", "docker"], *, binary: str = "redis-server", image: str = REDIS_IMAGE
    ) -> None:
        self.kind = kind
        self.binary = binary
        self.image = image

    def __repr__(self) -> str:
        return f"RedisBackend({self.kind!r})"

    def proc(self, **kwargs: Any) -> RedisProc:
        """A RedisProc, not started yet (call start() or use it as a context manager)."""
        if self.kind == "docker":
            return DockerRedisProc(image=self.image, **kwargs)
        return RedisProc(binary=self.binary, **kwargs)

    def start(self, **kwargs: Any) -> RedisProc:
        return self.proc(**kwargs).start()

    def cluster(self, replicas: int = 2, **kwargs: Any) -> RedisCluster:
        """A RedisCluster, not started yet (call start() or use it as a context manager)."""
        return RedisCluster(replicas, backend=self, **kwargs)


def docker_engine_answers(timeout: float = 3.0) -> str | None:
    """None if a Docker engine answers a ping, else the reason it does not."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return "no Docker engine (DOCKER_HOST is unset and /var/run/docker.sock does not exist)"
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as exc:
        return f"the docker Python package is missing ({exc})"
    # docker-py leaks its socket when the engine does not answer; collect it here, silently,
    # rather than let a ResourceWarning surface in whichever test runs next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=int(max(1.0, timeout)))
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return f"the Docker engine does not answer ({exc})"
        finally:
            gc.collect()
    return None


def choose_backend(choice: str | None = None) -> RedisBackend:
    """Pick a backend from ``choice`` (default: ``$HAREDIS_TEST_BACKEND``, else ``auto``).

    ``auto``: the redis-server binary when it is on PATH, else Docker when an engine answers.
    ``binary`` / ``docker``: that one or nothing. Raises BackendUnavailable with the reason
    (ValueError for any other choice).
    """
    choice = (choice or os.environ.get("HAREDIS_TEST_BACKEND") or "auto").strip().lower()
    if choice not in ("auto", "binary", "docker"):
        # A typo must not quietly skip every integration test.
        raise ValueError(f"HAREDIS_TEST_BACKEND must be auto, binary or docker, not {choice!r}")
    binary = shutil.which("redis-server")
    if choice in ("auto", "binary") and binary is not None:
        return RedisBackend("binary", binary=binary)
    if choice == "binary":
        raise BackendUnavailable("HAREDIS_TEST_BACKEND=binary but redis-server is not on PATH")
    reason = docker_engine_answers()
    if reason is None:
        return RedisBackend("docker")
    if choice == "docker":
        raise BackendUnavailable(f"HAREDIS_TEST_BACKEND=docker but {reason}")
    raise BackendUnavailable(
        f"no redis-server on PATH (apt-get install redis-server, or `make system-deps`) and {reason}"
    )


@contextlib.contextmanager
def running(backend: RedisBackend, **kwargs: Any) -> Iterator[RedisProc]:
    """``with running(backend, replicaof=…) as proc:`` start a server, close it afterwards."""
    proc = backend.proc(**kwargs)
    try:
        yield proc.start()
    finally:
        proc.close()
