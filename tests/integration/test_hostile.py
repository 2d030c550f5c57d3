"""Hostile input against a real `haredis run` process.

1. The RESP port under malformed, truncated, oversized and random frames and hundreds of
   half-open connections keeps answering a well-behaved client, and the daemon's memory stays
   within a bound derived from the server's frame and buffer limits.
2. Forged, unsigned and replayed peer messages sent as raw frames to the peer (RESP) port are
   refused, counted per reason in `/metrics`, and the watchers still fail over afterwards.

The parser limits themselves are fuzzed in tests/unit/test_resp.py and the peer verifier in
tests/unit/test_peers.py; here the point is the whole process, its sockets and its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import random
import re
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from haredis.core.messages import Gossip
from haredis.peers import PeerSigner
from haredis.resp import Error, Reply, ReplyParser, encode_command
from haredis.server import RespServer

from .haredis_procs import HaredisCluster, HaredisProc, wait_until
from .redis_procs import LOOPBACK, RedisCluster, RedisProc

KIB = 1024
MIB = 1024 * KIB

# ---------------------------------------------------------------------------------------------
# The memory bound, from the limits the daemon's RespServer runs with (its defaults: the daemon
# does not override them). Read them from the signature so the bound follows the code.

_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(RespServer.__init__).parameters.items()
    if param.default is not param.empty
}
MAX_BULK: int = _DEFAULTS["max_bulk"]
MAX_INLINE: int = _DEFAULTS["max_inline"]
MAX_REQUEST: int = _DEFAULTS["max_request"]
WRITE_BUFFER_HIGH: int = _DEFAULTS["write_buffer_high"]
MAX_SUBSCRIPTIONS: int = _DEFAULTS.get("max_subscriptions", 10**9)
MAX_SUBSCRIPTION_BYTES: int = _DEFAULTS.get("max_subscription_bytes", 10**9)
READ_CHUNK = 64 * KIB  # RespServer reads at most this much per read() and its StreamReader limit
# What one open connection costs before it sends anything (socket, transport, StreamReader,
# Connection, parser, task: a few KiB in CPython); generous.
PER_CONNECTION_OVERHEAD = 32 * KIB
# The interpreter's allocator keeps arenas and the kernel counts whole pages; a fixed slack.
ALLOCATOR_SLACK = 48 * MIB
# The parser holds at most max_request + max(max_bulk, max_inline) + 2 bytes (resp.py), the
# reader at most two read chunks before asyncio pauses the transport.
PARSER_WORST = MAX_REQUEST + max(MAX_BULK, MAX_INLINE) + 2 + 2 * READ_CHUNK


def _rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


@dataclass
class Attack:
    """Bookkeeping: the sockets kept open, the bytes the kernel accepted and what we tried."""

    kept: list[socket.socket] = field(default_factory=list)
    attempted: int = 0
    accepted: int = 0
    # The worst case the daemon may retain for what we keep open, per the limits above.
    allowed: int = 0
    closed_by_server: int = 0

    def connect(self, port: int) -> socket.socket:
        sock = socket.create_connection((LOOPBACK, port), timeout=5.0)
        sock.setblocking(False)
        return sock

    def push(self, sock: socket.socket, data: bytes, *, deadline_s: float = 5.0) -> bool:
        """Send as much of `data` as the peer takes within the deadline; False if the server
        closed the connection (reset / broken pipe)."""
        self.attempted += len(data)
        view = memoryview(data)
        deadline = time.monotonic() + deadline_s
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True  # the server stopped reading: that is the point
            _, writable, _ = select.select([], [sock], [], min(remaining, 0.2))
            if not writable:
                continue
            try:
                sent = sock.send(view[: 256 * KIB])
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                    self.closed_by_server += 1
                    return False
                raise
            self.accepted += sent
            view = view[sent:]
        return True

    def close(self) -> None:
        for sock in self.kept:
            with contextlib.suppress(OSError):
                sock.close()
        self.kept.clear()


class WellBehavedClient(threading.Thread):
    """PING and SENTINEL GET-MASTER-ADDR-BY-NAME in a loop while the attack runs; records every
    reply and every failure. Bounded in count and time."""

    def __init__(
        self, port: int, expected: list[str], max_rounds: int = 5000, max_seconds: float = 120.0
    ) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.expected = expected
        self.max_rounds = max_rounds
        self.max_seconds = max_seconds
        self.stop = threading.Event()
        self.rounds = 0
        self.failures: list[str] = []

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        # The timeout is a liveness guard for a stuck daemon, not a speed requirement.
        with redis.Redis(LOOPBACK, self.port, socket_timeout=30, decode_responses=True, protocol=2) as client:
            while not self.stop.is_set() and self.rounds < self.max_rounds and time.monotonic() < deadline:
                try:
                    if client.ping() is not True:
                        self.failures.append("PING did not answer PONG")
                    addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
                    if addr != self.expected:
                        self.failures.append(f"unexpected address {addr!r}")
                except redis.RedisError as exc:
                    self.failures.append(repr(exc))
                self.rounds += 1
                self.stop.wait(0.02)


@pytest.fixture
def lone_watcher(
    redis_proc: Callable[..., RedisProc], tmp_path: Path
) -> Iterator[tuple[HaredisProc, RedisProc]]:
    primary = redis_proc()
    cluster = HaredisCluster(primary.address, watchers=1, quorum=1, workdir=str(tmp_path))
    cluster.start()
    try:
        yield cluster.watchers[0], primary
    finally:
        cluster.close()


def _valid_frames() -> list[bytes]:
    return [
        encode_command("SENTINEL", "MASTERS"),
        encode_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"),
        encode_command("PING", "x" * 100),
        b"PING\r\n",
        b'ECHO "quoted \\x41 arg"\r\n',
        encode_command("HAREDIS.STATUS"),
        encode_command("SUBSCRIBE", "+switch-master"),
    ]


MALFORMED = [
    b"*abc\r\n",
    b"*2\r\n$3\r\nfoo\r\n:1\r\n",  # an integer where a bulk string must be
    b"$-5\r\n",
    b"*1\r\n$3\r\nfooXY",  # no CRLF after the bulk
    b"*-7\r\n*99999999999999999999999\r\n",
    b'PING "unbalanced\r\n',
    b"\x00\x01\x02\xff\xfe\r\n",
    b"*1\r\n$2147483648\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_resp_port_survives_hostile_clients_with_bounded_memory(
    lone_watcher: tuple[HaredisProc, RedisProc],
) -> None:
    watcher, primary = lone_watcher
    assert watcher.popen is not None
    pid = watcher.popen.pid
    expected = [primary.address.host, str(primary.address.port)]
    rng = random.Random(20260707)
    # Warm up the code paths the attack will take (imports, first allocations), then measure.
    with redis.Redis(LOOPBACK, watcher.port, socket_timeout=10, protocol=2) as warm:
        for _ in range(20):
            warm.execute_command("SENTINEL", "MASTERS")
    rss_before = _rss_kib(pid, "VmRSS") * KIB

    good = WellBehavedClient(watcher.port, expected)
    good.start()
    attack = Attack()
    try:
        # 300 half-open connections: 150 that send nothing, 150 that stop in the middle of a
        # frame (a cut of a valid frame, or a header announcing more than ever comes).
        for i in range(300):
            sock = attack.connect(watcher.port)
            attack.kept.append(sock)
            attack.allowed += PER_CONNECTION_OVERHEAD
            if i % 2:
                frame = rng.choice(_valid_frames())
                part = (
                    frame[: rng.randrange(1, len(frame))]
                    if i % 4 == 1
                    else b"*3\r\n$8\r\nSENTINEL\r\n$9\r\nMAS"
                )
                attack.push(sock, part)
                attack.allowed += len(part)

        # 20 that hold one almost complete bulk string of nearly max_bulk bytes: a legitimate
        # half frame, retained until it completes; the bound allows it in full.
        hoarded = MAX_BULK - 1024
        for _ in range(20):
            sock = attack.connect(watcher.port)
            attack.kept.append(sock)
            attack.push(sock, b"*2\r\n$4\r\nECHO\r\n$%d\r\n" % MAX_BULK + b"h" * hoarded)
            attack.allowed += PER_CONNECTION_OVERHEAD + hoarded + READ_CHUNK

        # Oversized: each tries to push 16 MiB past a limit. The server must refuse at the limit
        # (and close), not buffer what follows. Worst case retained while it lasts: PARSER_WORST.
        oversized = [
            b"*1\r\n$1000000000\r\n",  # a bulk longer than max_bulk, announced up front
            b"*2000000\r\n",  # more elements than max_array
            b"SENTINEL ",  # an inline line that never ends
            b"*1024\r\n" + b"".join(b"$%d\r\n" % MAX_BULK + b"a" * MAX_BULK + b"\r\n" for _ in range(5)),
        ]
        for head in oversized:
            for _ in range(5):
                sock = attack.connect(watcher.port)
                attack.push(sock, head + b"x" * (16 * MIB), deadline_s=3.0)
                attack.kept.append(sock)
                attack.allowed += PER_CONNECTION_OVERHEAD + PARSER_WORST

        # Malformed and random frames, each on its own connection, left open.
        for frame in MALFORMED:
            for _ in range(5):
                sock = attack.connect(watcher.port)
                attack.kept.append(sock)
                attack.push(sock, frame)
                attack.allowed += PER_CONNECTION_OVERHEAD + len(frame)
        for _ in range(60):
            sock = attack.connect(watcher.port)
            attack.kept.append(sock)
            blob = rng.randbytes(rng.randrange(1, 64 * KIB))
            if rng.random() < 0.5:  # random bytes after a valid prefix reach deeper parser states
                blob = rng.choice(_valid_frames()) + blob
            attack.push(sock, blob)
            attack.allowed += PER_CONNECTION_OVERHEAD + min(len(blob), PARSER_WORST)

        # Clients that send many commands with big replies and never read: the server stops
        # reading them once its write buffer is over the high-water mark.
        echo = encode_command("ECHO", "e" * (60 * KIB))
        for _ in range(20):
            sock = attack.connect(watcher.port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
            attack.kept.append(sock)
            attack.push(sock, echo * 60, deadline_s=3.0)
            attack.allowed += PER_CONNECTION_OVERHEAD + WRITE_BUFFER_HIGH + 2 * len(echo) + 2 * READ_CHUNK

        # Everyone else is still served while all of that is open.
        wait_until(lambda: good.rounds >= 20, 60, "the well-behaved client to get answers")
        rounds_during_attack = good.rounds
        with redis.Redis(
            LOOPBACK, watcher.port, socket_timeout=30, decode_responses=True, protocol=2
        ) as late:
            assert late.ping() is True
            assert late.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == expected
            masters = late.execute_command("SENTINEL", "MASTERS")
            assert masters and masters[0][masters[0].index("name") + 1] == "mymaster"
        peak = _rss_kib(pid, "VmHWM") * KIB
        opened = len(attack.kept)
    finally:
        good.stop.set()
        good.join(60)
        attack.close()

    growth = peak - rss_before
    bound = attack.allowed + ALLOCATOR_SLACK
    print(
        f"hostile: connections={opened} attempted={attack.attempted / MIB:.1f}MiB "
        f"accepted={attack.accepted / MIB:.1f}MiB closed_by_server={attack.closed_by_server} "
        f"rss_before={rss_before / MIB:.1f}MiB peak={peak / MIB:.1f}MiB growth={growth / MIB:.1f}MiB "
        f"bound={bound / MIB:.1f}MiB good_rounds={good.rounds}"
    )
    assert good.failures == [], good.failures[:5]
    assert rounds_during_attack >= 20
    # The test can fail: what we tried to make the daemon hold is far more than the bound.
    assert attack.attempted > 2 * bound
    assert growth <= bound, f"RSS grew by {growth / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB"
    assert watcher.popen.poll() is None
    # And after the attackers are gone, the daemon still answers.
    with redis.Redis(LOOPBACK, watcher.port, socket_timeout=30, decode_responses=True, protocol=2) as after:
        assert after.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == expected


# ---------------------------------------------------------------------------------------------
# Peer messages


def _peer_frame(envelope: bytes) -> bytes:
    return encode_command("HAREDIS.PEER", envelope)


def _send_raw(port: int, frame: bytes) -> str:
    """Send one frame on a fresh connection to the peer (RESP) port; the reply's first line."""
    with socket.create_connection((LOOPBACK, port), timeout=10.0) as sock, sock.makefile("rb") as reply:
        sock.sendall(frame)
        return reply.readline().decode().rstrip("\r\n")


