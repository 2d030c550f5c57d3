"""RespServer.census(): the connection figures INFO reports, measured on a real server on
loopback with raw sockets (no Redis involved), so every count is checked against traffic the
test itself produced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from haredis.resp import ReplyParser, encode_command
from haredis.server import RespServer, _RateMeter

DEADLINE = 5.0


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = ReplyParser()
        self.sent = 0

    async def call(self, *words: str) -> object:
        frame = encode_command(*words)
        self.sent += len(frame)
        self.writer.write(frame)
        while (reply := self.parser.next_reply()) is None:
            data = await asyncio.wait_for(self.reader.read(65536), DEADLINE)
            assert data, "connection closed before a reply"
            self.parser.feed(data)
        return reply

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[RespServer]:
    srv = RespServer({}, "127.0.0.1", 0, max_clients=3)
    await srv.start()
    yield srv
    await srv.close(grace=1.0)


async def connect(server: RespServer) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    return Client(reader, writer)


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_census_counts_clients_subscriptions_and_traffic(server: RespServer) -> None:
    assert server.census().connected_clients == 0
    a, b = await connect(server), await connect(server)
    await a.call("PING")
    await b.call("PING")
    census = server.census()
    assert (census.connected_clients, census.max_clients, census.pubsub_clients) == (2, 3, 0)
    assert census.stats.connections_received == 2 and census.stats.commands_processed == 2

    # Subscriptions: two clients on one channel count one channel; patterns are distinct ones.
    await a.call("SUBSCRIBE", "+switch-master")
    await b.call("SUBSCRIBE", "+switch-master")
    await b.call("PSUBSCRIBE", "*", "+s*")
    census = server.census()
    assert (census.pubsub_clients, census.pubsub_channels, census.pubsub_patterns) == (2, 1, 2)

    # Errors are counted as replies; bytes in are what the clients sent.
    # Rejected commands are not "processed" (as in Redis).
    errors_before, processed_before = server.stats.error_replies, server.stats.commands_processed
    c = await connect(server)
    await c.call("NOSUCHCOMMAND")
    await c.call("ECHO")
    assert server.stats.error_replies == errors_before + 2
    assert server.stats.commands_processed == processed_before
    assert server.stats.net_input_bytes == a.sent + b.sent + c.sent
    assert server.stats.reads_processed >= 7 and server.stats.writes_processed >= 7
    assert server.stats.net_output_bytes > 0

    # A fourth connection is over max_clients: rejected, not counted as connected.
    d = await connect(server)
    assert await asyncio.wait_for(d.reader.read(), DEADLINE) == b"-ERR max number of clients reached\r\n"
    await d.close()
    assert server.census().stats.rejected_connections == 1

    # A closed connection leaves the census and its subscriptions with it.
    await b.close()
    await eventually(lambda: server.census().connected_clients == 2, "the closed client to go")
    census = server.census()
    assert (census.pubsub_clients, census.pubsub_channels, census.pubsub_patterns) == (1, 1, 0)
    for client in (a, c):
        await client.close()


async def test_recent_max_input_buffer_sees_a_large_request(server: RespServer) -> None:
    client = await connect(server)
    await client.call("ECHO", "x" * 20000)
    assert server.census().recent_max_input_buffer >= 20000
    await client.close()


async def test_instantaneous_ops_per_sec_rises_under_load_and_falls_back(server: RespServer) -> None:
    client = await connect(server)
    deadline = time.monotonic() + DEADLINE
    while server.census().ops_per_sec == 0:  # a few sampling periods of steady traffic
        assert time.monotonic() < deadline, "the rate never left 0"
        for _ in range(20):
            await client.call("PING")
        await asyncio.sleep(0.02)
    assert server.census().input_kbps > 0 and server.census().output_kbps > 0
    # Idle: the 16-sample window (1.6 s) empties.
    await eventually(lambda: server.census().ops_per_sec == 0, "the rate to fall back to 0")
    await client.close()


async def test_no_timer_task_samples_the_rates(server: RespServer) -> None:
    # The instantaneous metrics are sampled when the server works anyway, not on a timer: an
    # idle server has no task of its own waking up 10 times a second.
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert "resp-rates" not in names
    client = await connect(server)
    for _ in range(3):
        await client.call("PING")
    assert server.stats.commands_processed >= 3
    await client.close()


def test_rate_meter_sampled_each_period_averages_the_ring() -> None:
    meter = _RateMeter(samples=4, period=0.125)  # binary-exact times
    for step in range(5):  # 50 per 125 ms: 400/s
        meter.sample(50 * step, step * 0.125)
    assert meter.rate == pytest.approx(400.0)


def test_rate_meter_fills_the_periods_a_gap_skipped_with_the_mean_over_the_gap() -> None:
    meter = _RateMeter(samples=4, period=0.125)
    meter.sample(0, 0.0)
    meter.sample(50, 0.25)  # two periods, 200/s over them: two slots of 200
    assert meter.rate == pytest.approx(100.0)
    meter.sample(50, 5.0)  # idle for longer than the ring: every slot 0
    assert meter.rate == 0.0


def test_rate_meter_ignores_a_sample_within_the_period() -> None:
    meter = _RateMeter(samples=2, period=0.125)
    meter.sample(0, 0.0)
    meter.sample(1000, 0.0625)  # too soon: not a sample, the counter keeps accumulating
    assert meter.rate == 0.0
    meter.sample(1000, 0.125)
    assert meter.rate == pytest.approx(4000.0)  # one slot of 8000/s, one of 0
