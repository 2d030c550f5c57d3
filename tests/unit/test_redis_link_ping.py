"""RedisLink.ping's own path (it reads the connection's stream directly instead of going
through redis-py's command path): it must stay in step with every other command on the same
link, and speak the same wire. Against a real redis-server; the failure classification of
PING (reset, refused, timeout, LOADING, BUSY, NOAUTH, TLS...) is in
tests/integration/test_redis_link.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from haredis.core.events import FailureKind
from haredis.core.model import Role
from haredis.redis_link import LinkError, RedisLink
from tests.integration.redis_procs import RedisProc

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisProc]:
    proc = RedisProc(extra_args=["--rename-command", "PING", "hidden-ping"])
    proc.start()
    try:
        yield proc
    finally:
        proc.close()


async def test_ping_interleaves_with_other_commands_on_one_link(redis_server: RedisProc) -> None:
    link = RedisLink(
        redis_server.address,
        username=None,
        password=None,
        connect_timeout=1.0,
        renamed={"PING": "hidden-ping"},
    )
    try:
        for _ in range(20):
            assert await link.ping(1.0) == "PONG"
            assert (await link.info(1.0)).role is Role.PRIMARY
            assert (await link.role(1.0)).role is Role.PRIMARY
            assert await link.ping(1.0) == "PONG"
        # An error reply to a command in between leaves the stream in step for the next PING.
        with pytest.raises(LinkError) as caught:
            await link.config_set("no-such-parameter", "1", 1.0)
        assert caught.value.kind is FailureKind.ERROR
        assert await link.ping(1.0) == "PONG"
        assert link.connected
    finally:
        await link.close()


async def test_ping_uses_the_renamed_command(redis_server: RedisProc) -> None:
    """The server knows PING only as hidden-ping: a link told so gets PONG; a link that
    sends plain PING gets Redis's unknown-command error, which is an answer (its code)."""
    plain = RedisLink(redis_server.address, username=None, password=None, connect_timeout=1.0)
    try:
        assert await plain.ping(1.0) == "ERR"
        assert plain.connected  # an error reply does not drop the connection
    finally:
        await plain.close()


async def test_a_reply_that_arrived_while_our_loop_stalled_is_not_a_timeout(redis_server: RedisProc) -> None:
    """The PING goes out, then our own event loop blocks past the deadline while the PONG
    arrives: the reply and the deadline are handled in the same loop iteration. The instance
    answered, so the answer counts and the connection stays (a stalled watcher must not
    report, and reconnect, every instance at once)."""
    link = RedisLink(
        redis_server.address,
        username=None,
        password=None,
        connect_timeout=1.0,
        renamed={"PING": "hidden-ping"},
    )
    try:
        assert await link.ping(1.0) == "PONG"
        task = asyncio.ensure_future(link.ping(0.2))
        # Runs right after the task's first step, which sends the PING and waits for the reply.
        asyncio.get_running_loop().call_soon(time.sleep, 1.0)
        assert await task == "PONG"
        assert link.connected
        # A real timeout (nothing arrives) still is one, and still drops the connection.
        redis_server.stop()
        try:
            with pytest.raises(LinkError) as caught:
                await link.ping(0.2)
            assert caught.value.kind is FailureKind.TIMEOUT
            assert not link.connected
        finally:
            redis_server.cont()
        assert await link.ping(2.0) == "PONG"
    finally:
        await link.close()
