"""Security against real processes: hooks fixed at runtime, secrets kept out of every output,
and a least-privilege Redis ACL user that is enough for a failover and a switchover.

- `SENTINEL SET … notification-script|client-reconfig-script` and `SENTINEL CONFIG SET` of
  script settings are refused with the texts real redis-sentinel sends (compared live when the
  redis-sentinel binary is installed), and the configured hook is the one that runs.
- SIGHUP with a changed [hooks] table applies it: the config file is the trust root (whoever
  can write it can already change `bind`, the secrets and the Redis credentials); a reload with
  an unusable hook path is rejected and the running hooks stay.
- A cluster whose Redis nodes have the default user disabled, haredis connecting as the ACL
  user `haredis` (only the commands it sends) and replication using its own `masteruser`,
  survives a planned switchover (`haredis failover --yes`) and a kill -9 failover, with
  fencing on (which needs CONFIG SET / CONFIG GET / CLIENT PAUSE / CLIENT UNPAUSE).
- In that cluster, with distinctive values for the peer secret, the client password, the Redis
  password and the webhook secret, none of them appears in the logs, `haredis status` (text
  and --json), `haredis history`, /metrics, /topology, HAREDIS.STATUS, SENTINEL replies, INFO,
  the history and state files, or the webhook payloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from haredis.core.model import Address

from .haredis_procs import HaredisCluster, HaredisProc, wait_until
from .redis_procs import LOOPBACK, RedisBackend, RedisCluster, RedisProc, free_port

# ---------------------------------------------------------------------------------------------
# Hooks cannot be changed at runtime

SCRIPTS_DENIED = (
    "Reconfiguration of scripts path is denied for security reasons. Check the "
    "deny-scripts-reconfig configuration directive in your Sentinel configuration"
)


def _error_text(client: redis.Redis, *args: str) -> str:
    with pytest.raises(redis.ResponseError) as info:
        client.execute_command(*args)
    return str(info.value)


@contextlib.contextmanager
def _real_sentinel(primary: Address, workdir: Path) -> Iterator[redis.Redis | None]:
    """A redis-sentinel monitoring `primary`, or None when the binary is not installed."""
    binary = shutil.which("redis-sentinel")
    if binary is None:
        yield None
        return
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind {LOOPBACK}\nsentinel monitor mymaster {primary.host} {primary.port} 1\n"
    )
    with open(workdir / "sentinel.log", "wb") as log:
        proc = subprocess.Popen([binary, str(conf)], stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    client = redis.Redis(LOOPBACK, port, socket_timeout=5, decode_responses=True, protocol=2)
    try:
        wait_until(lambda: client.ping(), 10, "redis-sentinel to answer")
        wait_until(
            lambda: client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"),
            10,
            "its master",
        )
        yield client
    finally:
        client.close()
        proc.kill()
        proc.wait(5)


def _write_script(path: Path, out: Path) -> Path:
    path.write_text(f'#!/bin/sh\necho "$@" >> {out}\n')
    path.chmod(0o755)
    return path


# What a client might send to point a hook at its own program; each must be refused.
SCRIPT_COMMANDS: list[tuple[str, ...]] = [
    ("SENTINEL", "SET", "mymaster", "notification-script", "{evil}"),
    ("SENTINEL", "SET", "mymaster", "client-reconfig-script", "{evil}"),
    ("SENTINEL", "SET", "mymaster", "Notification-Script", "{evil}"),
    ("SENTINEL", "SET", "mymaster", "quorum", "1", "client-reconfig-script", "{evil}"),
    ("SENTINEL", "SET", "nosuch", "notification-script", "{evil}"),
    ("SENTINEL", "SET", "mymaster", "quorum", "1", "notification-script"),
    ("SENTINEL", "SET", "mymaster", "notification-script"),
    ("SENTINEL", "CONFIG", "SET", "notification-script", "{evil}"),
    ("SENTINEL", "CONFIG", "SET", "client-reconfig-script", "{evil}"),
    ("SENTINEL", "CONFIG", "SET", "deny-scripts-reconfig", "no"),
    ("CONFIG", "SET", "notification-script", "{evil}"),
]


def test_hook_scripts_cannot_be_set_at_runtime_and_the_configured_one_runs(
    redis_cluster: Callable[..., RedisCluster], tmp_path: Path
) -> None:
    nodes = redis_cluster(replicas=1)
    calls = tmp_path / "notify.calls"
    configured = _write_script(tmp_path / "notify.sh", calls)
    evil_marker = tmp_path / "evil.ran"
    evil = _write_script(tmp_path / "evil.sh", evil_marker)
    cluster = HaredisCluster(nodes.primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    watcher = cluster.watchers[0]
    watcher.config_path.write_text(
        watcher.config_path.read_text() + f'\n[hooks]\nnotification_script = "{configured}"\n'
    )
    cluster.start()
    try:
        ours = watcher.client()
        commands = [tuple(a.format(evil=evil) for a in command) for command in SCRIPT_COMMANDS]
        errors = {command: _error_text(ours, *command) for command in commands}
        # Every one of them is an error (_error_text raises otherwise); the texts are Sentinel's.
        assert errors[commands[0]] == SCRIPTS_DENIED
        assert errors[commands[1]] == SCRIPTS_DENIED
        assert errors[commands[3]] == SCRIPTS_DENIED
        assert errors[commands[7]] == "Invalid argument 'notification-script' to SENTINEL CONFIG SET"
        with _real_sentinel(nodes.primary.address, tmp_path) as sentinel:
            if sentinel is not None:
                theirs = {command: _error_text(sentinel, *command) for command in commands}
                assert errors == theirs

        # The configured script is still the one that runs: a failover produces events.
        nodes.primary.kill()
        wait_until(lambda: watcher.master_addr() == nodes.replicas[0].address, 20, "the failover")
        wait_until(
            lambda: calls.exists() and "+switch-master" in calls.read_text(), 20, "the configured script"
        )
        assert not evil_marker.exists()
    finally:
        cluster.close()


def test_sighup_applies_changed_hooks_from_the_file_and_refuses_a_bad_one(
    redis_cluster: Callable[..., RedisCluster], tmp_path: Path
) -> None:
    """Decision: a reload may change [hooks]. The file is the trust root: it already holds the
    Redis credentials, the peer secret's path and the bind address; it is root-owned under
    systemd while the daemon runs as an unprivileged DynamicUser, so a process that can change
    it could change anything. What a reload cannot do is take a hook from anywhere else."""
    nodes = redis_cluster(replicas=2)
    first_calls, second_calls = tmp_path / "first.calls", tmp_path / "second.calls"
    first = _write_script(tmp_path / "first.sh", first_calls)
    second = _write_script(tmp_path / "second.sh", second_calls)
    cluster = HaredisCluster(nodes.primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    watcher = cluster.watchers[0]
    plain = watcher.config_path.read_text()
    watcher.config_path.write_text(plain + f'\n[hooks]\nnotification_script = "{first}"\n')
    cluster.start()
    try:
        assert watcher.popen is not None
        wait_until(
            lambda: len(watcher.client().execute_command("SENTINEL", "REPLICAS", "mymaster")) == 2,
            20,
            "replicas",
        )
        # A reload naming a relative hook path (or one with a control character) is refused.
        watcher.config_path.write_text(plain + '\n[hooks]\nnotification_script = "second.sh"\n')
        watcher.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload rejected" in watcher.log_text(), 10, "the bad reload to be rejected")
        assert "hooks.notification_script" in watcher.log_text()
        # A good one switches to the new script.
        watcher.config_path.write_text(plain + f'\n[hooks]\nnotification_script = "{second}"\n')
        watcher.popen.send_signal(signal.SIGHUP)
        wait_until(lambda: watcher.log_text().count("reloaded") >= 1, 10, "the reload")
        nodes.replicas[1].kill()  # +sdown slave: a WARNING event, sent to the notification script
        wait_until(
            lambda: second_calls.exists() and "+sdown" in second_calls.read_text(), 20, "the new script"
        )
        assert not first_calls.exists() or "+sdown" not in first_calls.read_text()
    finally:
        cluster.close()


# ---------------------------------------------------------------------------------------------
# A least-privilege ACL user, and secrets nowhere

PEER_SECRET = "peerSECRET-7f3a9c1e5b2d4f6a8c0e"
CLIENT_PASSWORD = "clientPASSWORD-2b8d4e6f0a1c3e5g"
REDIS_PASSWORD = "redisPASSWORD-9c1a3e5b7d2f4a6c"
WEBHOOK_SECRET = "webhookSECRET-4e6a8c0b2d1f3h5j"
URL_TOKEN = "urlTOKEN-6c8e0a2b4d1f3a5c"  # webhook URLs often carry one in the query
SECRETS = {
    "peer secret": PEER_SECRET,
    "client password": CLIENT_PASSWORD,
    "Redis password": REDIS_PASSWORD,
    "webhook secret": WEBHOOK_SECRET,
    "webhook URL token": URL_TOKEN,
}
ADMIN_PASSWORD = "admin-test-password"
REPLICATION_PASSWORD = "replication-test-password"

# Exactly the commands haredis sends (haredis/redis_link.py): probes (PING, INFO, ROLE, CLIENT
# SETNAME), promotion (MULTI/EXEC around REPLICAOF NO ONE, CLIENT KILL, ROLE), repointing
# (REPLICAOF host port), switchover (FAILOVER TO … / FAILOVER ABORT), fencing (CONFIG SET/GET
# min-replicas-*, CLIENT PAUSE … WRITE, CLIENT UNPAUSE). No keys, no channels.
HAREDIS_ACL = (
    "user haredis on >{password} resetkeys resetchannels -@all "
    "+ping +info +role +client|setname +client|kill +client|pause +client|unpause "
    "+replicaof +failover +config|get +config|set +multi +exec"
)
ACL_LINES = [
    "user default off resetkeys resetchannels -@all",
    f"user admin on >{ADMIN_PASSWORD} ~* &* +@all",
    HAREDIS_ACL.format(password=REDIS_PASSWORD),
    f"user replicator on >{REPLICATION_PASSWORD} resetkeys resetchannels -@all +psync +replconf +ping",
]


class _WebhookReceiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.paths.append(self.path)
                receiver.deliveries.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((LOOPBACK, 0), Handler)


@dataclass
class SecuredCluster:
    nodes: RedisCluster
    haredis: HaredisCluster
    receiver: _WebhookReceiver
    workdir: Path
    switched_to: Address | None = None
    failed_over_to: Address | None = None
    outcome: list[str] = field(default_factory=list)

    def client(self, w: HaredisProc) -> redis.Redis:
        return redis.Redis(
            LOOPBACK, w.port, password=CLIENT_PASSWORD, socket_timeout=5, decode_responses=True, protocol=2
        )

    def master_addr(self, w: HaredisProc) -> Address | None:
        with self.client(w) as c:
            reply = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return Address(reply[0], int(reply[1])) if reply else None

    def wait_agree(self, address: Address, timeout: float = 20.0) -> None:
        running = self.haredis.running()
        wait_until(
            lambda: all(self.master_addr(w) == address for w in running), timeout, f"agreement on {address}"
        )

    def node(self, address: Address) -> RedisProc:
        return next(n for n in self.nodes.all if n.address == address)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        w = self.haredis.watchers[0]
        command = [sys.executable, "-m", "haredis", *args]
        command += ["--watcher", f"{LOOPBACK}:{w.port}", "--password-file", str(self.workdir / "client.pass")]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _start_secured(backend: RedisBackend, workdir: Path) -> SecuredCluster:
    nodes = backend.cluster(
        replicas=2,
        acl=ACL_LINES,
        auth=("admin", ADMIN_PASSWORD),
        extra_args=["--masteruser", "replicator", "--masterauth", REPLICATION_PASSWORD],
    )
    nodes.start()
    receiver = _WebhookReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    for name, value in (
        ("client.pass", CLIENT_PASSWORD),
        ("redis.pass", REDIS_PASSWORD),
        ("hook.key", WEBHOOK_SECRET),
    ):
        (workdir / name).write_text(value + "\n")
    cluster = HaredisCluster(
        nodes.primary.address,
        workdir=str(workdir),
        metrics=True,
        extra_watcher=f'client_password_file = "{workdir / "client.pass"}"',
        extra_primary=f'username = "haredis"\npassword_file = "{workdir / "redis.pass"}"\nfencing = true',
    )
    (workdir / "secret").write_text(PEER_SECRET + "\n")
    port = receiver.server_address[1]
    for w in cluster.watchers:
        w.config_path.write_text(
            w.config_path.read_text()
            + f'\n[[hooks.webhooks]]\nurl = "http://{LOOPBACK}:{port}/haredis?token={URL_TOKEN}"\n'
            + f'secret_file = "{workdir / "hook.key"}"\nevents = ["*"]\n'
        )
    secured = SecuredCluster(nodes, cluster, receiver, workdir)
    for w in cluster.watchers:  # the harness's readiness probe has no password: wait here
        w.start(wait=False)
    secured.wait_agree(nodes.primary.address, timeout=30)
    return secured


@pytest.fixture(scope="module")
def secured(
    redis_backend: RedisBackend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredCluster]:
    """The ACL cluster after a planned switchover and a kill -9 failover (failures recorded in
    `outcome`, asserted by the tests, so the secrets test still greps whatever happened)."""
    workdir = tmp_path_factory.mktemp("secured")
    s = _start_secured(redis_backend, workdir)
    try:
        old = s.nodes.primary
        result = s.cli("failover", "mymaster", "--yes", "--timeout", "20")
        s.outcome.append(f"switchover exit={result.returncode} out={result.stdout!r} err={result.stderr!r}")
        if result.returncode == 0:
            wait_until(lambda: s.master_addr(s.haredis.watchers[0]) != old.address, 20, "the switchover")
            s.switched_to = s.master_addr(s.haredis.watchers[0])
            assert s.switched_to is not None
            s.wait_agree(s.switched_to)
            s.node(s.switched_to).wait_synced(old, timeout=20)  # the old primary follows, as replicator
            s.node(s.switched_to).kill()
            survivors = {n.address for n in s.nodes.all if n.address != s.switched_to}
            wait_until(lambda: s.master_addr(s.haredis.watchers[1]) in survivors, 30, "the kill -9 failover")
            s.failed_over_to = s.master_addr(s.haredis.watchers[1])
            assert s.failed_over_to is not None
            s.wait_agree(s.failed_over_to)
            for n in s.nodes.all:
                if n.address not in (s.switched_to, s.failed_over_to):
                    s.node(s.failed_over_to).wait_synced(n, timeout=20)
            # Let the watchers record the history and the webhooks deliver.
            wait_until(lambda: len(s.receiver.deliveries) >= 2, 20, "webhook deliveries")
    except Exception as exc:
        s.outcome.append(f"error: {exc!r}\n{s.haredis.logs()}")
    yield s
    s.haredis.close()
    s.receiver.shutdown()
    s.receiver.server_close()
    s.nodes.close()


def test_least_privilege_acl_user_is_enough_for_a_switchover_and_a_failover(secured: SecuredCluster) -> None:
    assert secured.switched_to is not None and secured.failed_over_to is not None, "\n".join(secured.outcome)
    assert secured.switched_to != secured.nodes.primary.address
    # The failover promoted one of the two nodes that survived the kill (the old primary, now a
    # replica, is as eligible as the other).
    assert secured.failed_over_to != secured.switched_to
    assert secured.failed_over_to in {n.address for n in secured.nodes.all}
    new = secured.node(secured.failed_over_to)
    # Replication to the new primary authenticates as `replicator`; a write reaches the replica.
    new.client().set("after-failover", "1")
    other = next(
        n for n in secured.nodes.all if n.address not in (secured.switched_to, secured.failed_over_to)
    )
    wait_until(lambda: other.client().get("after-failover") == "1", 10, "the write to replicate")
    # The default user is off, and the haredis user can run nothing beyond its list.
    with (
        redis.Redis(LOOPBACK, new.port, socket_timeout=5) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.ping()
    with redis.Redis(
        LOOPBACK,
        new.port,
        username="haredis",
        password=REDIS_PASSWORD,
        socket_timeout=5,
        decode_responses=True,
    ) as as_haredis:
        assert as_haredis.ping() is True
        for command in (
            ("GET", "after-failover"),
            ("FLUSHALL",),
            ("CONFIG", "REWRITE"),
            ("ACL", "LIST"),
            ("PUBLISH", "c", "m"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                as_haredis.execute_command(*command)
        # Fencing ran through this user: min-replicas-to-write is what haredis set.
        assert new.client().config_get("min-replicas-to-write")["min-replicas-to-write"] == "1"
    # No NOPERM anywhere in the watchers' logs: every command haredis sent was allowed.
    logs = "\n".join(w.log_text() for w in secured.haredis.watchers)
    assert "NOPERM" not in logs


def _http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=10) as response:
        return response.read().decode()


def test_secrets_never_appear_in_any_output(secured: SecuredCluster) -> None:
    assert secured.switched_to is not None, "\n".join(secured.outcome)  # there was a failover to report
    outputs: dict[str, str] = {}
    for w in secured.haredis.watchers:
        outputs[f"{w.name} log"] = w.log_text()
        data_dir = secured.workdir / f"{w.name}-data"
        for path in sorted(data_dir.iterdir()):
            outputs[f"{w.name} {path.name}"] = path.read_text(errors="replace")
    for i, port in enumerate(secured.haredis.metrics_ports):
        if secured.haredis.watchers[i].popen is None or secured.haredis.watchers[i].popen.poll() is not None:
            continue
        outputs[f"w{i + 1} /metrics"] = _http_get(port, "/metrics")
        outputs[f"w{i + 1} /topology"] = _http_get(port, "/topology")
    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json")):
        result = secured.cli(*args)
        assert result.returncode == 0, result.stderr
        outputs[f"haredis {' '.join(args)}"] = result.stdout + result.stderr
    with secured.client(secured.haredis.watchers[0]) as c:
        for args in (
            ("HAREDIS.STATUS",),
            ("HAREDIS.HISTORY",),
            ("SENTINEL", "MASTER", "mymaster"),
            ("SENTINEL", "MASTERS"),
            ("SENTINEL", "REPLICAS", "mymaster"),
            ("SENTINEL", "SENTINELS", "mymaster"),
            ("SENTINEL", "CONFIG", "GET", "*"),
            ("SENTINEL", "INFO-CACHE", "mymaster"),
            ("INFO",),
            ("CLIENT", "INFO"),
        ):
            outputs[" ".join(args)] = json.dumps(c.execute_command(*args), default=str)
    for number, (headers, body) in enumerate(secured.receiver.deliveries):
        outputs[f"webhook delivery {number}"] = json.dumps(headers) + body.decode(errors="replace")
        # The webhook secret is in use (the signature verifies), just never sent.
        digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Haredis-Signature"] == f"sha256={digest}"

    # The token does reach the webhook, in its request line only.
    assert secured.receiver.paths and all(p == f"/haredis?token={URL_TOKEN}" for p in secured.receiver.paths)
    # The grep can fail: these outputs are real and full (a failover, the primary's name…).
    assert "mymaster" in outputs["haredis status"] and "mymaster" in outputs["w1 history.jsonl"]
    assert "+switch-master" in outputs["w1 log"] and len(outputs) > 25
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, secret in SECRETS.items()
        if secret in text or secret[-12:] in text
    ]
    assert leaks == []
