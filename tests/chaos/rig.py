"""A multi-host cluster on one machine: every process in its own network namespace.

Layout of one run (``run`` = ``hrc<pid>``, unique per controller process)::

    namespace <run>sw   bridge <run>br, the outer veth end of every host (<run>r1b, <run>w1b, ...)
    namespace <run>r1   <run>r1 10.213.0.11   redis-server (primary at start)
    namespace <run>r2   <run>r2 10.213.0.12   redis-server (replica)
    namespace <run>r3   <run>r3 10.213.0.13   redis-server (replica)
    namespace <run>w1   <run>w1 10.213.0.21   haredis run (watcher w1), likewise w2, w3
    namespace <run>c1   <run>c1 10.213.0.31   the client writer

Both ends of every veth pair are created directly inside their namespaces (``ip link add …
netns …``), so nothing is ever created, renamed or moved in the host's own network namespace,
and two runs never collide: their links live in different namespaces and their namespace
names carry their pid. The 10.213.0.0/24 range exists only inside these namespaces.

Faults are iptables rules inside the namespaces (a host drops packets from some sources), and
signals to processes. The controller itself stays in the host namespace; when it has to talk
to a process (readiness, probes, final checks) it does so from a thread that entered that
process's namespace with setns(2) (see :func:`in_netns`), over the namespace's own address,
which no partition rule ever drops (rules match other hosts' addresses only).

Teardown (:meth:`Rig.close`) kills every process (SIGCONT first, then SIGKILL, also any pid
still inside a namespace) and deletes every namespace. It runs from ``finally``, from
``atexit`` and from the SIGTERM/SIGINT handlers that :func:`install_signal_handlers` sets.
:func:`remove_leftovers` deletes namespaces of earlier runs whose controller is dead.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PREFIX = "hrc"
SUBNET = "10.213.0"
REDIS_PORT = 6379
WATCHER_PORT = 26379
PRIMARY_NAME = "mymaster"
NETNS_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000

REDIS_HOSTS = ("r1", "r2", "r3")
WATCHER_HOSTS = ("w1", "w2", "w3")
CLIENT_HOST = "c1"
ADDRESSES = {
    "r1": f"{SUBNET}.11",
    "r2": f"{SUBNET}.12",
    "r3": f"{SUBNET}.13",
    "w1": f"{SUBNET}.21",
    "w2": f"{SUBNET}.22",
    "w3": f"{SUBNET}.23",
    "c1": f"{SUBNET}.31",
}

T = TypeVar("T")


class RigError(RuntimeError):
    pass


# ---------------------------------------------------------------------------- namespaces


_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(ns: str) -> None:
    """Move the CALLING THREAD into namespace ``ns`` (setns(2) on /var/run/netns/<ns>).

    Sockets keep the namespace they were created in, so a thread that entered a namespace and
    never leaves it can own connections there, whatever the host's routes are."""
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(ns: str, fn: Callable[[], T], timeout: float = 10.0) -> T:
    """Run ``fn()`` in a fresh thread inside namespace ``ns`` and return its result."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(1)

    def body() -> None:
        try:
            enter_netns(ns)
            box.put((True, fn()))
        except BaseException as exc:
            box.put((False, exc))

    thread = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    thread.start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise RigError(f"no answer from namespace {ns} within {timeout}s") from None
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def sh(*args: str, check: bool = True, stdin: str | None = None, timeout: float = 20.0) -> str:
    done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RigError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pids_in(ns: str) -> None:
    out = sh("ip", "netns", "pids", ns, check=False)
    for word in out.split():
        if word.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(word), signal.SIGCONT)
                os.kill(int(word), signal.SIGKILL)


def _delete_netns(ns: str) -> None:
    _kill_pids_in(ns)
    sh("ip", "netns", "del", ns, check=False)


def our_namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def _owner_pid(ns: str) -> int | None:
    digits = ""
    for ch in ns[len(PREFIX) :]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None


def remove_leftovers() -> list[str]:
    """Delete namespaces of earlier runs (our prefix) whose controller process is gone."""
    removed = []
    for ns in our_namespaces():
        pid = _owner_pid(ns)
        if pid == os.getpid() or (pid is not None and _pid_alive(pid)):
            continue  # ours, or a parallel run that is still alive
        _delete_netns(ns)
        removed.append(ns)
    import shutil

    for workdir in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = _owner_pid(workdir.name)
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(workdir, ignore_errors=True)  # the work dir of a dead run
    return removed


def environment_problem() -> str | None:
    """None when this machine can run the rig, else why not (for a clear skip)."""
    if os.geteuid() != 0:
        return "not root (network namespaces and iptables need root)"
    import shutil

    for tool in ("ip", "iptables", "iptables-restore", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} not found (make chaos-deps / make system-deps install it)"
    probe = f"{PREFIX}{os.getpid()}probe"
    try:
        sh("ip", "netns", "add", probe)
    except (RigError, OSError) as exc:
        return f"no network namespaces: {exc}"
    try:
        sh("ip", "netns", "exec", probe, "iptables", "-w", "-A", "INPUT", "-s", "10.213.0.99", "-j", "DROP")
    except (RigError, OSError) as exc:
        return f"iptables does not work inside a network namespace: {exc}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


# ---------------------------------------------------------------------------- processes


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def log_path(self) -> Path:
        return self.workdir / "out.log"

    @property
    def link(self) -> str:
        """The host's veth end (its namespace name, which is ``hrc<pid><host>``)."""
        return self.ns

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def spawn(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self.stopped = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class RigConfig:
    down_after_ms: int = 1000
    quorum: int = 2
    fencing: bool = False
    fencing_min_replicas: int = 1
    fencing_max_lag_s: int = 2
    min_failover_interval_ms: int = 2000
    failover_timeout_ms: int = 10000


class Rig:
    """One cluster in namespaces. Use as a context manager; close() is idempotent."""

    def __init__(self, config: RigConfig | None = None, *, label: str = "run") -> None:
        self.config = config or RigConfig()
        self.run = f"{PREFIX}{os.getpid()}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.run}-{label}-"))
        self.switch_ns = f"{self.run}sw"
        self.hosts: dict[str, Host] = {}
        for name, ip in ADDRESSES.items():
            hostdir = self.workdir / name
            hostdir.mkdir()
            self.hosts[name] = Host(name, f"{self.run}{name}", ip, hostdir)
        self.blocked: frozenset[tuple[str, str]] = frozenset()  # (receiver, sender) pairs dropped
        # (wall time, blocked pairs) at every change: the checker asks who could talk to whom.
        self.net_timeline: list[tuple[float, frozenset[tuple[str, str]]]] = [(time.time(), frozenset())]
        # (wall time, description) of every fault applied, for reports and the minority check.
        self.events: list[tuple[float, str]] = []
        self._closed = False
        self._created: list[str] = []
        _LIVE_RIGS.add(self)

    # -------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Rig:
        try:
            self.build_network()
            self.start_redis()
            self.start_watchers()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build_network(self) -> None:
        remove_leftovers()
        for ns in [self.switch_ns, *(h.ns for h in self.hosts.values())]:
            if (NETNS_DIR / ns).exists():
                _delete_netns(ns)  # our own pid, a leftover of an earlier rig of this process
            sh("ip", "netns", "add", ns)
            self._created.append(ns)
        sw = self.switch_ns
        bridge = f"{self.run}br"
        sh("ip", "-n", sw, "link", "add", bridge, "type", "bridge")
        sh("ip", "-n", sw, "link", "set", bridge, "up")
        sh("ip", "-n", sw, "link", "set", "lo", "up")
        for host in self.hosts.values():
            # Both ends are created inside their namespaces: the host namespace is never touched.
            # Names carry the run prefix ("hrc" + pid + host + end: at most 13 of 15 characters).
            inner, outer = host.link, f"{host.link}b"
            sh("ip", "link", "add", inner, "netns", host.ns, "type", "veth", "peer", "name", outer,
               "netns", sw)  # fmt: skip
            sh("ip", "-n", sw, "link", "set", outer, "master", bridge, "up")
            sh("ip", "-n", host.ns, "addr", "add", f"{host.ip}/24", "dev", inner)
            sh("ip", "-n", host.ns, "link", "set", inner, "up")
            sh("ip", "-n", host.ns, "link", "set", "lo", "up")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.kill()
        for ns in reversed(self._created):
            with contextlib.suppress(Exception):
                _delete_netns(ns)
        _LIVE_RIGS.discard(self)

    # -------------------------------------------------------------------- redis

    def redis_argv(self, host: Host, replicaof: str | None) -> list[str]:
        argv = [
            "redis-server",
            "--bind", host.ip,
            "--port", str(REDIS_PORT),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--dir", str(host.workdir),
            "--logfile", str(host.workdir / "redis.log"),
        ]  # fmt: skip
        # Replication settings stay Redis's defaults on purpose: a full sync waits
        # repl-diskless-sync-delay (5 s), the window that lets haredis save the replicas from
        # a primary that restarted empty. Lowering it would test a weaker deployment.
        if replicaof is not None:
            argv += ["--replicaof", replicaof, str(REDIS_PORT)]
        return argv

    def start_redis_node(self, name: str, replicaof: str | None) -> None:
        host = self.hosts[name]
        host.spawn(self.redis_argv(host, replicaof))
        self.wait_redis_ready(name)

    def start_redis(self) -> None:
        primary = self.hosts["r1"]
        self.start_redis_node("r1", None)
        for name in REDIS_HOSTS[1:]:
            self.hosts[name].spawn(self.redis_argv(self.hosts[name], primary.ip))
        for name in REDIS_HOSTS[1:]:
            self.wait_redis_ready(name)
        wait_for(lambda: self.replicas_online("r1") == len(REDIS_HOSTS) - 1, 15.0, "replicas to sync")

    def redis_client(self, name: str, timeout: float = 0.5) -> redis.Redis:
        """A client for node ``name``; create (and use) it inside that node's namespace."""
        return redis.Redis(
            self.hosts[name].ip,
            REDIS_PORT,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            protocol=2,
            retry=Retry(NoBackoff(), 0),
        )

    def on_redis(self, name: str, fn: Callable[[redis.Redis], T], timeout: float = 1.0) -> T:
        """Run ``fn(client)`` against node ``name`` from inside its namespace (never partitioned)."""

        def call() -> T:
            with self.redis_client(name, timeout) as client:
                return fn(client)

        return in_netns(self.hosts[name].ns, call, timeout=timeout * 4 + 2)

    def wait_redis_ready(self, name: str, timeout: float = 10.0) -> None:
        host = self.hosts[name]

        def ready() -> bool:
            if not host.running():
                raise RigError(f"redis {name} exited:\n{host.log_text()[-2000:]}")
            return bool(self.on_redis(name, lambda c: c.ping()))

        wait_for(ready, timeout, f"redis {name} to answer PING")

    def replicas_online(self, name: str) -> int:
        info = self.on_redis(name, lambda c: c.info("replication"))
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")  # fmt: skip

    def role(self, name: str) -> tuple[str, str | None]:
        """("master", None) or ("slave", "<ip>") with the link state folded in: "slave-down"."""
        reply = self.on_redis(name, lambda c: c.execute_command("ROLE"))
        if reply[0] == "master":
            return "master", None
        if reply[0] == "slave":
            state = "slave" if reply[3] == "connected" else "slave-down"
            return state, str(reply[1])
        return str(reply[0]), None

    def restart_redis(self, name: str, *, follow: str | None) -> None:
        """kill -9 (if running) and start again, empty (no persistence), as a replica of the node
        at ip ``follow`` or, with ``follow`` None, as a primary."""
        host = self.hosts[name]
        host.kill()
        self.event(f"start redis {name} empty " + (f"replicaof {follow}" if follow else "as primary"))
        self.start_redis_node(name, follow)

    # -------------------------------------------------------------------- watchers

    def watcher_config(self, name: str) -> str:
        host = self.hosts[name]
        cfg = self.config
        peers = ", ".join(_toml_str(f"{self.hosts[w].ip}:{WATCHER_PORT}") for w in WATCHER_HOSTS if w != name)
        fencing = ""
        if cfg.fencing:
            fencing = (
                f"fencing = true\nfencing_min_replicas = {cfg.fencing_min_replicas}\n"
                f"fencing_max_lag_s = {cfg.fencing_max_lag_s}\n"
            )
        return f"""
[watcher]
name = {_toml_str(name)}
bind = "{host.ip}"
port = {WATCHER_PORT}
metrics_port = 0
peers = [{peers}]
data_dir = {_toml_str(str(host.workdir / "data"))}
secret_file = {_toml_str(str(self.workdir / "secret"))}
log_level = "debug"

[[primaries]]
name = "{PRIMARY_NAME}"
address = "{self.hosts["r1"].ip}:{REDIS_PORT}"
quorum = {cfg.quorum}
down_after_ms = {cfg.down_after_ms}
failover_timeout_ms = {cfg.failover_timeout_ms}
min_failover_interval_ms = {cfg.min_failover_interval_ms}
{fencing}"""

    def watcher_config_path(self, name: str) -> Path:
        return self.hosts[name].workdir / "haredis.toml"

    def start_watchers(self) -> None:
        (self.workdir / "secret").write_text("chaos-rig-secret-of-enough-length\n")
        for name in WATCHER_HOSTS:
            self.watcher_config_path(name).write_text(self.watcher_config(name))
        for name in WATCHER_HOSTS:
            self.spawn_watcher(name)
        for name in WATCHER_HOSTS:
            self.wait_watcher_ready(name)
        self.wait_agreement(timeout=20.0)

    def spawn_watcher(self, name: str) -> None:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        self.hosts[name].spawn(
            [sys.executable, "-m", "haredis", "run", "-c", str(self.watcher_config_path(name))], env=env
        )

    def watcher_client(self, name: str, timeout: float = 0.5) -> redis.Redis:
        return redis.Redis(self.hosts[name].ip, WATCHER_PORT, socket_timeout=timeout,
                           socket_connect_timeout=timeout, decode_responses=True, protocol=2,
                           retry=Retry(NoBackoff(), 0))  # fmt: skip

    def on_watcher(self, name: str, fn: Callable[[redis.Redis], T], timeout: float = 1.0) -> T:
        def call() -> T:
            with self.watcher_client(name, timeout) as client:
                return fn(client)

        return in_netns(self.hosts[name].ns, call, timeout=timeout * 4 + 2)

    def wait_watcher_ready(self, name: str, timeout: float = 20.0) -> None:
        host = self.hosts[name]

        def ready() -> bool:
            if not host.running():
                raise RigError(f"watcher {name} exited:\n{host.log_text()[-2000:]}")
            return bool(self.on_watcher(name, lambda c: c.ping()))

        wait_for(ready, timeout, f"watcher {name} to answer PING")

    def watcher_primary(self, name: str) -> str | None:
        reply = self.on_watcher(
            name, lambda c: c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY_NAME)
        )
        return str(reply[0]) if reply else None

    def failover_outlook(self, name: str) -> str:
        """Why this watcher would or would not fail over now: its refusal and each
        candidate's verdict (HAREDIS.FAILOVER … DRYRUN), on one line, for a failed run."""
        import json

        try:
            reply = self.on_watcher(
                name, lambda c: c.execute_command("HAREDIS.FAILOVER", PRIMARY_NAME, "DRYRUN")
            )
            doc = json.loads(reply)
        except Exception as exc:
            return f"{name}: no answer ({type(exc).__name__})"
        verdicts = ", ".join(
            f"{self.name_of(c['address'].rsplit(':', 1)[0]) or c['address']}: {c['reason']}"
            for c in doc.get("candidates", [])
        )
        return f"{name}: refusal={doc.get('refusal')!r} candidates=[{verdicts}]"

    def restart_watcher(self, name: str) -> None:
        self.event(f"restart watcher {name}")
        self.hosts[name].kill()
        self.spawn_watcher(name)

    def history(self, name: str) -> list[dict[str, Any]]:
        import json

        path = self.hosts[name].workdir / "data" / "history.jsonl"
        entries = []
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        return entries

    # -------------------------------------------------------------------- topology queries

    def name_of(self, ip: str | None) -> str | None:
        for host in self.hosts.values():
            if host.ip == ip:
                return host.name
        return None

    def topology(self) -> dict[str, Any]:
        """What every node and watcher says right now (None where it does not answer)."""
        roles: dict[str, Any] = {}
        for name in REDIS_HOSTS:
            try:
                roles[name] = self.role(name)
            except Exception:
                roles[name] = None
        named: dict[str, Any] = {}
        for name in WATCHER_HOSTS:
            try:
                named[name] = self.name_of(self.watcher_primary(name))
            except Exception:
                named[name] = None
        return {"roles": roles, "watchers": named}

    def single_primary(self) -> str | None:
        """The one primary every node and every watcher agrees on, or None."""
        topo = self.topology()
        masters = [n for n, r in topo["roles"].items() if r is not None and r[0] == "master"]
        if len(masters) != 1:
            return None
        primary: str = masters[0]
        ip = self.hosts[primary].ip
        for name, role in topo["roles"].items():
            if name != primary and (role is None or role != ("slave", ip)):
                return None
        if any(w != primary for w in topo["watchers"].values()):
            return None
        return primary

    def wait_agreement(self, timeout: float) -> str | None:
        """Wait (bounded) for a single agreed primary; return it, or None at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            primary = self.single_primary()
            if primary is not None:
                return primary
            time.sleep(0.25)
        return None

    def current_primary_guess(self) -> str | None:
        """The primary most watchers name now (None when none answers)."""
        votes: dict[str, int] = {}
        for name in WATCHER_HOSTS:
            with contextlib.suppress(Exception):
                if self.hosts[name].running() and not self.hosts[name].stopped:
                    got = self.name_of(self.watcher_primary(name))
                    if got:
                        votes[got] = votes.get(got, 0) + 1
        return max(votes, key=votes.__getitem__) if votes else None

    # -------------------------------------------------------------------- faults

    def event(self, text: str) -> None:
        self.events.append((time.time(), text))

    def set_blocked(self, pairs: Iterable[tuple[str, str]], label: str) -> None:
        """Make exactly ``pairs`` (receiver, sender) dropped: INPUT rules in each receiver's
        namespace, applied to all namespaces at once with iptables-restore (flush + rules)."""
        wanted = frozenset((r, s) for r, s in pairs if r != s)
        by_receiver: dict[str, list[str]] = {name: [] for name in self.hosts}
        for receiver, sender in sorted(wanted):
            by_receiver[receiver].append(f"-A INPUT -s {self.hosts[sender].ip}/32 -j DROP")
        procs = []
        for receiver, rules in by_receiver.items():
            if not rules and not any(r == receiver for r, _ in self.blocked):
                continue
            text = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" + "".join(f"{r}\n" for r in rules)
            text += "COMMIT\n"
            procs.append(
                (
                    receiver,
                    subprocess.Popen(
                        ["ip", "netns", "exec", self.hosts[receiver].ns, "iptables-restore", "-w"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    ),
                    text,
                )
            )
        for receiver, proc, text in procs:
            _, err = proc.communicate(text, timeout=20)
            if proc.returncode != 0:
                raise RigError(f"iptables-restore in {receiver} failed: {err.strip()}")
        self.blocked = wanted
        self.net_timeline.append((time.time(), wanted))
        self.event(label)

    def partition(self, *sides: Iterable[str], label: str = "") -> None:
        """Symmetric partition: hosts in different sides cannot talk (hosts not named in any side
        see everyone: that is how a bridge is built)."""
        groups = [set(s) for s in sides]
        pairs = set()
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                for x in a:
                    for y in b:
                        pairs.add((x, y))
                        pairs.add((y, x))
        self.set_blocked(pairs, label or "partition " + " | ".join(",".join(sorted(g)) for g in groups))

    def one_way(self, receivers: Iterable[str], senders: Iterable[str], label: str = "") -> None:
        """``receivers`` stop hearing ``senders`` (the senders still receive from them)."""
        rs, ss = sorted(set(receivers)), sorted(set(senders))
        pairs = {(r, s) for r in rs for s in ss}
        self.set_blocked(pairs, label or f"one-way: {','.join(rs)} cannot hear {','.join(ss)}")

    def heal(self) -> None:
        self.set_blocked((), "heal")

    def can_talk(self, a: str, b: str, at: float) -> bool:
        blocked = self.blocked_at(at)
        return (a, b) not in blocked and (b, a) not in blocked

    def blocked_at(self, at: float) -> frozenset[tuple[str, str]]:
        current: frozenset[tuple[str, str]] = frozenset()
        for t, pairs in self.net_timeline:
            if t > at:
                break
            current = pairs
        return current

    def kill(self, name: str) -> None:
        self.event(f"kill -9 {name}")
        self.hosts[name].kill()

    def pause(self, name: str) -> None:
        self.event(f"SIGSTOP {name}")
        self.hosts[name].pause()

    def resume(self, name: str) -> None:
        self.event(f"SIGCONT {name}")
        self.hosts[name].resume()

    def resume_all(self) -> None:
        for host in self.hosts.values():
            if host.stopped:
                self.resume(host.name)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except RigError:
            raise
        except Exception as exc:  # not answering yet
            last = exc
        if time.monotonic() >= deadline:
            raise RigError(f"timed out after {timeout}s waiting for {what} (last error: {last})")
        time.sleep(interval)


# ---------------------------------------------------------------------------- emergency teardown

_LIVE_RIGS: weakref.WeakSet[Rig] = weakref.WeakSet()


def close_all() -> None:
    for rig in list(_LIVE_RIGS):
        with contextlib.suppress(Exception):
            rig.close()


atexit.register(close_all)


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT unwind the stack (so every ``finally`` and ``with`` runs), and the
    atexit hook closes any rig left. Only from the main thread (pytest's or ours)."""

    def handler(signum: int, frame: object) -> None:
        close_all()
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def teardown_on_signals() -> Iterator[None]:
    """:func:`install_signal_handlers` for the duration of a block, then the previous handlers
    again (for a test inside pytest's process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
