"""haredis.server (and haredis.peers over it) with real clients: redis-py (sync and asyncio,
RESP2 and RESP3), redis-cli, raw sockets; error texts compared with a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError

from haredis.core.messages import Gossip, PeerMessage, PrimaryGossip, VoteReply, VoteRequest
from haredis.core.model import Address
from haredis.peers import (
    PEER_COMMAND,
    PeerLink,
    PeerMesh,
    PeerSigner,
    PeerVerifier,
    peer_command_handler,
)
from haredis.resp import (
    NULL,
    OK,
    Array,
    Bulk,
    Error,
    Integer,
    Map,
    Push,
    Reply,
    ReplyParser,
    SimpleString,
    encode_command,
)
from haredis.server import Command, CommandError, Connection, RespServer, glob_match

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
needs_redis_server = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
needs_redis_cli = pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is not installed")


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Raw:
    """A bare RESP client over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = ReplyParser()

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> Raw:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def reply(self, timeout: float = 5.0) -> Reply:
        async with asyncio.timeout(timeout):
            while (reply := self.parser.next_reply()) is None:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed")
                self.parser.feed(data)
        return reply

    async def call(self, *args: bytes | str | int) -> Reply:
        self.send(encode_command(*args))
        return await self.reply()

    async def replies_until_quiet(self, quiet: float = 0.5) -> tuple[list[Reply], bool]:
        """Every reply until EOF (True) or `quiet` seconds without data (False)."""
        replies: list[Reply] = []
        eof = False
        for _ in range(100_000):
            while (reply := self.parser.next_reply()) is not None:
                replies.append(reply)
            try:
                async with asyncio.timeout(quiet):
                    data = await self.reader.read(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                eof = True
                break
            if not data:
                eof = True
                break
            self.parser.feed(data)
        return replies, eof

    async def eof(self, timeout: float = 5.0) -> bytes:
        """Read until the server closes; returns what came before."""
        data = b""
        async with asyncio.timeout(timeout):
            while chunk := await self.reader.read(65536):
                data += chunk
        return data

    async def close(self) -> None:
        self.writer.transport.abort()


ServerFactory = Callable[..., Awaitable[RespServer]]


def as_text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
async def servers() -> AsyncIterator[ServerFactory]:
    started: list[RespServer] = []

    async def start(dispatcher: Any = None, **kwargs: Any) -> RespServer:
        server = RespServer(dispatcher, "127.0.0.1", kwargs.pop("port", 0), **kwargs)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.close(grace=1.0)


@pytest.fixture
async def raws() -> AsyncIterator[Callable[..., Awaitable[Raw]]]:
    opened: list[Raw] = []

    async def open_raw(port: int, **kwargs: Any) -> Raw:
        raw = await Raw.open(port, **kwargs)
        opened.append(raw)
        return raw

    yield open_raw
    for raw in opened:
        await raw.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def real_redis(tmp_path: Path) -> Iterator[Callable[[str | None], int]]:
    """``real_redis(password)`` starts Debian's redis-server on a free loopback port."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(password: str | None) -> int:
        port = free_port()
        workdir = tmp_path / f"redis-{port}"
        workdir.mkdir()
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(workdir), "--logfile", str(workdir / "log")]
        if password is not None:
            argv += ["--requirepass", password]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return port
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


async def cli(*args: str, timeout: float = 10.0) -> str:
    assert REDIS_CLI is not None
    proc = await asyncio.create_subprocess_exec(
        REDIS_CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(timeout):
        out, _ = await proc.communicate()
    return out.decode()


# ---------------------------------------------------------------------------------------------
# Redis glob (PSUBSCRIBE patterns)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (b"*", b"anything", True),
        (b"*", b"", False),  # as in Redis: only the empty pattern matches an empty name
        (b"", b"", True),
        (b"h?llo", b"hello", True),
        (b"h?llo", b"hllo", False),
        (b"h*llo", b"heeeello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hallo", True),  # reversed range
        (b"h\\*llo", b"h*llo", True),
        (b"h\\*llo", b"hello", False),
        (b"+switch-*", b"+switch-master", True),
        (b"__sentinel__:*", b"+sdown", False),
        (b"a*b*c", b"aXbYc", True),
        (b"a*b*c", b"aXbY", False),
        (b"[", b"x", False),
        (b"x[", b"x", False),
        (b"*[\\]]", b"a]", True),
        (b"*" * 50 + b"x", b"a" * 60, False),  # no blow-up
    ],
)
def test_glob_match_follows_redis(pattern: bytes, text: bytes, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


# ---------------------------------------------------------------------------------------------
# redis-py


@pytest.mark.parametrize("protocol", [2, 3])
async def test_sync_redis_py_basics(servers: ServerFactory, protocol: int) -> None:
    server = await servers()

    def talk() -> dict[str, Any]:
        client = redis.Redis(port=server.port, protocol=protocol, client_name="sync-client")
        try:
            return {
                "ping": client.ping(),
                "echo": client.echo("h\u00e9"),
                "name": client.client_getname(),
                "id": client.client_id(),
                "setname": client.client_setname("renamed"),
                "renamed": client.client_getname(),
                "info": client.client_info(),
            }
        finally:
            client.close()

    got = await asyncio.to_thread(talk)
    assert got["ping"] is True
    assert got["echo"] == "h\u00e9".encode()
    assert as_text(got["name"]) == "sync-client"  # redis-py decodes some replies itself
    assert got["setname"] is True
    assert as_text(got["renamed"]) == "renamed"
    assert got["info"]["name"] == "renamed"
    assert got["info"]["resp"] == str(protocol)
    assert got["info"]["lib-name"] == "redis-py"
    assert isinstance(got["id"], int)
    assert got["id"] >= 1


@pytest.mark.parametrize("protocol", [2, 3])
async def test_async_redis_py_auth_and_hello(servers: ServerFactory, protocol: int) -> None:
    server = await servers(password="s3cret")
    # No retries: redis-py would otherwise reconnect ten times with backoff before giving up.
    bad = redis.asyncio.Redis(
        port=server.port, protocol=protocol, password="wrong", retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(AuthenticationError, match="invalid username-password pair"):
        await bad.ping()
    await bad.aclose()

    good = redis.asyncio.Redis(port=server.port, protocol=protocol, password="s3cret", decode_responses=True)
    try:
        assert await good.ping() is True
        hello = await good.execute_command("HELLO", protocol)
        if protocol == 2:
            hello = dict(zip(hello[::2], hello[1::2], strict=True))
        assert hello["proto"] == protocol
        assert hello["server"] == "haredis"
        assert (hello["mode"], hello["role"], hello["modules"]) == ("sentinel", "sentinel", [])
        assert hello["id"] == await good.client_id()
        with pytest.raises(ResponseError, match=r"^NOPROTO unsupported protocol version$"):
            await good.execute_command("HELLO", 4)
    finally:
        await good.aclose()


async def test_noauth_before_auth(servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]) -> None:
    server = await servers(
        dispatcher={"ROLE": lambda conn, args: Array((Bulk("sentinel"), Array(())))}, password="pw"
    )
    raw = await raws(server.port)
    assert await raw.call("ROLE") == Error("NOAUTH Authentication required.")
    assert await raw.call("PING") == Error("NOAUTH Authentication required.")
    reply = await raw.call("HELLO", "3")
    assert isinstance(reply, Error)
    assert reply.message.startswith("NOAUTH HELLO must be called")
    assert await raw.call("AUTH", "nope") == Error(
        "WRONGPASS invalid username-password pair or user is disabled."
    )
    assert await raw.call("AUTH", "default", "pw") == OK
    assert await raw.call("ROLE") == Array((Bulk(b"sentinel"), Array(())))
    assert await raw.call("RESET") == SimpleString("RESET")
    assert await raw.call("ROLE") == Error("NOAUTH Authentication required.")
    assert isinstance(await raw.call("HELLO", "3", "AUTH", "default", "pw", "SETNAME", "cli"), Map)
    assert await raw.call("CLIENT", "GETNAME") == Bulk(b"cli")


@pytest.mark.parametrize("protocol", [2, 3])
async def test_pubsub_with_redis_py(servers: ServerFactory, protocol: int) -> None:
    server = await servers()
    client = redis.asyncio.Redis(port=server.port, protocol=protocol)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("+switch-master")
        await pubsub.psubscribe("+s*")
        confirmations = [await pubsub.get_message(timeout=5) for _ in range(2)]
        assert [(m["type"], m["channel"], m["data"]) for m in confirmations if m] == [
            ("subscribe", b"+switch-master", 1),
            ("psubscribe", b"+s*", 2),
        ]
        assert server.publish("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6379") == 2
        assert server.publish("+sdown", "master mymaster 10.0.0.1 6379") == 1
        assert server.publish("-odown", "x") == 0
        got = []
        for _ in range(3):
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            got.append((message["type"], message["pattern"], message["channel"], message["data"]))
        assert sorted(got, key=repr) == sorted(
            [
                ("message", None, b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 6379"),
                ("pmessage", b"+s*", b"+switch-master", b"mymaster 10.0.0.1 6379 10.0.0.2 6379"),
                ("pmessage", b"+s*", b"+sdown", b"master mymaster 10.0.0.1 6379"),
            ],
            key=repr,
        )
        await pubsub.unsubscribe("+switch-master")
        await pubsub.punsubscribe()
        await eventually(
            lambda: not any(c.subscribed for c in server.connections.values()), what="the unsubscriptions"
        )
        assert server.publish("+sdown", "y") == 0
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_subscribed_mode_rules(servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]) -> None:
    server = await servers(
        dispatcher={
            "ROLE": Command(lambda conn, args: Array(()), arity=1),
            "PUBLISH": Command(lambda c, a: OK, pubsub=True),
        }
    )
    raw = await raws(server.port)
    raw.send(
        b"SUBSCRIBE a\r\nROLE\r\nPUBLISH\r\nPING\r\nPING hi\r\nFOO\r\nUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nROLE\r\n"
    )
    replies = [await raw.reply() for _ in range(9)]
    assert replies == [
        Array((Bulk(b"subscribe"), Bulk(b"a"), Integer(1))),
        Error(
            "ERR Can't execute 'role': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
            "are allowed in this context"
        ),
        OK,  # a dispatcher command declared pubsub=True is allowed
        Array((Bulk(b"pong"), Bulk(b""))),
        Array((Bulk(b"pong"), Bulk(b"hi"))),
        Error("ERR unknown command 'FOO', with args beginning with: "),
        Array((Bulk(b"unsubscribe"), Bulk(b"a"), Integer(0))),
        Array((Bulk(b"unsubscribe"), NULL, Integer(0))),
        Array(()),
    ]
    # RESP3: everything allowed, subscription replies are pushes.
    raw3 = await raws(server.port)
    raw3.send(b"HELLO 3\r\nSUBSCRIBE a\r\nROLE\r\nPING\r\n")
    replies = [await raw3.reply() for _ in range(4)]
    assert replies[1:] == [
        Push((Bulk(b"subscribe"), Bulk(b"a"), Integer(1))),
        Array(()),
        SimpleString("PONG"),
    ]


# ---------------------------------------------------------------------------------------------
# redis-cli


@needs_redis_cli
async def test_redis_cli(servers: ServerFactory) -> None:
    server = await servers(password="pw")
    port = str(server.port)
    assert await cli("-p", port, "PING") == "NOAUTH Authentication required.\n\n"
    assert await cli("-p", port, "-a", "pw", "--no-auth-warning", "PING") == "PONG\n"
    assert "WRONGPASS" in await cli("-p", port, "-a", "bad", "--no-auth-warning", "PING")
    hello = (await cli("-p", port, "-a", "pw", "--no-auth-warning", "-3", "HELLO", "3")).splitlines()
    assert "proto 3" in hello
    assert "mode sentinel" in hello
    assert await cli("-p", port, "-a", "pw", "--no-auth-warning", "CLIENT", "SETNAME", "cli-test") == "OK\n"
    assert await cli("-p", port, "-a", "pw", "--no-auth-warning", "FOO", "a", "b") == (
        "ERR unknown command 'FOO', with args beginning with: 'a' 'b' \n\n"
    )


@needs_redis_cli
async def test_redis_cli_subscribe_receives_a_published_message(servers: ServerFactory) -> None:
    assert REDIS_CLI is not None
    server = await servers()
    proc = await asyncio.create_subprocess_exec(
        REDIS_CLI, "-p", str(server.port), "SUBSCRIBE", "+switch-master", stdout=asyncio.subprocess.PIPE
    )
    try:
        await eventually(
            lambda: server.subscriber_count("+switch-master") == 1, what="redis-cli to subscribe"
        )
        assert server.publish("+switch-master", "mymaster 1.1.1.1 1 2.2.2.2 2") == 1
        assert proc.stdout is not None
        lines = []
        async with asyncio.timeout(5):
            while "mymaster 1.1.1.1 1 2.2.2.2 2" not in lines:
                lines.append((await proc.stdout.readline()).decode().rstrip("\n"))
        assert lines == [
            "subscribe",
            "+switch-master",
            "1",
            "message",
            "+switch-master",
            "mymaster 1.1.1.1 1 2.2.2.2 2",
        ]
    finally:
        proc.terminate()
        await proc.wait()


@needs_redis_cli
@needs_redis_server
async def test_redis_cli_sees_the_same_errors_as_from_redis(servers: ServerFactory, real_redis: Any) -> None:
    server = await servers()
    real = real_redis(None)
    commands = [
        ["FOO", "a", "b"],
        ["foo"],
        ["FOO", "x" * 100, "y" * 100],
        ["ECHO"],
        ["CLIENT", "NOPE"],
        ["CLIENT", "SETNAME", "a b"],
        ["AUTH", "x"],
        ["HELLO", "9"],
        ["PING", "a", "b"],
    ]
    for command in commands:
        ours, theirs = await asyncio.gather(
            cli("-p", str(server.port), *command), cli("-p", str(real), *command)
        )
        assert ours == theirs, command


# ---------------------------------------------------------------------------------------------
# Byte-exact comparison with redis-server

DIFF_CASES_NO_PASSWORD = [
    b"*x\r\n",
    b"*1\r\nx\r\n",
    b"*1\r\n$-1\r\n",
    b"*1\r\n$abc\r\n",
    b"*3000000000\r\n",
    b"*1\r\n$600000000\r\n",
    b'ECHO "abc\r\n',
    b"a" * 70000,
    b"*1\r\n$" + b"1" * 70000,
    b"*" + b"1" * 70000,
    b"*0\r\n*-1\r\n\r\nPING\r\n",
    b"PING \"a\\x41b\"\r\nPING 'it\\'s'\r\n",
    b"FOO a b\r\nFOO\r\nFOO " + b" ".join([b"x" * 50] * 5) + b"\r\n",
    b"*2\r\n$3\r\nFOO\r\n$3\r\na\nb\r\n",
    b"ECHO\r\nPING a b\r\nCLIENT\r\nCLIENT foo\r\nCLIENT SETNAME\r\n"
    b"CLIENT SETNAME a\x01b\r\nCLIENT GETNAME\r\n"
    b'CLIENT SETNAME x\r\nCLIENT GETNAME\r\nCLIENT SETNAME ""\r\nCLIENT GETNAME\r\nCLIENT GETNAME x\r\n',
    b"AUTH x\r\nAUTH a b\r\nAUTH a b c\r\nAUTH default anything\r\n",
    b"HELLO 4\r\nHELLO x\r\nHELLO 3 FOO\r\nHELLO 3 AUTH\r\nHELLO 3 SETNAME\r\n",
    b"SUBSCRIBE a\r\nPSUBSCRIBE h?llo\r\nECHO x\r\nPING\r\nPING hi\r\n"
    b"UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nPING\r\n",
    b"SUBSCRIBE\r\nUNSUBSCRIBE\r\nPSUBSCRIBE a b\r\nPUNSUBSCRIBE b\r\nPUNSUBSCRIBE a\r\n",
    b"HELLO 3\r\nSUBSCRIBE a\r\nPING\r\nFOO\r\nUNSUBSCRIBE b\r\nUNSUBSCRIBE a\r\nPING x\r\n",
    b"RESET\r\nQUIT\r\nPING\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
]
DIFF_CASES_PASSWORD = [
    b"PING\r\nQUIT\r\n",
    b"HELLO 3\r\nHELLO\r\nHELLO 3 AUTH default wrong\r\n",
    b"*11\r\n",
    b"*1\r\n$20000\r\n",
    b"SUBSCRIBE x\r\nFOO a\r\nECHO\r\nAUTH\r\nAUTH a b c\r\nAUTH wrong\r\n"
    b"AUTH default pw\r\nPING\r\nRESET\r\nPING\r\n",
    b"AUTH pw\r\nSUBSCRIBE a\r\nFOO\r\nECHO\r\nECHO a\r\nCLIENT ID\r\nHELLO\r\nQUIT\r\n",
    b"HELLO 3 AUTH default pw SETNAME n\r\nCLIENT GETNAME\r\nHELLO 2\r\nCLIENT GETNAME\r\n",
]


def comparable(replies: list[Reply]) -> list[Reply]:
    """HELLO maps name the server, its version, the client id: keep only their shape."""

    def norm(reply: Reply) -> Reply:
        if isinstance(reply, Map):
            return Map(tuple((k, Bulk(b"*")) for k, _ in reply.items if k != Bulk(b"role")))
        if isinstance(reply, Array) and reply.items[:1] == (Bulk(b"server"),):
            return norm(Map(tuple(zip(reply.items[::2], reply.items[1::2], strict=True))))
        return reply

    return [norm(r) for r in replies]


async def exchange(port: int, data: bytes) -> tuple[list[Reply], bool]:
    raw = await Raw.open(port)
    try:
        raw.send(data)
        return await raw.replies_until_quiet(0.5)
    finally:
        await raw.close()


@needs_redis_server
@pytest.mark.parametrize("password", [None, "pw"])
async def test_replies_match_redis_server(
    servers: ServerFactory, real_redis: Any, password: str | None
) -> None:
    server = await servers(password=password)
    real = real_redis(password)
    cases = DIFF_CASES_PASSWORD if password else DIFF_CASES_NO_PASSWORD
    ours = await asyncio.gather(*(exchange(server.port, case) for case in cases))
    theirs = await asyncio.gather(*(exchange(real, case) for case in cases))
    for case, (our_replies, our_eof), (their_replies, their_eof) in zip(cases, ours, theirs, strict=True):
        assert comparable(our_replies) == comparable(their_replies), case[:80]
        assert our_eof == their_eof, case[:80]


# ---------------------------------------------------------------------------------------------
# Dispatcher


async def test_dispatcher_handlers_errors_and_arity(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    calls: list[list[bytes]] = []

    async def role(conn: Connection, args: list[bytes]) -> Reply:
        calls.append(args)
        await asyncio.sleep(0)
        return Array((Bulk("sentinel"), Array(())))

    def boom(conn: Connection, args: list[bytes]) -> Reply:
        raise RuntimeError("bug")

    def refuse(conn: Connection, args: list[bytes]) -> Reply:
        raise CommandError("NOGOODSLAVE No suitable replica to promote")

    def bad_reply(conn: Connection, args: list[bytes]) -> Reply:
        return "not a reply"  # type: ignore[return-value]

    dispatcher: dict[str, Any] = {
        "ROLE": Command(role, arity=1),
        "BOOM": boom,
        "SENTINEL": Command(refuse, arity=-2),
        "BAD": bad_reply,
    }
    server = await servers(dispatcher)
    raw = await raws(server.port)
    assert await raw.call("role") == Array((Bulk(b"sentinel"), Array(())))
    assert calls == [[b"role"]]
    assert await raw.call("ROLE", "x") == Error("ERR wrong number of arguments for 'role' command")
    assert await raw.call("SENTINEL") == Error("ERR wrong number of arguments for 'sentinel' command")
    assert await raw.call("SENTINEL", "failover", "m") == Error("NOGOODSLAVE No suitable replica to promote")
    assert await raw.call("BOOM") == Error("ERR internal error")
    assert await raw.call("BAD") == Error("ERR internal error")
    assert await raw.call("PING") == SimpleString("PONG")  # the connection survived
    assert server.stats.handler_errors == 2
    dispatcher["LATE"] = lambda conn, args: Integer(len(args))  # registered after start
    assert await raw.call("LATE", "a", "b") == Integer(3)


# ---------------------------------------------------------------------------------------------
# Robustness


async def test_garbage_gets_a_protocol_error_and_others_keep_working(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    server = await servers()
    good = await raws(server.port)
    assert await good.call("PING") == SimpleString("PONG")
    bad = await raws(server.port)
    bad.send(b"PING\r\n*2\r\n$4\r\nECHO\r\n\x00\xff\xfegarbage\r\n")
    assert await bad.eof() == b"+PONG\r\n-ERR Protocol error: expected '$', got '\x00'\r\n"
    assert server.stats.protocol_errors == 1
    assert await good.call("ECHO", "still here") == Bulk(b"still here")
    await eventually(lambda: len(server.connections) == 1, what="the bad connection to be gone")


async def test_oversized_bulk_is_rejected_before_it_is_buffered(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    server = await servers(max_bulk=1024)
    raw = await raws(server.port)
    raw.send(b"*2\r\n$4\r\nECHO\r\n$1025\r\n")  # the data never needs to arrive
    assert await raw.eof() == b"-ERR Protocol error: invalid bulk length\r\n"
    ok = await raws(server.port)
    assert await ok.call("ECHO", b"x" * 1024) == Bulk(b"x" * 1024)
    # A real client sending a too big value gets the error too.
    client = redis.asyncio.Redis(port=server.port)
    try:
        with pytest.raises((ResponseError, redis.ConnectionError)):
            await client.echo("x" * 5000)
    finally:
        await client.aclose()


async def test_max_clients(servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]) -> None:
    server = await servers(max_clients=2)
    first, second = await raws(server.port), await raws(server.port)
    assert await first.call("PING") == SimpleString("PONG")
    assert await second.call("PING") == SimpleString("PONG")
    third = await raws(server.port)
    assert await third.eof() == b"-ERR max number of clients reached\r\n"
    assert server.stats.rejected_connections == 1
    await first.call("QUIT")
    await eventually(lambda: len(server.connections) == 1, what="a slot to free up")
    fourth = await raws(server.port)
    assert await fourth.call("PING") == SimpleString("PONG")


async def test_idle_clients_are_reaped_but_not_subscribers_or_active_ones(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    server = await servers(idle_timeout=0.3)
    loop = asyncio.get_running_loop()
    idle, active, subscriber = await raws(server.port), await raws(server.port), await raws(server.port)
    assert await subscriber.call("SUBSCRIBE", "ch") == Array((Bulk(b"subscribe"), Bulk(b"ch"), Integer(1)))
    started = loop.time()
    assert await idle.call("PING") == SimpleString("PONG")
    for _ in range(6):  # 0.6 s of activity, a PING every 0.1 s
        assert await active.call("PING") == SimpleString("PONG")
        await asyncio.sleep(0.1)
    assert await idle.eof() == b""
    assert loop.time() - started >= 0.3
    assert await active.call("PING") == SimpleString("PONG")
    assert server.publish("ch", "still subscribed") == 1
    assert await subscriber.reply() == Array((Bulk(b"message"), Bulk(b"ch"), Bulk(b"still subscribed")))
    assert server.stats.idle_closed == 1


async def test_slow_subscriber_is_dropped_at_the_output_limit(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    hard = 256 * 1024
    server = await servers(pubsub_hard_limit=hard, pubsub_soft_limit=hard)
    slow = await raws(server.port, rcvbuf=4096)
    assert await slow.call("SUBSCRIBE", "events") == Array((Bulk(b"subscribe"), Bulk(b"events"), Integer(1)))
    fast = await raws(server.port)
    assert await fast.call("SUBSCRIBE", "events") == Array((Bulk(b"subscribe"), Bulk(b"events"), Integer(1)))
    slow_peer = f"127.0.0.1:{slow.writer.get_extra_info('sockname')[1]}"
    (conn,) = (c for c in server.connections.values() if c.peer == slow_peer)
    message = b"m" * 65536
    largest = 0
    for i in range(2000):  # the kernel buffers fill first, then the backlog grows
        delivered = server.publish("events", message)
        largest = max(largest, conn.output_buffer_size if not conn.closed else 0)
        fast_got = await fast.reply()  # the fast one reads everything it gets
        assert fast_got == Array((Bulk(b"message"), Bulk(b"events"), Bulk(message))), i
        if server.subscriber_count("events") == 1:
            assert delivered == 2  # written to both, then the slow one was cut off
            break
    else:
        raise AssertionError("the slow subscriber was never dropped")
    assert largest <= hard + len(message) + 64
    assert server.stats.slow_clients_dropped == 1
    await eventually(lambda: conn.id not in server.connections, what="the slow subscriber to be gone")
    assert await fast.call("PING") == Array((Bulk(b"pong"), Bulk(b"")))


async def test_client_that_never_reads_replies_is_bounded_then_dropped(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    high = 64 * 1024
    server = await servers(write_buffer_high=high, drain_timeout=1.0)
    raw = await raws(server.port, rcvbuf=4096)
    request = encode_command("ECHO", b"r" * 16384)
    for _ in range(3000):  # ~48 MB at most; the server stops reading long before
        raw.send(request * 4)
        try:
            async with asyncio.timeout(0.2):
                await raw.writer.drain()
        except TimeoutError:
            break
    else:
        raise AssertionError("the server kept reading from a client that does not read")
    (conn,) = server.connections.values()
    assert conn.output_buffer_size <= high + 64 * 1024 + 4 * len(request)
    await eventually(lambda: server.stats.slow_clients_dropped == 1, what="the client to be dropped")
    await eventually(lambda: not server.connections, what="the connection to be gone")
    other = await raws(server.port)
    assert await other.call("PING") == SimpleString("PONG")


async def test_close_lets_commands_finish_within_grace(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    cancelled: list[bool] = []

    async def slow(conn: Connection, args: list[bytes]) -> Reply:
        started.set()
        await release.wait()
        return SimpleString("DONE")

    async def stuck(conn: Connection, args: list[bytes]) -> Reply:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return OK

    server = await servers({"SLOW": slow, "STUCK": stuck})
    idle, busy = await raws(server.port), await raws(server.port)
    assert await idle.call("PING") == SimpleString("PONG")
    busy.send(encode_command("SLOW"))
    await started.wait()
    closing = asyncio.create_task(server.close(grace=5.0))
    assert await idle.eof() == b""  # idle connections go at once
    release.set()
    assert await busy.reply() == SimpleString("DONE")  # the command in progress completes
    await closing
    with pytest.raises(OSError):
        await Raw.open(server.port)

    server2 = await servers({"STUCK": stuck})
    hung = await raws(server2.port)
    hung.send(encode_command("STUCK"))
    await eventually(lambda: any(c._busy for c in server2.connections.values()), what="the handler to start")
    loop = asyncio.get_running_loop()
    begin = loop.time()
    await server2.close(grace=0.2)
    assert loop.time() - begin < 2.0
    assert cancelled == [True]
    assert await hung.eof() == b""


def make_certificate(directory: Path) -> tuple[Path, Path] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return (cert, key) if result.returncode == 0 else None


async def test_tls(servers: ServerFactory, tmp_path: Path) -> None:
    files = make_certificate(tmp_path)
    if files is None:
        pytest.skip("openssl cannot make a test certificate here")
    cert, key = files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await servers(ssl=context, password="pw")
    client = redis.asyncio.Redis(
        port=server.port, ssl=True, ssl_ca_certs=str(cert), password="pw", protocol=3
    )
    try:
        assert await client.ping() is True
        assert await client.echo("over tls") == b"over tls"
    finally:
        await client.aclose()
    plain = await Raw.open(server.port)
    try:
        plain.send(b"PING\r\n")  # not a TLS hello: the handshake fails, the server stays up
        with contextlib.suppress(ConnectionError, TimeoutError):
            await plain.eof(timeout=5)
    finally:
        await plain.close()
    client = redis.asyncio.Redis(port=server.port, ssl=True, ssl_ca_certs=str(cert), password="pw")
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------------
# Peers over RESP

KEY = b"0123456789abcdef0123456789abcdef"


def gossip(sender: str, down: bool = False) -> Gossip:
    return Gossip(
        sender=sender,
        in_hold=False,
        primaries=(PrimaryGossip("mymaster", down, 3, 2, Address("10.0.0.1", 6379)),),
    )


class Watcher:
    """One watcher's peer plumbing: a RESP server with the HAREDIS.PEER handler and a mesh."""

    def __init__(self, name: str, server: RespServer, dispatcher: dict[str, Any]) -> None:
        self.name = name
        self.server = server
        self.dispatcher = dispatcher
        self.address = Address("127.0.0.1", server.port)
        self.received: list[tuple[str, PeerMessage]] = []
        self.verifier = PeerVerifier(KEY, own_name=name, cluster="test")
        dispatcher[PEER_COMMAND] = peer_command_handler(self.verifier, self.deliver)

    def deliver(self, sender: str, message: PeerMessage) -> None:
        self.received.append((sender, message))

    async def join(self, peers: list[Address], **link_options: Any) -> PeerMesh:
        signer = PeerSigner(KEY, self.name, time.time_ns(), cluster="test", origin=self.address)
        mesh = PeerMesh(peers, signer, password="pw", **link_options)
        self.dispatcher[PEER_COMMAND] = peer_command_handler(self.verifier, self.deliver, mesh=mesh)
        await mesh.start()
        return mesh


async def start_watcher(servers: ServerFactory, name: str, port: int = 0) -> Watcher:
    dispatcher: dict[str, Any] = {}
    server = await servers(dispatcher, password="pw", port=port)
    return Watcher(name, server, dispatcher)


async def test_two_watchers_exchange_signed_messages(
    servers: ServerFactory, raws: Callable[..., Awaitable[Raw]]
) -> None:
    w1, w2 = await start_watcher(servers, "w1"), await start_watcher(servers, "w2")
    mesh1 = await w1.join([w2.address])
    mesh2 = await w2.join([w1.address])
    try:
        mesh1.broadcast(gossip("w1", down=True))
        mesh2.broadcast(gossip("w2"))
        await eventually(lambda: bool(w1.received and w2.received), what="gossip both ways")
        assert w2.received == [("w1", gossip("w1", down=True))]
        assert w1.received == [("w2", gossip("w2"))]
        # Each learned the other's name from the signed origin: votes go straight there.
        assert dict(mesh1.routes) == {"w2": w2.address}
        assert dict(mesh2.routes) == {"w1": w1.address}
        mesh1.send_to("w2", VoteRequest("w1", "mymaster", 4))
        await eventually(lambda: len(w2.received) == 2, what="the vote request")
        mesh2.send_to("w1", VoteReply("w2", "mymaster", 4, True, "w1", 4))
        await eventually(lambda: len(w1.received) == 2, what="the vote reply")
        assert w1.received[1] == ("w2", VoteReply("w2", "mymaster", 4, True, "w1", 4))
        link = mesh1.links[w2.address]
        assert link.up
        assert link.sent == 2
        assert link.last_sent is not None
        assert w2.verifier.accepted == 2
        assert dict(w2.verifier.rejected) == {}
        names = {c.name for c in w2.server.connections.values()}
        assert "haredis-peer-w1" in names

        # A forged message (wrong key) and a replayed genuine one are refused and counted.
        attacker = await raws(w2.server.port)
        assert await attacker.call("AUTH", "pw") == OK
        forged = PeerSigner(b"not-the-key-not-the-key-0000", "w1", time.time_ns(), cluster="test")
        assert await attacker.call(PEER_COMMAND, forged.sign(gossip("w1"))) == Error("ERR rejected: forged")
        genuine = mesh1.signer.sign(gossip("w1", down=False))
        assert await attacker.call(PEER_COMMAND, genuine) == OK
        assert await attacker.call(PEER_COMMAND, genuine) == Error("ERR rejected: replayed")
        assert await attacker.call(PEER_COMMAND, b"{}") == Error("ERR rejected: unsigned")
        assert await attacker.call(PEER_COMMAND) == Error(
            "ERR wrong number of arguments for 'haredis.peer' command"
        )
        assert dict(w2.verifier.rejected) == {"forged": 1, "replayed": 1, "unsigned": 1}
        assert w2.received[-1] == ("w1", gossip("w1", down=False))
        assert len(w2.received) == 3
        # Without the password the peer port is closed to strangers too.
        stranger = await raws(w2.server.port)
        assert await stranger.call(PEER_COMMAND, genuine) == Error("NOAUTH Authentication required.")
    finally:
        await mesh1.close()
        await mesh2.close()


async def test_a_peer_that_starts_later_is_joined_and_a_restart_is_survived(servers: ServerFactory) -> None:
    w1 = await start_watcher(servers, "w1")
    port = free_port()
    late = Address("127.0.0.1", port)
    mesh1 = await w1.join([late], max_age=30.0, backoff_max=0.2)
    link = mesh1.links[late]
    try:
        await eventually(lambda: link.last_error != "", what="a failed connection attempt")
        assert not link.up
        mesh1.broadcast(gossip("w1"))  # queued while the peer is away
        w2 = await start_watcher(servers, "w2", port=port)
        await eventually(lambda: bool(w2.received), timeout=10, what="the late peer to get the gossip")
        assert w2.received == [("w1", gossip("w1"))]
        assert link.up

        # The peer restarts (a new process: new boot id, new replay window) on the same port.
        await w2.server.close(grace=0.5)
        await eventually(lambda: not link.up, what="the link to notice")
        w2b = await start_watcher(servers, "w2", port=port)
        mesh1.broadcast(gossip("w1", down=True))
        await eventually(lambda: bool(w2b.received), timeout=10, what="delivery after the restart")
        assert w2b.received == [("w1", gossip("w1", down=True))]
        assert link.connects == 2
    finally:
        await mesh1.close()


async def test_a_backlog_sends_votes_first_in_order_and_gossip_once_merged(servers: ServerFactory) -> None:
    # Many primaries failing at once: vote requests for all of them must not wait behind
    # gossip, and a slow link carries the newest gossip once, not every superseded one.
    w1 = await start_watcher(servers, "w1")
    port = free_port()
    mesh1 = await w1.join([Address("127.0.0.1", port)], max_age=30.0, backoff_max=0.2)
    link = mesh1.links[Address("127.0.0.1", port)]
    try:
        await eventually(lambda: link.last_error != "", what="a failed connection attempt")
        for down in (False, True, False, True, True):
            mesh1.broadcast(gossip("w1", down=down))
        requests = [VoteRequest("w1", f"group{i}", 7) for i in range(40)]
        for request in requests:
            mesh1.broadcast(request)
        w2 = await start_watcher(servers, "w2", port=port)
        await eventually(lambda: len(w2.received) == 41, timeout=10, what="the backlog to arrive")
        assert [m for _, m in w2.received] == [*requests, gossip("w1", down=True)]
        # The receiver has everything; the sender counts a batch once it read the replies.
        await eventually(lambda: link.sent == 41, timeout=10, what="the last batch's replies")
        assert link.dropped == 0
    finally:
        await mesh1.close()


async def test_peer_link_with_a_wrong_password_stays_down(servers: ServerFactory) -> None:
    w2 = await start_watcher(servers, "w2")
    signer = PeerSigner(KEY, "w1", time.time_ns(), cluster="test")
    link = PeerLink(w2.address, signer, password="wrong", backoff_max=0.1)
    link.start()
    try:
        link.send(gossip("w1"))
        await eventually(lambda: "WRONGPASS" in link.last_error, what="the auth failure")
        assert not link.up
        assert w2.received == []
    finally:
        await link.close()
    assert link._task is None


async def test_send_to_an_unknown_name_reaches_only_that_watcher(servers: ServerFactory) -> None:
    w1, w2, w3 = [await start_watcher(servers, name) for name in ("w1", "w2", "w3")]
    mesh = await w1.join([w2.address, w3.address])
    try:
        assert dict(mesh.routes) == {}  # nobody has spoken to w1 yet: the fallback is used
        vote = VoteReply("w1", "mymaster", 5, True, "w3", 5)
        mesh.send_to("w3", vote)
        await eventually(lambda: bool(w3.received), what="the addressed watcher to get it")
        await eventually(lambda: w2.verifier.misdirected == 1, what="the other watcher to see and drop it")
        assert w3.received == [("w1", vote)]
        assert w2.received == []
        assert w2.verifier.accepted == 0
        assert mesh.links[w2.address].refused == 0  # dropping a misdirected message is not an error
    finally:
        await mesh.close()
