"""haredis.http on a real loopback socket: every endpoint through urllib (in a thread), and
the malformed, oversized, idle and crowded cases through raw asyncio streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from haredis.core.model import Address, Snapshot, WatcherSettings
from haredis.http import HttpServer
from haredis.metrics import Metrics
from tests.unit.test_metrics import NOW, P1, R1, inst, peer, primary, snapshot

TIMEOUT = 10.0  # bound on every wait; a healthy run takes milliseconds


def fixed_snapshot() -> Snapshot:
    view = primary(
        "mymaster",
        P1,
        replicas=(
            inst(R1, offset=4000),
            inst(Address("10.0.0.12", 6379), sdown=True, link_up=False, priority=0, info_age=None),
        ),
        peers=(peer("w2", NOW - 0.25, says_down=True), peer("w3", None, in_hold=True)),
        failover_state="select_slave",
        failover_epoch=5,
        leader="w1",
        odown_votes=2,
        sdown=True,
        odown=True,
    )
    return snapshot(view)


@dataclass
class State:
    """What the providers return; tests move it."""

    clock: float = 500.0
    last_cycle: float | None = 499.5
    ready: bool = True
    snapshot: Callable[[], Snapshot] = fixed_snapshot
    opened: list[asyncio.StreamWriter] = field(default_factory=list)


@pytest.fixture
def state() -> State:
    return State()


def make_server(state: State, **kw: Any) -> HttpServer:
    ws = WatcherSettings(name="w1", electorate=3, primaries=())
    metrics = Metrics(lambda: state.snapshot(), lambda: ws)
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "registry": metrics.registry,
        "snapshot": lambda: state.snapshot(),
        "last_cycle": lambda: state.last_cycle,
        "ready": lambda: state.ready,
        "max_cycle_age": 2.0,
        "clock": lambda: state.clock,
    }
    options.update(kw)
    return HttpServer(**options)


@pytest.fixture
async def server(state: State) -> AsyncIterator[HttpServer]:
    srv = make_server(state)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


# ------------------------------------------------------------------ clients

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode()


def _fetch(url: str, method: str, data: bytes | None) -> Reply:
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, dict(err.headers), err.read())


async def get(srv: HttpServer, path: str, method: str = "GET", data: bytes | None = None) -> Reply:
    url = f"http://127.0.0.1:{srv.port}{path}"
    return await asyncio.wait_for(asyncio.to_thread(_fetch, url, method, data), TIMEOUT)


async def raw(srv: HttpServer, payload: bytes) -> bytes:
    """Send bytes on a fresh connection, return everything until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), response[:200]
    return int(line.split()[1])


# ------------------------------------------------------------------ endpoints


async def test_metrics(server: HttpServer) -> None:
    reply = await get(server, "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert reply.headers["Connection"] == "close"
    assert int(reply.headers["Content-Length"]) == len(reply.body)
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text())
        for s in family.samples
    }
    assert values[("haredis_masters", ())] == 1
    key = (
        "haredis_master_status",
        (("master_address", str(P1)), ("master_name", "mymaster"), ("master_status", "odown")),
    )
    assert values[key] == 0
    assert values[("haredis_leader", (("master_name", "mymaster"),))] == 1


