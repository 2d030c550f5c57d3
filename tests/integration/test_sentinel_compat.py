"""Drop-in Sentinel compatibility, proven against real clients and real Sentinel as an oracle.

The oracle: three real ``redis-sentinel`` processes watch the SAME redis-server primary and
replica as three haredis watchers, and every client-facing reply is compared field by field:
key order, value types (checked on the wire with a raw RESP parser, RESP2 and RESP3), the
flags vocabulary and error texts. Values that naturally differ (run ids, times, ports of the
Sentinels themselves) are compared by shape only. Then real clients: redis-cli, redis-py's
asyncio Sentinel across a ``kill -9`` failover, and pub/sub events.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.sentinel import Sentinel

from haredis.core.model import Address
from haredis.resp import (
    Array,
    Bulk,
    Error,
    Map,
    Null,
    Reply,
    ReplyParser,
    SimpleString,
    Verbatim,
    encode_command,
)

from .haredis_procs import HaredisCluster, HaredisProc, wait_until
from .redis_procs import LOOPBACK, RedisBackend, RedisCluster, free_port

pytestmark = pytest.mark.slow

SENTINEL_BIN = shutil.which("redis-sentinel")
REDIS_CLI = shutil.which("redis-cli")
FAILOVER_DEADLINE = 15.0
# Sentinel's flags vocabulary, in its fixed order (sentinel.c).
FLAG_ORDER = [
    "s_down",
    "o_down",
    "master",
    "slave",
    "sentinel",
    "disconnected",
    "master_down",
    "failover_in_progress",
    "promoted",
    "reconf_sent",
    "reconf_inprog",
    "reconf_done",
    "force_failover",
    "script_kill_sent",
    "master_reboot",
]
# Values that must be equal between haredis and Sentinel watching the same nodes.
EQUAL_MASTER = ("name", "ip", "port", "runid", "flags", "link-pending-commands", "link-refcount")
EQUAL_MASTER += ("down-after-milliseconds", "role-reported", "config-epoch", "num-slaves")
EQUAL_MASTER += ("num-other-sentinels", "quorum", "parallel-syncs")
EQUAL_REPLICA = ("name", "ip", "port", "runid", "flags", "role-reported", "master-link-status")
EQUAL_REPLICA += ("master-host", "master-port", "slave-priority", "replica-announced")
EQUAL_SENTINEL = ("ip", "flags", "link-pending-commands", "link-refcount", "down-after-milliseconds")
EQUAL_SENTINEL += ("voted-leader", "voted-leader-epoch")


# ---------------------------------------------------------------------------- real Sentinels


class Sentinels:
    """Real redis-sentinel processes monitoring `primary` as "mymaster" (quorum 2), started
    at once unless `start=False` (then `start_one(i)` starts them one by one)."""

    def __init__(self, primary: Address, workdir: Path, count: int = 3, *, start: bool = True) -> None:
        assert SENTINEL_BIN is not None
        self.ports = [free_port() for _ in range(count)]
        self.popens: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []
        for port in self.ports:
            d = workdir / f"sentinel-{port}"
            d.mkdir()
            (d / "sentinel.conf").write_text(
                f"port {port}\nbind {LOOPBACK}\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor mymaster {primary.host} {primary.port} 2\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
            )
            self.dirs.append(d)
        if start:
            for index in range(count):
                self.start_one(index)

    def start_one(self, index: int) -> None:
        assert SENTINEL_BIN is not None
        self.popens.append(
            subprocess.Popen(
                [SENTINEL_BIN, str(self.dirs[index] / "sentinel.conf")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        wait_until(
            lambda: raw_call(self.ports[index], "PING") == SimpleString("PONG"), 10, "sentinel to start"
        )

    def wait_ready(self, replicas: int, timeout: float = 20.0) -> None:
        for port in self.ports:
            wait_until(
                lambda port=port: knows(port, replicas, 2), timeout, f"sentinel :{port} to see its peers"
            )

    def close(self) -> None:
        for popen in self.popens:
            if popen.poll() is None:
                popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(5)


def knows(port: int, replicas: int, others: int) -> bool:
    """The sentinel (or watcher) on `port` sees a healthy master, `replicas` healthy replicas
    and `others` connected Sentinels (a fresh link is briefly flagged "disconnected")."""
    with redis.Redis(LOOPBACK, port, socket_timeout=1.0, decode_responses=True) as client:
        m = pairs(client.execute_command("SENTINEL", "MASTER", "mymaster"))
        slaves = [pairs(r) for r in client.execute_command("SENTINEL", "REPLICAS", "mymaster")]
        peers = [pairs(p) for p in client.execute_command("SENTINEL", "SENTINELS", "mymaster")]
    return (
        m["flags"] == "master"
        and m["num-slaves"] == str(replicas)
        and m["num-other-sentinels"] == str(others)
        and len(slaves) == replicas
        and all(r["flags"] == "slave" and r["master-link-status"] == "ok" for r in slaves)
        and len(peers) == others
        and all(p["flags"] == "sentinel" for p in peers)
    )


# ---------------------------------------------------------------------------- helpers


def pairs(reply: Any) -> dict[str, Any]:
    """An instance map from redis-py: a dict in RESP3, a flat list in RESP2 (order kept)."""
    if isinstance(reply, dict):
        return dict(reply)
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}


def raw_call(port: int, *args: str, protocol: int = 2) -> Reply:
    """One command over a fresh socket, parsed with RESP types kept (bulk vs status, map…)."""
    with socket.create_connection((LOOPBACK, port), timeout=3.0) as sock:
        parser = ReplyParser()

        def call(*words: str) -> Reply:
            sock.sendall(encode_command(*words))
            while (reply := parser.next_reply()) is None:
                data = sock.recv(65536)
                assert data, "connection closed before a reply"
                parser.feed(data)
            return reply

        if protocol == 3:
            assert not isinstance(call("HELLO", "3"), Error)
        return call(*args)


def shape(reply: Reply) -> Any:
    """The wire shape of a reply: types everywhere, keys of maps in order, not the values."""
    if isinstance(reply, Map):
        return ("map", tuple((text(k), shape(v)) for k, v in reply.items))
    if isinstance(reply, Array):
        return ("array", tuple(shape(item) for item in reply.items))
    if isinstance(reply, Null):
        return ("null", reply.kind)
    return type(reply).__name__


def text(reply: Reply) -> str:
    if isinstance(reply, Bulk):
        return reply.as_bytes().decode()
    if isinstance(reply, SimpleString):
        return reply.value
    if isinstance(reply, Error):
        return reply.message
    if isinstance(reply, Verbatim):
        return reply.text.decode() if isinstance(reply.text, bytes) else reply.text
    raise AssertionError(f"not a string reply: {reply!r}")


def flat_pairs(reply: Reply) -> list[tuple[str, str]]:
    """A raw instance map (RESP3 map or RESP2 flat array of bulk strings) as ordered pairs."""
    if isinstance(reply, Map):
        return [(text(k), text(v)) for k, v in reply.items]
    assert isinstance(reply, Array)
    items = [text(i) for i in reply.items]
    return list(zip(items[::2], items[1::2], strict=True))


def check_flags(flags: str) -> None:
    words = flags.split(",")
    assert all(w in FLAG_ORDER for w in words), flags
    assert words == sorted(words, key=FLAG_ORDER.index), f"flags out of Sentinel's order: {flags}"


def response_error(client: redis.Redis, *args: str) -> str:
    with pytest.raises(redis.exceptions.ResponseError) as info:
        client.execute_command(*args)
    return str(info.value)


def compare_instance(ours: dict[str, Any], theirs: dict[str, Any], equal: tuple[str, ...], what: str) -> None:
    assert list(ours) == list(theirs), f"{what}: field order differs"
    assert all(isinstance(v, str) for v in ours.values()), f"{what}: non-string value {ours}"
    assert all(isinstance(v, str) for v in theirs.values()), theirs
    for key in equal:
        assert ours[key] == theirs[key], f"{what}: {key} = {ours[key]!r}, Sentinel says {theirs[key]!r}"
    check_flags(ours["flags"])
    for key, value in ours.items():  # every numeric field of Sentinel is numeric in haredis too
        if re.fullmatch(r"-?\d+", theirs[key]):
            assert re.fullmatch(r"-?\d+", value), f"{what}: {key} = {value!r} is not a number"


# ---------------------------------------------------------------------------- fixtures


class Oracle:
    def __init__(self, redis_cluster: RedisCluster, haredis: HaredisCluster, sentinels: Sentinels) -> None:
        self.redis = redis_cluster
        self.haredis = haredis
        self.sentinels = sentinels

    @property
    def watcher_port(self) -> int:
        return self.haredis.watchers[0].port

    @property
    def sentinel_port(self) -> int:
        return self.sentinels.ports[0]


@pytest.fixture(scope="module")
def oracle(redis_backend: RedisBackend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    if SENTINEL_BIN is None:
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel)")
    if redis_backend.kind != "binary":
        pytest.skip("the Sentinel oracle needs the redis-server binary backend")
    rc = redis_backend.cluster(replicas=1).start()
    hc: HaredisCluster | None = None
    sentinels: Sentinels | None = None
    try:
        sentinels = Sentinels(rc.primary.address, tmp_path_factory.mktemp("sentinels"))
        hc = HaredisCluster(rc.primary.address).start()
        sentinels.wait_ready(replicas=1)
        for w in hc.watchers:
            wait_until(lambda w=w: knows(w.port, 1, 2), 15, f"watcher {w.name} to see its peers")
        yield Oracle(rc, hc, sentinels)
    finally:
        if hc is not None:
            hc.close()
        if sentinels is not None:
            sentinels.close()
        rc.close()


@pytest.fixture
def watchers() -> Iterator[Callable[..., HaredisCluster]]:
    started: list[HaredisCluster] = []

    def start(primary: Address, **kwargs: Any) -> HaredisCluster:
        cluster = HaredisCluster(primary, **kwargs)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.close()


# ---------------------------------------------------------------------------- 1. the oracle


@pytest.mark.parametrize("protocol", [2, 3])
def test_instance_maps_match_real_sentinel(oracle: Oracle, protocol: int) -> None:
    with (
        redis.Redis(LOOPBACK, oracle.watcher_port, protocol=protocol, decode_responses=True) as ours,
        redis.Redis(LOOPBACK, oracle.sentinel_port, protocol=protocol, decode_responses=True) as theirs,
    ):
        # MASTERS and MASTER: the same fields in the same order, equal where equal is expected.
        # failover-timeout is a config value (haredis' test config says 10 s, Sentinel's default
        # is 180 s), the ping/refresh ages are times: shapes only.
        for args in (("MASTERS",), ("MASTER", "mymaster")):
            mine, real = ours.execute_command("SENTINEL", *args), theirs.execute_command("SENTINEL", *args)
            if args == ("MASTERS",):
                assert isinstance(mine, list) and len(mine) == len(real) == 1
                mine, real = mine[0], real[0]
            assert type(mine) is type(real) is (dict if protocol == 3 else list)
            m, r = pairs(mine), pairs(real)
            compare_instance(m, r, EQUAL_MASTER, f"SENTINEL {' '.join(args)}")
            assert m["flags"] == "master" and m["config-epoch"] == "0" and m["num-slaves"] == "1"

        # REPLICAS and its alias SLAVES.
        for sub in ("REPLICAS", "SLAVES"):
            mine, real = (
                ours.execute_command("SENTINEL", sub, "mymaster"),
                theirs.execute_command("SENTINEL", sub, "mymaster"),
            )
            assert len(mine) == len(real) == 1
            compare_instance(pairs(mine[0]), pairs(real[0]), EQUAL_REPLICA, f"SENTINEL {sub}")
            assert pairs(mine[0])["name"] == f"{LOOPBACK}:{oracle.redis.replicas[0].port}"

        # SENTINELS: the other two, each named by its 40-hex run id.
        mine, real = (
            ours.execute_command("SENTINEL", "SENTINELS", "mymaster"),
            theirs.execute_command("SENTINEL", "SENTINELS", "mymaster"),
        )
        assert len(mine) == len(real) == 2
        for m_item, r_item in zip(mine, real, strict=True):
            m, r = pairs(m_item), pairs(r_item)
            compare_instance(m, r, EQUAL_SENTINEL, "SENTINEL SENTINELS")
            assert re.fullmatch(r"[0-9a-f]{40}", m["name"]) and m["runid"] == m["name"]
            assert m["flags"] == r["flags"] == "sentinel"
        assert {int(pairs(i)["port"]) for i in mine} == {w.port for w in oracle.haredis.watchers[1:]}

        # GET-MASTER-ADDR-BY-NAME: [ip, port] as strings; an unknown name is a null.
        addr = [LOOPBACK, str(oracle.redis.primary.port)]
        assert ours.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == addr
        assert theirs.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == addr
        for client in (ours, theirs):
            assert client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nosuch") is None

        # CKQUORUM, MYID, ROLE, PING.
        for client in (ours, theirs):
            ok = client.execute_command("SENTINEL", "CKQUORUM", "mymaster")
            assert ok == "OK 3 usable Sentinels. Quorum and failover authorization can be reached"
            assert re.fullmatch(r"[0-9a-f]{40}", client.execute_command("SENTINEL", "MYID"))
            assert client.execute_command("ROLE") == ["sentinel", ["mymaster"]]
            assert client.ping() is True

        # Error texts, word for word.
        for args in (
            ("SENTINEL", "MASTER", "nosuch"),
            ("SENTINEL", "REPLICAS", "nosuch"),
            ("SENTINEL", "SENTINELS", "nosuch"),
            ("SENTINEL", "CKQUORUM", "nosuch"),
            ("SENTINEL", "NOSUCHSUB"),
            ("SENTINEL",),
            ("SENTINEL", "MASTER"),
            ("NOSUCHCOMMAND", "arg"),
        ):
            assert response_error(ours, *args) == response_error(theirs, *args), args
        assert response_error(ours, "SENTINEL", "MASTER", "nosuch") == "No such master with that name"
        assert response_error(ours, "SENTINEL", "NOSUCHSUB") == (
            "unknown subcommand 'NOSUCHSUB'. Try SENTINEL HELP."
        )

        # Deliberate difference: haredis takes its settings from its config file only.
        assert "SENTINEL SET is refused" in response_error(ours, "SENTINEL", "SET", "mymaster", "quorum", "2")


@pytest.mark.parametrize("protocol", [2, 3])
def test_wire_types_match_real_sentinel(oracle: Oracle, protocol: int) -> None:
    """Bulk vs status vs null array vs map, as sent on the wire (redis-py hides some of it)."""
    for args in (
        ("SENTINEL", "MASTERS"),
        ("SENTINEL", "MASTER", "mymaster"),
        ("SENTINEL", "REPLICAS", "mymaster"),
        ("SENTINEL", "SLAVES", "mymaster"),
        ("SENTINEL", "SENTINELS", "mymaster"),
        ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"),
        ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nosuch"),
        ("SENTINEL", "MASTER", "nosuch"),
        ("SENTINEL", "CKQUORUM", "mymaster"),
        ("SENTINEL", "MYID"),
        ("ROLE",),
        ("PING",),
        ("INFO", "sentinel"),
        ("NOSUCHCOMMAND",),
        ("SENTINEL", "NOSUCHSUB"),
    ):
        mine = raw_call(oracle.watcher_port, *args, protocol=protocol)
        real = raw_call(oracle.sentinel_port, *args, protocol=protocol)
        assert shape(mine) == shape(real), f"{args} in RESP{protocol}"
        if isinstance(real, (Error, SimpleString)):
            assert text(mine) == text(real), args

    # The instance maps hold bulk strings only (never integers), in both protocols.
    for item in (raw_call(oracle.watcher_port, "SENTINEL", "MASTER", "mymaster", protocol=protocol),):
        assert isinstance(item, Map if protocol == 3 else Array)
        kids = [v for kv in item.items for v in kv] if isinstance(item, Map) else list(item.items)
        assert all(isinstance(v, Bulk) for v in kids)


# Real Sentinel INFO fields haredis leaves out, and the ones it adds (see sentinel_api.py).
INFO_LEFT_OUT = frozenset(
    {
        "redis_git_sha1",
        "redis_git_dirty",
        "redis_build_id",
        "atomicvar_api",
        "gcc_version",
        "lru_clock",
        "reply_buffer_shrinks",
        "reply_buffer_expands",
    }
)
INFO_ADDED = frozenset({"pubsub_clients", "haredis"})
# Equal on both: facts of the machine, and mechanisms neither has (keyspace, replication
# syncs, forks, defragmentation, tracking, I/O threads: 0 on a real Sentinel too).
INFO_EQUAL = frozenset(
    {
        "redis_mode",
        "os",
        "arch_bits",
        "monotonic_clock",
        "multiplexing_api",
        "process_supervised",
        "io_threads_active",
        "cluster_connections",
        "blocked_clients",
        "tracking_clients",
        "clients_in_timeout_table",
        "total_net_repl_input_bytes",
        "total_net_repl_output_bytes",
        "instantaneous_input_repl_kbps",
        "instantaneous_output_repl_kbps",
        "rejected_connections",
        "sync_full",
        "sync_partial_ok",
        "sync_partial_err",
        "expired_keys",
        "expired_stale_perc",
        "expired_time_cap_reached_count",
        "expire_cycle_cpu_milliseconds",
        "evicted_keys",
        "evicted_clients",
        "total_eviction_exceeded_time",
        "current_eviction_exceeded_time",
        "keyspace_hits",
        "keyspace_misses",
        "pubsubshard_channels",
        "latest_fork_usec",
        "total_forks",
        "migrate_cached_sockets",
        "slave_expires_tracked_keys",
        "active_defrag_hits",
        "active_defrag_misses",
        "active_defrag_key_hits",
        "active_defrag_key_misses",
        "total_active_defrag_time",
        "current_active_defrag_time",
        "tracking_total_keys",
        "tracking_total_items",
        "tracking_total_prefixes",
        "unexpected_error_replies",
        "dump_payload_sanitizations",
        "io_threaded_reads_processed",
        "io_threaded_writes_processed",
        "sentinel_masters",
        "sentinel_tilt",
        "sentinel_tilt_since_seconds",
        "sentinel_running_scripts",
        "sentinel_scripts_queue_length",
        "sentinel_simulate_failure_flags",
    }
)


def info_sections(port: int, *args: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """INFO over the wire (a bulk string, checked) as [(header, [(field, value), …]), …]."""
    reply = raw_call(port, "INFO", *args)
    assert isinstance(reply, Bulk), reply
    raw = text(reply)
    assert raw == "" or (raw.endswith("\r\n") and not raw.endswith("\r\n\r\n")), repr(raw[-20:])
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for block in raw.split("\r\n\r\n") if raw else []:
        header, *lines = block.rstrip("\r\n").split("\r\n")
        assert header.startswith("# "), block
        out.append((header, [tuple(line.split(":", 1)) for line in lines]))  # type: ignore[misc]
    return out


def number_kind(value: str) -> str:
    if re.fullmatch(r"-?\d+", value):
        return "int"
    if m := re.fullmatch(r"-?\d+\.(\d+)", value):
        return f"float.{len(m.group(1))}"
    return "text"


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("default",),
        ("all",),
        ("everything",),
        ("server",),
        ("clients",),
        ("stats",),
        ("cpu",),
        ("sentinel",),
        ("SENTINEL", "Cpu"),
        ("cpu", "server", "cpu"),
        ("memory",),
        ("bogus", "clients"),
    ],
)
def test_info_matches_real_sentinel_section_by_section(oracle: Oracle, args: tuple[str, ...]) -> None:
    mine, real = info_sections(oracle.watcher_port, *args), info_sections(oracle.sentinel_port, *args)
    assert [h for h, _ in mine] == [h for h, _ in real], f"INFO {' '.join(args)}: sections differ"
    for (header, ours), (_, theirs) in zip(mine, real, strict=True):
        ours_d, theirs_d = dict(ours), dict(theirs)
        assert [k for k, _ in ours if k not in INFO_ADDED] == [
            k for k, _ in theirs if k not in INFO_LEFT_OUT
        ], f"{header}: fields or their order differ"
        for key, value in ours:
            if key in INFO_ADDED:
                continue
            assert number_kind(value) == number_kind(theirs_d[key]), (header, key, value, theirs_d[key])
            if key in INFO_EQUAL:
                assert value == theirs_d[key], f"{header} {key}: {value!r}, Sentinel says {theirs_d[key]!r}"
        if header == "# Sentinel":  # same nodes watched, no tilt, no scripts: every line equal
            assert ours == theirs
            master = f"name=mymaster,status=ok,address={oracle.redis.primary.address},slaves=1,sentinels=3"
            assert ours_d["master0"] == master


def test_info_values_are_live(oracle: Oracle) -> None:
    """The same traffic moves the same counters by the same amounts on haredis and Sentinel,
    and the server section describes the watcher process itself."""

    def fields(port: int, *args: str) -> dict[str, str]:
        return {k: v for _, pairs in info_sections(port, *args) for k, v in pairs}

    def effect(port: int) -> dict[str, int]:
        keys = ("connected_clients", "pubsub_channels", "pubsub_patterns", "total_connections_received")
        before = fields(port)
        with contextlib.ExitStack() as stack:
            conns = [stack.enter_context(socket.create_connection((LOOPBACK, port), 3.0)) for _ in range(3)]
            conns[0].sendall(encode_command("SUBSCRIBE", "compat-a", "compat-b"))
            conns[1].sendall(encode_command("PSUBSCRIBE", "compat-*"))
            conns[2].sendall(encode_command("NOSUCHCOMMAND"))
            for conn in conns:
                assert conn.recv(4096)  # each command was answered
            during = fields(port)
        delta = {k: int(during[k]) - int(before[k]) for k in keys}
        delta["errors"] = int(during["total_error_replies"]) - int(before["total_error_replies"])
        delta["commands"] = int(during["total_commands_processed"]) - int(before["total_commands_processed"])
        return delta

    mine, real = effect(oracle.watcher_port), effect(oracle.sentinel_port)
    # 3 connections (4 received: each INFO comes on a fresh one), 2 channels, 1 pattern, 1
    # error reply, and at least 3 commands processed: the first INFO, SUBSCRIBE and PSUBSCRIBE
    # (an unknown command is not processed, an INFO counts once done; peer and Sentinel links
    # send theirs meanwhile).
    expected = {"connected_clients": 3, "pubsub_channels": 2, "pubsub_patterns": 1}
    expected |= {"total_connections_received": 4, "errors": 1}
    for delta in (mine, real):
        assert {k: delta[k] for k in expected} == expected, delta
        assert delta["commands"] >= 3

    watcher = oracle.haredis.watchers[0]
    ours = fields(watcher.port)
    assert ours["run_id"] == text(raw_call(watcher.port, "SENTINEL", "MYID"))
    assert ours["process_id"] == str(watcher.popen.pid if watcher.popen else -1)
    assert ours["tcp_port"] == str(watcher.port)
    assert ours["config_file"] == str(watcher.config_path.resolve())
    assert ours["hz"] == ours["configured_hz"] == "10"  # tick_interval_ms = 100
    assert float(ours["used_cpu_user"]) > 0 and int(ours["uptime_in_seconds"]) >= 0
    assert ours["pubsub_clients"] == "0"


# ---------------------------------------------------------------------------- 2. redis-cli


def test_redis_cli_output_has_the_same_shape(oracle: Oracle) -> None:
    if REDIS_CLI is None:
        pytest.skip("redis-cli is not installed")

    def cli(port: int, *args: str) -> list[str]:
        done = subprocess.run(
            [REDIS_CLI, "-h", LOOPBACK, "-p", str(port), *args], capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def mask(lines: list[str]) -> list[str]:
        return [re.sub(r"^\d+$", "<n>", re.sub(r"^[0-9a-f]{40}$", "<id>", line)) for line in lines]

    for port_mine, port_real in ((oracle.watcher_port, oracle.sentinel_port),):
        args = ("SENTINEL", "get-master-addr-by-name", "mymaster")
        assert cli(port_mine, *args) == cli(port_real, *args) == [LOOPBACK, str(oracle.redis.primary.port)]
        args = ("SENTINEL", "master", "mymaster")
        mine, real = cli(port_mine, *args), cli(port_real, *args)
        assert mask(mine) == mask(real)
        assert mine[mine.index("flags") + 1] == "master"
        args = ("SENTINEL", "get-master-addr-by-name", "nosuch")
        assert cli(port_mine, *args) == cli(port_real, *args)


# ---------------------------------------------------------------------------- 3. redis-py asyncio


async def test_redis_py_asyncio_sentinel_survives_a_kill9_failover(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    rc = redis_cluster(replicas=2)
    cluster = watchers(rc.primary.address)
    for w in cluster.watchers:
        wait_until(lambda w=w: knows(w.port, 2, 2), 15, f"watcher {w.name} to see 2 replicas and 2 peers")
    sentinel = Sentinel(
        [(LOOPBACK, w.port) for w in cluster.watchers],
        min_other_sentinels=2,  # proves num-other-sentinels is read and parsed
        socket_timeout=1.0,
        sentinel_kwargs={"socket_timeout": 1.0},
        decode_responses=True,
    )
    master = sentinel.master_for("mymaster", socket_timeout=1.0)
    replica = sentinel.slave_for("mymaster", socket_timeout=1.0)
    try:
        assert await sentinel.discover_master("mymaster") == (LOOPBACK, rc.primary.port)
        slaves = await sentinel.discover_slaves("mymaster")
        assert sorted(slaves) == sorted((LOOPBACK, r.port) for r in rc.replicas)
        assert await master.set("compat", "before")
        await async_wait(lambda: replica.get("compat"), "before", 5, "the write to reach a replica")

        old = rc.primary.address
        rc.primary.kill()
        deadline = time.monotonic() + FAILOVER_DEADLINE
        while True:  # writes through master_for succeed again within a bounded time
            try:
                if await master.set("compat", "after"):
                    break
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.ReadOnlyError,
            ):
                pass
            assert time.monotonic() < deadline, f"no write succeeded after the failover\n{cluster.logs()}"
            await asyncio.sleep(0.1)
        host, port = await sentinel.discover_master("mymaster")
        assert (host, port) != (old.host, old.port)
        promoted = next(r for r in rc.replicas if r.port == port)
        other = next(r for r in rc.replicas if r.port != port)
        wait_until(
            lambda: (
                other.info("replication").get("master_port") == port
                and other.info("replication").get("master_link_status") == "up"
            ),
            FAILOVER_DEADLINE,
            "the other replica to follow the new primary",
        )
        assert promoted.client().get("compat") == "after"
        await async_wait(lambda: replica.get("compat"), "after", 10, "slave_for to read the new value")
        assert (LOOPBACK, other.port) in await sentinel.discover_slaves("mymaster")
    finally:
        await master.aclose()
        await replica.aclose()
        await sentinel.aclose()


async def async_wait(call: Callable[[], Any], want: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    got: Any = None
    while True:
        try:
            got = await call()
            if got == want:
                return
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            got = exc
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {got!r})"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- 4. pub/sub


def test_pubsub_events_after_a_kill9_failover(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    rc = redis_cluster(replicas=2)
    cluster = watchers(rc.primary.address)
    for w in cluster.watchers:
        wait_until(lambda w=w: knows(w.port, 2, 2), 15, f"watcher {w.name} to see its replicas and peers")
    clients = [
        redis.Redis(LOOPBACK, w.port, socket_timeout=2.0, decode_responses=True) for w in cluster.watchers
    ]
    subs = [c.pubsub() for c in clients]
    # PSUBSCRIBE * on every watcher: which one detects the failure first (and so publishes
    # +odown before it leads) is a race; the others may learn the switch from the leader.
    wilds = [c.pubsub() for c in clients]
    try:
        for sub in subs:
            sub.subscribe("+switch-master")
            assert sub.get_message(timeout=2.0)["type"] == "subscribe"  # type: ignore[index]
        for wild in wilds:
            wild.psubscribe("*")
            assert wild.get_message(timeout=2.0)["type"] == "psubscribe"  # type: ignore[index]

        old = rc.primary.address
        rc.primary.kill()
        switches: list[list[dict[str, Any]]] = [[] for _ in subs]
        seen: list[list[dict[str, Any]]] = [[] for _ in wilds]

        def drain() -> None:
            for sub, got in zip((*subs, *wilds), (*switches, *seen), strict=True):
                while (msg := sub.get_message(timeout=0.02)) is not None:
                    got.append(msg)

        deadline = time.monotonic() + FAILOVER_DEADLINE
        while not all(switches) or not all(any(m["channel"] == "+switch-master" for m in g) for g in seen):
            assert time.monotonic() < deadline, f"no +switch-master everywhere: {switches}\n{cluster.logs()}"
            drain()
        time.sleep(0.5)  # a duplicate would have arrived by now
        drain()

        new = cluster.watchers[0].master_addr()
        assert new is not None and new != old
        expected = f"mymaster {old.host} {old.port} {new.host} {new.port}"
        for got in switches:  # every watcher publishes it, leader or not, exactly once
            assert [(m["type"], m["channel"], m["data"]) for m in got] == [
                ("message", "+switch-master", expected)
            ]

        master_ref = f"master mymaster {old.host} {old.port}"
        streams = [[(m["channel"], m["data"]) for m in g if m["type"] == "pmessage"] for g in seen]
        for events in streams:
            assert [d for c, d in events if c == "+switch-master"] == [expected]
            for channel, data in events:  # `%@` form: <type> <name> <ip> <port> [@ <master> …]
                if channel in ("+sdown", "-sdown", "+odown", "-odown"):
                    assert data.split()[0] in ("master", "slave", "sentinel"), (channel, data)
                if channel == "+sdown" and data.startswith("master "):
                    assert data == master_ref
                if channel == "+odown":
                    assert re.fullmatch(re.escape(master_ref) + r" #quorum \d+/2", data), data
        # At least one watcher (the one that led) saw the whole story, in order.
        full = [
            [c for c, _ in events]
            for events in streams
            if (events and ("+sdown", master_ref) in events and any(c == "+odown" for c, _ in events))
        ]
        assert full, f"no watcher published +sdown and +odown for the master: {streams}"
        channels = full[0]
        assert channels.index("+sdown") < channels.index("+odown") < channels.index("+switch-master")
    finally:
        for sub in (*subs, *wilds):
            sub.close()
        for c in clients:
            c.close()


# ---------------------------------------------------------------------------- 5. events naming a watcher


class EventStream:
    """A ``PSUBSCRIBE *`` client on one watcher or Sentinel, collecting (channel, data)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = redis.Redis(LOOPBACK, port, socket_timeout=2.0, decode_responses=True)
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe("*")
        assert self.pubsub.get_message(timeout=2.0)["type"] == "psubscribe"  # type: ignore[index]
        self.events: list[tuple[str, str]] = []

    def drain(self) -> None:
        for _ in range(1000):  # bounded: what has arrived by now
            msg = self.pubsub.get_message(timeout=0.02)
            if msg is None:
                return
            if msg["type"] == "pmessage" and msg["channel"] != "__sentinel__:hello":
                self.events.append((msg["channel"], msg["data"]))

    def of(self, channel: str) -> list[str]:
        return [data for c, data in self.events if c == channel]

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


