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

from .haredis_procs import HaredisCluster, wait_until
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
    """Real redis-sentinel processes monitoring `primary` as "mymaster" (quorum 2)."""

    def __init__(self, primary: Address, workdir: Path, count: int = 3) -> None:
        assert SENTINEL_BIN is not None
        self.ports = [free_port() for _ in range(count)]
        self.popens: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []
        for port in self.ports:
            d = workdir / f"sentinel-{port}"
            d.mkdir()
            conf = d / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind {LOOPBACK}\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor mymaster {primary.host} {primary.port} 2\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
            )
            self.dirs.append(d)
            self.popens.append(
                subprocess.Popen(
                    [SENTINEL_BIN, str(conf)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
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


def test_info_sentinel_section_matches(oracle: Oracle) -> None:
    def section(port: int) -> list[str]:
        reply = raw_call(port, "INFO", "sentinel")
        return [line for line in text(reply).split("\r\n") if line]

    mine, real = section(oracle.watcher_port), section(oracle.sentinel_port)
    assert [line.split(":", 1)[0] for line in mine] == [line.split(":", 1)[0] for line in real]
    expected = f"master0:name=mymaster,status=ok,address={oracle.redis.primary.address},slaves=1,sentinels=3"
    assert mine[-1] == real[-1] == expected
    assert mine == real  # no tilt, no scripts: every line is the same


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