async def test_head_sends_headers_only(server: HttpServer) -> None:
    reply = await get(server, "/metrics", method="HEAD")
    assert reply.status == 200
    assert reply.body == b""
    assert int(reply.headers["Content-Length"]) > 0
    response = await raw(server, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.endswith(b"\r\n\r\n")
    assert b"Content-Length: 3\r\n" in response


async def test_health_follows_the_last_cycle(server: HttpServer, state: State) -> None:
    reply = await get(server, "/health")
    assert (reply.status, reply.text()) == (200, "ok\n")
    state.clock += 5.0  # the loop stopped completing cycles
    reply = await get(server, "/health")
    assert reply.status == 503
    assert "last decision cycle completed 5.5s ago (limit 2s)" in reply.text()
    state.last_cycle = state.clock - 0.1  # it recovered
    assert (await get(server, "/health")).status == 200
    state.last_cycle = None
    reply = await get(server, "/health")
    assert reply.status == 503
    assert "no decision cycle completed yet" in reply.text()


async def test_ready_before_and_after_the_first_cycle(server: HttpServer, state: State) -> None:
    state.ready = False
    reply = await get(server, "/ready")
    assert reply.status == 503
    assert reply.text().startswith("not ready")
    state.ready = True
    reply = await get(server, "/ready")
    assert (reply.status, reply.text()) == (200, "ready\n")


async def test_topology(server: HttpServer) -> None:
    reply = await get(server, "/topology")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    doc = json.loads(reply.body)
    assert doc["watcher"] == "w1"
    assert doc["in_hold"] is False
    assert doc["hold_remaining_seconds"] is None
    assert doc["peers"] == [
        {"name": "w2", "last_heard_seconds_ago": 0.25, "in_hold": False},
        {"name": "w3", "last_heard_seconds_ago": None, "in_hold": True},
    ]
    [p] = doc["primaries"]
    assert p == {
        "name": "mymaster",
        "address": "10.0.0.10:6379",
        "config_epoch": 3,
        "current_epoch": 4,
        "status": "odown",
        "odown_votes": 2,
        "quorum": 2,
        "last_ok_ping_reply_seconds": 0.1,
        "failover": {"state": "select_slave", "epoch": 5, "leader": "w1"},
        "pause": {"remaining_seconds": None, "reason": ""},
        "replicas": [
            {
                "address": "10.0.0.11:6379",
                "offset": 4000,
                "lag_bytes": 1000,
                "link_status": "up",
                "priority": 100,
                "sdown": False,
            },
            {
                "address": "10.0.0.12:6379",
                "offset": 1000,
                "lag_bytes": None,
                "link_status": "unknown",
                "priority": 0,
                "sdown": True,
            },
        ],
        "peers": [
            {"name": "w2", "last_heard_seconds_ago": 0.25, "says_down": True, "in_hold": False},
            {"name": "w3", "last_heard_seconds_ago": None, "says_down": False, "in_hold": True},
        ],
    }
    assert "hunter2" not in reply.text()  # run ids and error texts are not rendered


async def test_hold_and_pause_in_topology(server: HttpServer, state: State) -> None:
    paused = primary("mymaster", P1, paused_until=NOW + 42.5, pause_reason="kernel upgrade")
    expired = primary("other", R1, paused_until=NOW - 1.0, pause_reason="old")
    state.snapshot = lambda: snapshot(paused, expired, in_hold=True)
    doc = json.loads((await get(server, "/topology")).body)
    assert doc["in_hold"] is True
    assert doc["hold_remaining_seconds"] == 5.0
    assert doc["primaries"][0]["pause"] == {"remaining_seconds": 42.5, "reason": "kernel upgrade"}
    assert doc["primaries"][1]["pause"] == {"remaining_seconds": None, "reason": ""}


async def test_query_strings_are_ignored(server: HttpServer) -> None:
    assert (await get(server, "/health?verbose=1")).status == 200


async def test_unknown_path_is_404(server: HttpServer) -> None:
    for path in ("/", "/metrics/", "/nope", "/%2e%2e/etc/passwd"):
        reply = await get(server, path)
        assert reply.status == 404, path


async def test_other_methods_are_405(server: HttpServer) -> None:
    reply = await get(server, "/metrics", method="POST", data=b"x" * 10_000)
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, HEAD"
    for method in ("PUT", "DELETE", "OPTIONS"):
        assert (await get(server, "/health", method=method)).status == 405


async def test_metrics_404_without_a_registry(state: State) -> None:
    srv = make_server(state, registry=None)
    await srv.start()
    try:
        assert (await get(srv, "/metrics")).status == 404
        assert (await get(srv, "/health")).status == 200
    finally:
        await srv.close()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health\r\n\r\n", 400),  # no version
        (b"GET  /health HTTP/1.1\r\n\r\n", 400),  # double space
        (b"GET health HTTP/1.1\r\n\r\n", 400),  # not an origin-form target
        (b"G(T /health HTTP/1.1\r\n\r\n", 400),  # not a token
        (b"GET /health HTTP/x.y\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\n folded: header\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\n\r\n", 505),
        (b"GET /he\x00alth HTTP/1.1\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x", 400),  # the client gave up mid-head
    ],
)
async def test_malformed_requests_get_an_answer(server: HttpServer, payload: bytes, expected: int) -> None:
    if payload.endswith(b"Host: x"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(payload)
            writer.write_eof()  # half-close: the request will never be complete
            response = await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            writer.close()
            await writer.wait_closed()
    else:
        response = await raw(server, payload)
    assert status_of(response) == expected
    # The server survives every one of them.
    assert (await get(server, "/health")).status == 200


async def test_oversized_request_line_and_headers(server: HttpServer) -> None:
    long_target = b"/" + b"a" * 10_000
    response = await raw(server, b"GET " + long_target + b" HTTP/1.1\r\n\r\n")
    assert status_of(response) == 414
    huge = b"/" + b"a" * 40_000  # beyond the stream limit: refused before it is buffered whole
    response = await raw(server, b"GET " + huge + b" HTTP/1.1\r\n\r\n")
    assert status_of(response) == 414
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"b" * 1000) for i in range(20))
    response = await raw(server, b"GET /health HTTP/1.1\r\n" + headers + b"\r\n")
    assert status_of(response) == 431
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    response = await raw(server, b"GET /health HTTP/1.1\r\n" + many + b"\r\n")
    assert status_of(response) == 431
    assert (await get(server, "/health")).status == 200