def collect(streams: list[EventStream], done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {[s.events for s in streams]}"
        for stream in streams:
            stream.drain()


def token_kinds(message: str) -> list[str]:
    """Sentinel's `%@` form for a Sentinel, token by token: literal words, or the kind of value."""
    kinds = []
    for token in message.split(" "):
        if token in ("sentinel", "@", "mymaster"):
            kinds.append(token)
        elif re.fullmatch(r"[0-9a-f]{40}", token):
            kinds.append("runid")
        elif re.fullmatch(r"\d+\.\d+\.\d+\.\d+", token):
            kinds.append("ip")
        elif re.fullmatch(r"\d+", token):
            kinds.append("port")
        else:
            kinds.append(f"?{token}")
    return kinds


SENTINEL_SUBJECT = ["sentinel", "runid", "ip", "port", "@", "mymaster", "ip", "port"]


def myid(port: int) -> str:
    return text(raw_call(port, "SENTINEL", "MYID"))


def check_sentinel_events(stream: EventStream, others: list[int], primary: Address, system: str) -> None:
    """One +sentinel per other instance, naming it by its run id and address, with the master."""
    messages = stream.of("+sentinel")
    assert len(messages) == len(others), f"{system}: {messages}"
    for message in messages:
        assert token_kinds(message) == SENTINEL_SUBJECT, f"{system}: {message!r}"
    expected = {
        f"sentinel {myid(port)} {LOOPBACK} {port} @ mymaster {primary.host} {primary.port}" for port in others
    }
    assert set(messages) == expected, system


def test_sentinel_event_announces_each_peer_like_sentinel(
    redis_cluster: Callable[..., RedisCluster], tmp_path: Path
) -> None:
    """A client subscribed before the others start sees +sentinel once for each of them, in
    Sentinel's exact form, from real Sentinels and from haredis watchers alike."""
    if SENTINEL_BIN is None:
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel)")
    rc = redis_cluster(replicas=1)
    primary = rc.primary.address
    # Their own nodes: Sentinel and haredis watch the same primary (no failover here).
    sentinels = Sentinels(primary, tmp_path, start=False)
    cluster = HaredisCluster(primary)
    streams: list[EventStream] = []
    try:
        sentinels.start_one(0)
        real = EventStream(sentinels.ports[0])
        streams.append(real)
        sentinels.start_one(1)
        sentinels.start_one(2)
        cluster.start(only=[0])
        ours = EventStream(cluster.watchers[0].port)
        streams.append(ours)
        cluster.start(only=[1, 2])
        collect(streams, lambda: all(len(s.of("+sentinel")) >= 2 for s in streams), 30, "+sentinel")
        time.sleep(2.5)  # Sentinel's hello period is 2 s: a duplicate would be here by now
        for stream in streams:
            stream.drain()
        check_sentinel_events(real, sentinels.ports[1:], primary, "redis-sentinel")
        check_sentinel_events(ours, [w.port for w in cluster.watchers[1:]], primary, "haredis")
    finally:
        for stream in streams:
            stream.close()
        cluster.close()
        sentinels.close()


