"""Signed gossip and votes between watchers, carried over the watchers' RESP ports.

Layers, bottom up:

1. **Payload codec** (`haredis.peer_codec`: `encode_message` / `decode_message`): the core's
   `Gossip`, `VoteRequest` and `VoteReply` as strict compact JSON.

2. **Envelope** (`haredis.peer_auth`: `PeerSigner` / `PeerVerifier`): ``HP1 <sender>
   <recipient> <origin> <boot> <counter> <mac> <payload>``, the HMAC over it, and per-sender
   replay windows.

3. **Transport**: one RESP command ``HAREDIS.PEER <envelope>`` sent to the peer's RESP port.
   `peer_command_handler` builds the server-side `Command` to register in the `RespServer`
   dispatcher: it verifies and hands ``(sender, message)`` to a callback and replies ``+OK``
   or ``-ERR rejected: <reason>``. A verified message addressed to another watcher (the
   broadcast fallback below) is answered ``+OK`` and not delivered.

4. **Links** (`PeerLink`, `PeerMesh`): one client per configured peer address; the host is
   resolved again on every reconnect; reconnects back off exponentially (50 ms .. 2 s by
   default); `send` never blocks: a bounded queue drops the oldest gossip (then the oldest
   message) when full, and a message that waited longer than `max_age` is dropped rather
   than delivered late (a stale opinion presented as fresh would be worse than none).

   `PeerMesh.send_to(name, …)` routing: the mesh learns ``name -> address`` from the signed
   `origin` field of messages received from that peer (`learn`, called by the server
   handler), and uses it only if the origin equals one of the configured addresses (same
   host string and port; set each watcher's announced address to what the others have in
   their configuration). Until then, or if the learned link is down, the message is sent to
   every link with ``recipient=name``: the recipient is inside the MAC, so the others drop it
   and nobody but the named watcher can act on it. Routing is an optimisation, never a
   trust decision.

This module holds layers 3 and 4; the names of layers 1 and 2 that other modules import are
re-exported here.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import math
import random
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from haredis.core.messages import Gossip, PeerMessage
from haredis.core.model import Address
from haredis.peer_auth import PeerSigner, PeerVerifier, Verified
from haredis.peer_codec import PeerMessageError, decode_message, encode_message
from haredis.resp import OK, Error, ProtocolError, Reply, ReplyParser, SimpleString, encode_command
from haredis.server import Command, Connection

__all__ = [
    "PEER_COMMAND",
    "PeerLink",
    "PeerMesh",
    "PeerMessageError",
    "PeerSigner",
    "PeerVerifier",
    "Verified",
    "decode_message",
    "encode_message",
    "peer_command_handler",
]

log = logging.getLogger(__name__)

# Messages a link keeps for its peer. Sized for the worst burst, not the usual trickle: when a
# host holding the primaries of many groups dies, every watcher sends each peer a vote request
# and a vote reply per group within one election round; a queue smaller than that drops votes
# and the elections that needed them wait for their timeout. Old messages leave by max_age.
DEFAULT_QUEUE_SIZE = 4096
DROP_LOG_INTERVAL = 10.0

PEER_COMMAND: Final = "HAREDIS.PEER"


# ---------------------------------------------------------------------------------------------
# Server side

Deliver = Callable[[str, PeerMessage], Awaitable[None] | None]


def peer_command_handler(
    verifier: PeerVerifier,
    deliver: Deliver,
    *,
    mesh: PeerMesh | None = None,
    warn_interval: float = 10.0,
) -> Command:
    """The ``HAREDIS.PEER <envelope>`` handler, to register as ``dispatcher[PEER_COMMAND]``.

    `deliver(sender, message)` is called for each accepted message addressed to us; it should
    be quick (hand the message to the runtime's queue). If `mesh` is given, it learns the
    sender's address from the signed origin. Rejections are logged at most once per reason
    every `warn_interval` seconds, and always counted in `verifier.rejected`.
    """
    last_warned: dict[str, float] = {}

    async def handle(conn: Connection, args: list[bytes]) -> Reply:
        try:
            verified = verifier.verify(args[1])
        except PeerMessageError as exc:
            now = time.monotonic()
            if now - last_warned.get(exc.reason, -warn_interval) >= warn_interval:
                last_warned[exc.reason] = now
                log.warning(
                    "peer message rejected reason=%s client=%s detail=%r", exc.reason, conn.peer, exc.detail
                )
            return Error(f"ERR rejected: {exc.reason}")
        if mesh is not None and verified.origin is not None:
            mesh.learn(verified.sender, verified.origin)
        if verified.for_me:
            result = deliver(verified.sender, verified.message)
            if inspect.isawaitable(result):
                await result
        return OK

    return Command(handle, arity=2)


# ---------------------------------------------------------------------------------------------
# Client side


@dataclass(frozen=True, slots=True)
class _Outgoing:
    message: PeerMessage
    recipient: str
    queued_at: float


class _LinkDown(Exception):
    pass


class PeerLink:
    """A client for one peer's RESP port: reconnects forever, never blocks the caller.

    `up` is True while a connection is established and the peer answered the handshake;
    `last_sent` is the loop time of the last message the peer acknowledged (accepted or
    not); `last_error` says why the link went down last. Messages are signed when they are
    written, so a message retried after a reconnect carries a new counter (the receiver may
    then see it twice, which the core tolerates: gossip is state, votes are idempotent).
    """

    def __init__(
        self,
        address: Address,
        signer: PeerSigner,
        *,
        password: str | None = None,
        username: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_age: float = 2.0,
        connect_timeout: float = 1.0,
        reply_timeout: float = 2.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.address = address
        self._signer = signer
        self._password = password
        self._username = username
        self._ssl = ssl
        self.queue_size = max(1, queue_size)
        self.max_age = max_age
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.up = False
        self.last_sent: float | None = None
        self.last_error = ""
        self.sent = 0  # acknowledged by the peer
        self.refused = 0  # answered with an error (rejected by the peer)
        self.dropped = 0  # dropped locally: queue full or too old
        self.connects = 0
        self._queue: collections.deque[_Outgoing] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_refusal = ""
        self._last_refusal_at = 0.0
        self._drops_logged = 0  # `dropped` when last logged
        self._drops_logged_at = -math.inf

    def __repr__(self) -> str:
        return f"<PeerLink {self.address} up={self.up} queued={len(self._queue)}>"

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Start the connection task (needs a running event loop)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-link-{self.address}")

    def send(self, message: PeerMessage, *, recipient: str = "*") -> None:
        """Queue `message`; never blocks.

        Gossip is state, not a log: a new gossip is merged into one still queued for the same
        recipient (the newest view of each primary wins), so a slow link carries the latest
        state once instead of a backlog of superseded ones. Vote requests and replies go ahead
        of queued gossip: an election lasts well under a second, and many primaries failing
        at once (a host holding many primaries died) must not leave votes behind a queue of
        gossip. When the queue is full the oldest gossip is dropped (or the oldest message).
        """
        if self._closed:
            return
        now = self._now()
        if isinstance(message, Gossip):
            for i, item in enumerate(self._queue):
                if isinstance(item.message, Gossip) and item.recipient == recipient:
                    self._queue[i] = _Outgoing(_merge_gossip(item.message, message), recipient, now)
                    self._wakeup.set()
                    return
        if len(self._queue) >= self.queue_size:
            victim = next((item for item in self._queue if isinstance(item.message, Gossip)), self._queue[0])
            self._queue.remove(victim)
            self.dropped += 1
            self._log_drops(now)
        outgoing = _Outgoing(message, recipient, now)
        if isinstance(message, Gossip):
            self._queue.append(outgoing)
        else:
            first_gossip = next(
                (i for i, item in enumerate(self._queue) if isinstance(item.message, Gossip)),
                len(self._queue),
            )
            self._queue.insert(first_gossip, outgoing)
        self._wakeup.set()

    def _log_drops(self, now: float) -> None:
        """A full queue loses votes, and lost votes cost elections their timeout: say so, at
        most every DROP_LOG_INTERVAL seconds per link."""
        if now - self._drops_logged_at < DROP_LOG_INTERVAL:
            return
        log.warning(
            "peer queue full, dropped the oldest messages peer=%s dropped=%d queue_size=%d",
            self.address,
            self.dropped - self._drops_logged,
            self.queue_size,
        )
        self._drops_logged, self._drops_logged_at = self.dropped, now

    async def close(self) -> None:
        self._closed = True
        self._queue.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self.up = False

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    async def _run(self) -> None:
        backoff = self.backoff_min
        while not self._closed:
            try:
                reader, writer, parser = await self._connect()
                backoff = self.backoff_min
                try:
                    await self._session(reader, writer, parser)
                finally:
                    writer.transport.abort()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ProtocolError, _LinkDown) as exc:  # SSLError is an OSError
                self._went_down(exc)
            except Exception as exc:  # a bug must not end the link for good
                log.exception("peer link to %s failed", self.address)
                self._went_down(exc)
            # Jitter (backoff/2 .. backoff) keeps watchers from retrying in step.
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, self.backoff_max)

    def _went_down(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.up or error != self.last_error:
            log.info("peer link down peer=%s error=%r", self.address, error)
        self.up = False
        self.last_error = error

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ReplyParser]:
        async with asyncio.timeout(self.connect_timeout):
            # open_connection resolves the host name again on every call.
            reader, writer = await asyncio.open_connection(
                self.address.host, self.address.port, ssl=self._ssl
            )
        try:
            parser = ReplyParser(max_bulk=64 * 1024, max_buffer=1024 * 1024)
            handshake = []
            if self._password is not None:
                if self._username is not None:
                    handshake.append(encode_command("AUTH", self._username, self._password))
                else:
                    handshake.append(encode_command("AUTH", self._password))
            handshake.append(encode_command("CLIENT", "SETNAME", f"haredis-peer-{self._signer.sender}"))
            writer.write(b"".join(handshake))
            async with asyncio.timeout(self.reply_timeout):
                await writer.drain()
                for _ in handshake:
                    reply = await self._read_reply(reader, parser)
                    if reply != OK:
                        raise _LinkDown(f"handshake refused: {_describe(reply)}")
        except BaseException:
            writer.transport.abort()
            raise
        self.up = True
        self.connects += 1
        log.info("peer link up peer=%s", self.address)
        return reader, writer, parser

    @staticmethod
    async def _read_reply(reader: asyncio.StreamReader, parser: ReplyParser) -> Reply:
        while True:
            reply = parser.next_reply()
            if reply is not None:
                return reply
            data = await reader.read(64 * 1024)
            if not data:
                raise _LinkDown("connection closed by the peer")
            parser.feed(data)

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: ReplyParser
    ) -> None:
        while True:
            batch: list[_Outgoing] = []
            frames: list[bytes] = []
            while len(batch) < _PIPELINE:
                item = self._next_fresh()
                if item is None:
                    break
                try:
                    envelope = self._signer.sign(item.message, recipient=item.recipient)
                except ValueError as exc:  # a message the codec refuses: drop it, never retry
                    log.error("cannot sign a peer message for %s: %s", self.address, exc)
                    self.dropped += 1
                    continue
                batch.append(item)
                frames.append(encode_command(PEER_COMMAND, envelope))
            if not batch:
                await self._idle(reader)
                continue
            # Pipelined: one write, then the replies in order, so a burst (votes for many
            # primaries) costs one round trip, not one per message.
            answered = 0
            try:
                writer.write(b"".join(frames))
                async with asyncio.timeout(self.reply_timeout):
                    await writer.drain()
                    for _ in batch:
                        reply = await self._read_reply(reader, parser)
                        answered += 1
                        self._acknowledged(reply)
            except BaseException:
                if not self._closed:
                    # Retried (re-signed) after reconnecting, if still fresh, in their order.
                    self._queue.extendleft(reversed(batch[answered:]))
                raise

    def _acknowledged(self, reply: Reply) -> None:
        self.last_sent = self._now()
        if isinstance(reply, Error):
            self.refused += 1
            now = self._now()
            if reply.message != self._last_refusal or now - self._last_refusal_at >= 10.0:
                self._last_refusal, self._last_refusal_at = reply.message, now
                log.warning("peer refused our message peer=%s reply=%r", self.address, reply.message)
        else:
            self.sent += 1

    async def _idle(self, reader: asyncio.StreamReader) -> None:
        """Wait for something to send, or for the connection to end (the peer never speaks
        unasked, so a byte or EOF while idle means the link is unusable)."""
        self._wakeup.clear()
        waiter = asyncio.ensure_future(self._wakeup.wait())
        eof = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({waiter, eof}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, eof):
                task.cancel()
            await asyncio.wait({waiter, eof})
        if not eof.cancelled():
            data = eof.result()  # raises the connection's error, if any
            raise _LinkDown("unexpected data from the peer" if data else "connection closed by the peer")

    def _next_fresh(self) -> _Outgoing | None:
        now = self._now()
        while self._queue:
            item = self._queue.popleft()
            if now - item.queued_at <= self.max_age:
                return item
            self.dropped += 1
        return None


# Messages written before their replies are read. Small: a receiver that dies mid-batch costs
# at most this many retries, each of which the core tolerates (gossip is state, votes are
# idempotent).
_PIPELINE = 16


def _merge_gossip(old: Gossip, new: Gossip) -> Gossip:
    """`new` plus the primaries only `old` carried (a push may carry only changed ones)."""
    carried = {view.name for view in new.primaries}
    kept = tuple(view for view in old.primaries if view.name not in carried)
    if not kept:
        return new
    return Gossip(new.sender, new.in_hold, kept + new.primaries, sent_ms=new.sent_ms, echoes=new.echoes)


def _describe(reply: Reply) -> str:
    if isinstance(reply, Error):
        return reply.message
    if isinstance(reply, SimpleString):
        return reply.value
    return type(reply).__name__


class PeerMesh:
    """One `PeerLink` per configured peer address (the list should not include this watcher).

    See the module docstring for how `send_to` routes by name.
    """

    def __init__(
        self,
        peers: Sequence[Address],
        signer: PeerSigner,
        *,
        password: str | None = None,
        username: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_age: float = 2.0,
        connect_timeout: float = 1.0,
        reply_timeout: float = 2.0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self.signer = signer
        self._links: dict[Address, PeerLink] = {
            address: PeerLink(
                address,
                signer,
                password=password,
                username=username,
                ssl=ssl,
                queue_size=queue_size,
                max_age=max_age,
                connect_timeout=connect_timeout,
                reply_timeout=reply_timeout,
                backoff_min=backoff_min,
                backoff_max=backoff_max,
            )
            for address in dict.fromkeys(peers)
        }
        self._routes: dict[str, Address] = {}

    @property
    def links(self) -> Mapping[Address, PeerLink]:
        return self._links

    @property
    def routes(self) -> Mapping[str, Address]:
        return self._routes

    async def start(self) -> None:
        """Start every link (connections are made in the background)."""
        for link in self._links.values():
            link.start()

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self._links.values()))

    def broadcast(self, message: PeerMessage) -> None:
        for link in self._links.values():
            link.send(message)

    def send_to(self, name: str, message: PeerMessage) -> None:
        """Send to the watcher called `name`: directly if its address is known and its link is
        up, else to every link, addressed to `name` (the others drop it)."""
        address = self._routes.get(name)
        link = self._links.get(address) if address is not None else None
        if link is not None and link.up:
            link.send(message, recipient=name)
            return
        for each in self._links.values():
            each.send(message, recipient=name)

    def learn(self, name: str, origin: Address) -> None:
        """Record that `name` listens at `origin` (ignored unless it is a configured peer)."""
        if origin not in self._links or self._routes.get(name) == origin:
            return
        for other, address in list(self._routes.items()):
            if address == origin:
                del self._routes[other]  # that address now belongs to `name`
        self._routes[name] = origin
        log.info("peer identified name=%s address=%s", name, origin)