async def test_a_provider_that_raises_gives_500_and_the_server_goes_on(
    server: HttpServer, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Snapshot:
        raise RuntimeError("boom")

    state.snapshot = broken
    assert (await get(server, "/topology")).status == 500
    assert (await get(server, "/metrics")).status == 500
    assert (await get(server, "/health")).status == 200
    assert any("http endpoint failed" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ connections


async def open_idle(srv: HttpServer, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Connections that send half a request head and wait: each holds a slot."""
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        conns.append((reader, writer))
        writer.write(b"GET /health HTTP/1.1\r\n")
        with contextlib.suppress(ConnectionError):  # the server may already have evicted it
            await writer.drain()
    return conns


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """The server closed this connection without answering (EOF, or a reset if it had
    not read everything we sent yet)."""
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except ConnectionResetError:
        return True


async def close_all(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(ConnectionError):  # the server may have reset it
            await writer.wait_closed()


async def wait_for_connections(srv: HttpServer, count: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while srv.connections != count:
            await asyncio.sleep(0.01)


async def test_many_idle_connections_do_not_block_a_request(server: HttpServer) -> None:
    conns = await open_idle(server, 50)
    try:
        await wait_for_connections(server, 50)
        replies = await asyncio.gather(*(get(server, "/health") for _ in range(10)))
        assert [r.status for r in replies] == [200] * 10
        await wait_for_connections(server, 50)  # the idle ones are still there, waiting
        assert not any(reader.at_eof() for reader, _ in conns)
    finally:
        await close_all(conns)


async def test_at_the_connection_limit_the_oldest_idle_connection_makes_room(state: State) -> None:
    srv = make_server(state, max_connections=4)
    await srv.start()
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        conns = await open_idle(srv, 10)
        await wait_for_connections(srv, 4)
        reply = await get(srv, "/health")
        assert reply.status == 200
        # The oldest connections were evicted: the server closed them.
        assert await closed_by_server(conns[0][0])
        assert srv.connections <= 4
    finally:
        await close_all(conns)
        await srv.close()


async def test_when_every_slot_is_busy_a_new_connection_gets_503(state: State) -> None:
    srv = make_server(state, max_connections=2)
    await srv.start()
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        # Two clients got their answer but keep their end open: the server lingers on them
        # (briefly) and they are not idle, so they cannot be evicted.
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            conns.append((reader, writer))
            writer.write(b"GET /health HTTP/1.1\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"ok\n"), TIMEOUT)
        # The refusal comes at once, before any request (so sending none keeps it race-free).
        assert status_of(await raw(srv, b"")) == 503
        await close_all(conns)
        await wait_for_connections(srv, 0)
        assert (await get(srv, "/health")).status == 200
    finally:
        await close_all(conns)
        await srv.close()


async def test_idle_connections_are_closed_after_the_timeout(state: State) -> None:
    srv = make_server(state, idle_timeout=0.2)
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(b"GET /health HTTP/1.1\r\n")  # and never the end of the head
            assert await closed_by_server(reader)
        finally:
            writer.close()
            await writer.wait_closed()
        await wait_for_connections(srv, 0)
    finally:
        await srv.close()


async def test_concurrent_requests(server: HttpServer) -> None:
    paths = ["/metrics", "/health", "/ready", "/topology"] * 8
    replies = await asyncio.gather(*(get(server, p) for p in paths))
    assert all(r.status == 200 for r in replies)


async def test_close_stops_listening_and_drops_open_connections(state: State) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    srv = make_server(state)
    await srv.start()
    port = srv.port
    assert port != 0
    conns = await open_idle(srv, 3)
    # And one that got its answer but has not closed its end yet (the server lingers).
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conns.append((reader, writer))
    writer.write(b"GET /health HTTP/1.1\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"ok\n"), TIMEOUT)).startswith(b"HTTP/1.1 200 OK")
    try:
        await wait_for_connections(srv, 4)
        await asyncio.wait_for(srv.close(), TIMEOUT)
        assert srv.connections == 0
        for reader, _ in conns:
            assert await closed_by_server(reader)
        with pytest.raises(ConnectionRefusedError):
            _, late = await asyncio.open_connection("127.0.0.1", port)
            late.close()
            await late.wait_closed()
    finally:
        await close_all(conns)
        loop.set_exception_handler(None)
    assert reported == []  # no handler ended in an error asyncio had to report