def failover_streams(streams: list[EventStream], kill: Callable[[], None], system: str) -> None:
    kill()
    collect(streams, lambda: all(s.of("+switch-master") for s in streams), 40, f"{system} to fail over")
    time.sleep(0.5)
    for stream in streams:
        stream.drain()


def check_config_update_from(streams: list[EventStream], old: Address, system: str) -> list[str]:
    """Every instance but the leader adopts the new topology from another one (the leader, or
    an instance that already adopted it) and says so, naming that instance and the old
    primary, before its +switch-master. Returns the messages."""
    leaders = [s for s in streams if s.of("+elected-leader")]
    assert len(leaders) == 1, f"{system}: {[s.events for s in streams]}"
    assert leaders[0].of("+config-update-from") == [], system
    messages = []
    for stream in streams:
        if stream is leaders[0]:
            continue
        sources = {
            f"sentinel {myid(other.port)} {LOOPBACK} {other.port} @ mymaster {old.host} {old.port}"
            for other in streams
            if other is not stream
        }
        got = stream.of("+config-update-from")
        assert len(got) == 1 and got[0] in sources, f"{system} :{stream.port}: {stream.events}"
        channels = [c for c, _ in stream.events]
        assert channels.index("+config-update-from") < channels.index("+switch-master"), system
        messages += got
    return messages