def _rejected_counts(metrics_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(r'^haredis_gossip_rejected_total\{reason="([^"]+)"\} (\S+)$', re.M)
    return {reason: float(value) for reason, value in pattern.findall(text)}


def test_forged_unsigned_and_replayed_peer_messages_are_rejected_counted_and_harmless(
    redis_cluster: Callable[..., RedisCluster], tmp_path: Path
) -> None:
    redis_nodes = redis_cluster(replicas=2)
    cluster = HaredisCluster(redis_nodes.primary.address, workdir=str(tmp_path), metrics=True)
    cluster.start()
    try:
        cluster.wait_agree(redis_nodes.primary.address)
        target, bystander = cluster.watchers[0], cluster.watchers[1]
        key = (tmp_path / "secret").read_text().strip().encode()
        hello = Gossip(sender="intruder", in_hold=True, primaries=())
        sent: dict[str, int] = {"forged": 0, "unsigned": 0, "replayed": 0}

        def expect(frame: bytes, reason: str | None) -> None:
            answer = _send_raw(target.port, frame)
            if reason is None:
                assert answer == "+OK", answer
            else:
                assert answer == f"-ERR rejected: {reason}", answer
                sent[reason] += 1

        # Forged: signed with another key, under a stranger's name and under a real peer's.
        for name in ("intruder", "w2"):
            wrong = PeerSigner(b"not-the-cluster-secret-at-all-0123", name, time.time_ns())
            expect(_peer_frame(wrong.sign(Gossip(sender=name, in_hold=False, primaries=()))), "forged")
        # Forged: a validly signed envelope whose payload was altered in transit.
        signer = PeerSigner(key, "intruder", time.time_ns())
        genuine = signer.sign(hello)
        expect(_peer_frame(genuine.replace(b'"in_hold":true', b'"in_hold":false')), "forged")
        # Unsigned: a bare payload, and an envelope with no MAC.
        payload = genuine.split(b" ", 7)[7]
        expect(_peer_frame(payload), "unsigned")
        fields = genuine.split(b" ", 7)
        fields[6] = b"-"
        expect(_peer_frame(b" ".join(fields)), "unsigned")
        # Replayed: the genuine message is accepted once, then refused every time it comes back.
        expect(_peer_frame(genuine), None)
        for _ in range(3):
            expect(_peer_frame(genuine), "replayed")

        counts = _rejected_counts(cluster.metrics_ports[0])
        for reason, number in sent.items():
            assert counts.get(reason) == number, (reason, counts)
        # Only the watcher we attacked counts anything: real gossip is never refused.
        assert _rejected_counts(cluster.metrics_ports[1]).get("forged", 0) == 0
        assert "peer message rejected reason=forged" in target.log_text()
        assert bystander.popen is not None and bystander.popen.poll() is None

        # The watchers still work together: a kill -9 of the primary is failed over.
        redis_nodes.primary.kill()
        replicas = {r.address for r in redis_nodes.replicas}
        wait_until(lambda: target.master_addr() in replicas, 30, "a failover after the attack")
        cluster.wait_agree(target.master_addr() or redis_nodes.replicas[0].address, timeout=20)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


def test_subscriptions_are_bounded_per_client(lone_watcher: tuple[HaredisProc, RedisProc]) -> None:
    """SUBSCRIBE / PSUBSCRIBE keep every distinct name: without a cap one client could make the
    daemon hold any amount of memory (and make every publish match any number of patterns)."""
    watcher, primary = lone_watcher
    assert watcher.popen is not None
    pid = watcher.popen.pid
    rss_before = _rss_kib(pid, "VmRSS") * KIB
    names_per_command, name_size, commands = 1000, 1000, 40  # 40 MB of distinct names per kind
    attempted = 0
    refusals: list[str] = []
    with (
        socket.create_connection((LOOPBACK, watcher.port), timeout=30) as sock,
        sock.makefile("rb") as replies,
    ):
        for kind in ("SUBSCRIBE", "PSUBSCRIBE"):
            for number in range(commands):
                names = [
                    b"%s-%06d-%s" % (kind.encode(), number * names_per_command + i, b"n" * name_size)
                    for i in range(names_per_command)
                ]
                sock.sendall(encode_command(kind, *names))
                attempted += names_per_command * name_size
                # Read this command's replies: one per name, or an error that stops the batch.
                for _ in range(names_per_command):
                    first = replies.readline()
                    if first.startswith(b"-"):
                        refusals.append(first.decode().strip())
                        break
                    for _ in range(5):  # after *3: $n, kind, $n, name, :count
                        replies.readline()
        sock.sendall(b"PING\r\n")
        # Still served: in RESP2 subscribed mode PING answers ["pong", ""].
        assert [replies.readline() for _ in range(5)] == [
            b"*2\r\n",
            b"$4\r\n",
            b"pong\r\n",
            b"$0\r\n",
            b"\r\n",
        ]
    peak = _rss_kib(pid, "VmHWM") * KIB
    growth = peak - rss_before
    # The names themselves, a set entry and an index entry per subscription (well under 256
    # bytes each), and a slack for the allocator (one client: far smaller than above).
    bound = MAX_SUBSCRIPTION_BYTES + MAX_SUBSCRIPTIONS * 256 + 16 * MIB
    print(
        f"subscriptions: attempted={attempted / MIB:.0f}MiB refusals={len(refusals)} "
        f"growth={growth / MIB:.1f}MiB bound={bound / MIB:.1f}MiB"
    )
    assert refusals and refusals[0].startswith("-ERR max subscriptions per client reached")
    assert attempted > 2 * bound
    assert growth <= bound
    with redis.Redis(LOOPBACK, watcher.port, socket_timeout=30, decode_responses=True, protocol=2) as other:
        assert other.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster") == [
            primary.address.host,
            str(primary.address.port),
        ]