def test_config_update_from_matches_sentinel(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster], tmp_path: Path
) -> None:
    """A kill -9 failover under real Sentinels and under haredis watchers (each on its own
    nodes): the observers' +config-update-from has the same tokens, of the same kinds."""
    if SENTINEL_BIN is None:
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel)")
    theirs_rc, ours_rc = redis_cluster(replicas=1), redis_cluster(replicas=1)
    sentinels = Sentinels(theirs_rc.primary.address, tmp_path)
    streams: list[EventStream] = []
    try:
        sentinels.wait_ready(replicas=1)
        cluster = watchers(ours_rc.primary.address)
        for w in cluster.watchers:
            wait_until(lambda w=w: knows(w.port, 1, 2), 15, f"watcher {w.name} to see its peers")

        real = [EventStream(port) for port in sentinels.ports]
        streams += real
        failover_streams(real, theirs_rc.primary.kill, "redis-sentinel")
        real_messages = check_config_update_from(real, theirs_rc.primary.address, "redis-sentinel")

        ours = [EventStream(w.port) for w in cluster.watchers]
        streams += ours
        failover_streams(ours, ours_rc.primary.kill, "haredis")
        our_messages = check_config_update_from(ours, ours_rc.primary.address, "haredis")

        assert len(our_messages) == len(real_messages) == 2
        assert {tuple(token_kinds(m)) for m in our_messages + real_messages} == {tuple(SENTINEL_SUBJECT)}
    finally:
        for stream in streams:
            stream.close()
        sentinels.close()


def published(proc: HaredisProc) -> list[tuple[str, str]]:
    """The events a watcher published, in order, from its log (one line each, from the start
    of the process, so no subscriber can miss the first ones)."""
    out = []
    for line in proc.log_text().splitlines():
        event = re.search(r" event=(\S+)", line)
        msg = re.search(r' msg="([^"]*)"', line)
        if event and msg and event.group(1)[:1] in "+-" and msg.group(1).startswith(event.group(1) + " "):
            out.append((event.group(1), msg.group(1)[len(event.group(1)) + 1 :]))
    return out


def test_a_late_watcher_announces_its_peers_before_adopting_their_topology(
    redis_cluster: Callable[..., RedisCluster], watchers: Callable[..., HaredisCluster]
) -> None:
    """w1 and w2 fail over without w3; when w3 starts, the first gossip it hears both
    introduces a peer and carries the newer topology. As in Sentinel's hello processing,
    +sentinel comes first, then +config-update-from and +switch-master."""
    rc = redis_cluster(replicas=1)
    old, new = rc.primary.address, rc.replicas[0].address
    cluster = HaredisCluster(rc.primary.address)
    try:
        w1, w2, w3 = cluster.watchers
        cluster.start(only=[0, 1])
        for w in (w1, w2):
            wait_until(lambda w=w: knows(w.port, 1, 1), 15, f"watcher {w.name} to see its replica and peer")
        rc.primary.kill()
        cluster.wait_agree(new, FAILOVER_DEADLINE, among=[w1, w2])
        cluster.start(only=[2])
        wait_until(lambda: w3.master_addr() == new, FAILOVER_DEADLINE, "w3 to adopt the new topology")
        ids = {myid(w.port): w.port for w in (w1, w2)}
        wait_until(
            lambda: sorted(d.split()[1] for c, d in published(w3) if c == "+sentinel") == sorted(ids),
            10,
            "w3 to introduce both peers",
        )
        events = published(w3)
        channels = [c for c, _ in events]
        update = channels.index("+config-update-from")
        source = events[update][1].split()[1]  # the run id of the peer whose gossip it was
        intro = [i for i, (c, d) in enumerate(events) if c == "+sentinel" and d.split()[1] == source]
        assert len(intro) == 1 and intro[0] < update < channels.index("+switch-master"), events
        assert events[intro[0]][1] == (
            f"sentinel {source} {LOOPBACK} {ids[source]} @ mymaster {old.host} {old.port}"
        )
        assert events[update][1] == events[intro[0]][1]  # named the same way, Sentinel's %@ form
        assert [d for c, d in events if c == "+switch-master"] == [
            f"mymaster {old.host} {old.port} {new.host} {new.port}"
        ]
    finally:
        cluster.close()