async def test_the_subscription_budget_counts_names_and_is_given_back() -> None:
    """The cap in RespServer itself: count and bytes, patterns included, freed by UNSUBSCRIBE."""
    server = RespServer({}, port=0, max_subscriptions=3, max_subscription_bytes=12)
    await server.start()
    reader, writer = await asyncio.open_connection(LOOPBACK, server.port)
    parser = ReplyParser()

    async def call(*args: str) -> list[Reply]:
        writer.write(encode_command(*args))
        out: list[Reply] = []
        async with asyncio.timeout(10):
            while len(out) < max(1, len(args) - 1) and not any(isinstance(r, Error) for r in out):
                while (reply := parser.next_reply()) is None:
                    parser.feed(await reader.read(65536))
                out.append(reply)
        return out

    try:
        assert len(await call("SUBSCRIBE", "aaaa", "bbbb")) == 2  # 2 names, 8 bytes
        refused = await call("PSUBSCRIBE", "ccccc")  # 13 bytes: over the byte budget
        assert isinstance(refused[0], Error) and "max subscriptions per client" in refused[0].message
        assert len(await call("PSUBSCRIBE", "c*")) == 1  # 10 bytes, 3 names: at the limits
        refused = await call("SUBSCRIBE", "aaaa", "d")  # a name already held costs nothing...
        assert not isinstance(refused[0], Error) and isinstance(refused[1], Error)  # ...a 4th does
        assert server.publish("cat", "m") == 1  # what was accepted works
        await call("UNSUBSCRIBE", "aaaa")
        assert not any(isinstance(r, Error) for r in await call("SUBSCRIBE", "dddd"))  # given back
    finally:
        writer.close()
        await server.close()
