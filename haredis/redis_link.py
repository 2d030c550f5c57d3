"""The only place haredis talks to Redis: a typed wrapper over ``redis.asyncio``.

One :class:`RedisLink` per monitored instance owns one dedicated connection (never a shared
pool, so one slow instance cannot delay another), opened lazily and opened again, with the
host resolved again, after any failure. Calls on one link are serialised; each call has its
own deadline that covers waiting for the link, connecting, authenticating and the reply.

Every failure becomes a :class:`LinkError` whose ``kind`` is the core's FailureKind:

* REFUSED  nothing listens (ECONNREFUSED): the process is gone;
* RESET    the peer reset or closed the connection mid-request (ECONNRESET, EPIPE, EOF);
* TIMEOUT  no complete answer before the deadline: hung, paused or partitioned;
* ERROR    anything else: authentication or ACL failures, DNS failures, protocol errors and
           error replies to commands that must succeed.

After any failure other than an error reply the connection is dropped, because a late reply
would otherwise be read as the answer to the next command. ``CancelledError`` always
propagates.

Error replies to PING (``LOADING``, ``MASTERDOWN``, ``BUSY``, ``NOAUTH``…) are answers, not
failures: :meth:`RedisLink.ping` returns their first word.

redis-py is used at the connection level (``redis.asyncio.connection.Connection``): no pool,
no retries, no response callbacks, RESP2, and a reply parser that keeps every error reply as a
plain ``ResponseError`` with its full text (redis-py would otherwise turn ``LOADING`` or
``NOAUTH`` into connection errors and close the socket). Its connection API is only partly
annotated, so the connection is held as ``Any`` here and every reply is converted explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import re
import ssl as ssl_module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from haredis.core.events import FailureKind
from haredis.core.model import Address, InstanceInfo, Role
from haredis.info import instance_info, parse_info

__all__ = ["LinkError", "RedisLink", "RoleReply", "classify", "parse_role"]


class LinkError(Exception):
    """A call on a RedisLink failed. ``reply`` is the error code when Redis said no."""

    def __init__(self, kind: FailureKind, detail: str, *, reply: str | None = None) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.reply = reply


@dataclass(frozen=True, slots=True)
class RoleReply:
    """The ``ROLE`` reply. On a replica ``master`` is the primary it follows, ``link_state``
    its replication state (connect, connecting, sync, connected…) and ``offset`` the offset
    ROLE reports (-1 while the link is down, even though INFO still shows the last offset).
    On a primary ``offset`` is ``master_repl_offset``. Anything else (a Sentinel) is UNKNOWN.
    """

    role: Role
    master: Address | None = None
    link_state: str = ""
    offset: int = 0


# ---------------------------------------------------------------------------------------------
# redis-py plumbing


class _HiredisReplyParser(_AsyncHiredisParser):
    """Error replies stay plain ResponseErrors carrying their full text (code included)."""

    EXCEPTION_CLASSES = {}


class _PythonReplyParser(_AsyncRESP2Parser):
    EXCEPTION_CLASSES = {}


_PARSER: Final = _HiredisReplyParser if HIREDIS_AVAILABLE else _PythonReplyParser


class _TLSConnection(Connection):
    """A TCP connection wrapped in the caller's SSLContext (redis-py builds its own otherwise)."""

    def __init__(self, *, ssl_context: ssl_module.SSLContext, **kwargs: Any) -> None:
        self._ssl_context = ssl_context
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())
        arguments["ssl"] = self._ssl_context
        return arguments


@dataclass(frozen=True, slots=True)
class _ErrorReply:
    code: str
    text: str

    @classmethod
    def of(cls, exc: BaseException) -> _ErrorReply:
        text = str(exc)
        return cls(text.split(" ", 1)[0] if text else "ERR", text)


_SERVER_CLOSED = "Connection closed by server"
SERVER_CLOSED: Final = _SERVER_CLOSED  # what a closed probe connection reports (haredis.prober)
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_ERRNO_IN_TEXT = re.compile(r"\[Errno (-?\d+)\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost first (cycle-safe, bounded)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 16 and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def classify(exc: BaseException) -> FailureKind:
    """Map an exception raised while talking to Redis to a FailureKind."""
    for item in _causes(exc):
        if isinstance(item, ConnectionRefusedError):
            return FailureKind.REFUSED
        if isinstance(item, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
            return FailureKind.RESET
        if isinstance(item, asyncio.IncompleteReadError | EOFError):
            return FailureKind.RESET
        if isinstance(item, TimeoutError | RedisTimeoutError):
            return FailureKind.TIMEOUT
        if isinstance(item, OSError) and not isinstance(item, ssl_module.SSLError):
            if item.errno == errno.ECONNREFUSED:
                return FailureKind.REFUSED
            if item.errno in _RESET_ERRNOS:
                return FailureKind.RESET
            if item.errno is None:
                # Python 3.11 reports a host with several addresses (localhost: ::1 and
                # 127.0.0.1) that all refused as one OSError("Multiple exceptions: …").
                codes = _ERRNO_IN_TEXT.findall(str(item))
                if codes and all(int(code) == errno.ECONNREFUSED for code in codes):
                    return FailureKind.REFUSED
        if _SERVER_CLOSED in str(item):
            return FailureKind.RESET
    return FailureKind.ERROR


def _closed_while_idle(exc: BaseException) -> bool:
    """A connection that sat idle may have been closed by the server meanwhile: CLIENT KILL
    TYPE normal, which every promotion and REPLICAOF of haredis (and of Sentinel) sends,
    disconnects the other watchers' links to that instance too, and the first command on
    such a link meets EOF or a reset. The call is then run once more on a new connection
    (within the same deadline): every command haredis sends may be repeated, and one that
    met a closed connection was in all likelihood never read. Without it a watcher's RECONF
    REPLICAOF failed on a link another watcher's REPLICAOF had killed, and the replica it
    had frozen stayed detached (chaos schedule:1014). Anything else (a timeout, an error
    reply, a refused connect) is an answer about the instance and is reported as it is."""
    if not isinstance(exc, Exception) or isinstance(exc, LinkError):
        return False
    return classify(exc) is FailureKind.RESET


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_token(value: str, what: str) -> str:
    """Refuse values that could smuggle extra lines into a Redis config (CR/LF and friends)."""
    if not value or _CONTROL.search(value):
        raise ValueError(f"{what} must be non-empty and free of control characters: {value!r}")
    return value


def _check_host(host: str) -> str:
    _check_token(host, "host")
    if " " in host:
        raise ValueError(f"host must not contain spaces: {host!r}")
    return host


def _as_text(reply: object, what: str) -> str:
    if isinstance(reply, str):
        return reply
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    raise LinkError(FailureKind.ERROR, f"unexpected {what} reply: {reply!r:.200}")


def _as_int(reply: object, what: str) -> int:
    if isinstance(reply, bool):
        raise LinkError(FailureKind.ERROR, f"unexpected {what} reply: {reply!r}")
    if isinstance(reply, int):
        return reply
    try:
        return int(_as_text(reply, what))
    except ValueError:
        raise LinkError(FailureKind.ERROR, f"unexpected {what} reply: {reply!r:.200}") from None


def parse_role(reply: object) -> RoleReply:
    """Convert a raw ROLE reply; raises LinkError(ERROR) when it has an unexpected shape."""
    if isinstance(reply, _ErrorReply):
        raise LinkError(FailureKind.ERROR, f"ROLE failed: {reply.text}", reply=reply.code)
    if not isinstance(reply, list) or not reply:
        raise LinkError(FailureKind.ERROR, f"unexpected ROLE reply: {reply!r:.200}")
    kind = _as_text(reply[0], "ROLE")
    if kind == Role.PRIMARY.value and len(reply) >= 2:
        return RoleReply(Role.PRIMARY, offset=_as_int(reply[1], "ROLE"))
    if kind == Role.REPLICA.value and len(reply) >= 5:
        port = _as_int(reply[2], "ROLE")
        if not 0 < port < 65536:
            raise LinkError(FailureKind.ERROR, f"unexpected ROLE reply: {reply!r:.200}")
        return RoleReply(
            Role.REPLICA,
            master=Address(_as_text(reply[1], "ROLE"), port),
            link_state=_as_text(reply[3], "ROLE"),
            offset=_as_int(reply[4], "ROLE"),
        )
    if kind in (Role.PRIMARY.value, Role.REPLICA.value):
        raise LinkError(FailureKind.ERROR, f"unexpected ROLE reply: {reply!r:.200}")
    return RoleReply(Role.UNKNOWN)


# ---------------------------------------------------------------------------------------------

_Command = tuple[str | int, ...]
# What the watcher asks every instance every INFO period: the keyspace tells a primary that
# restarted empty from one that restarted with data.
_INFO_COMMAND: Final[_Command] = ("INFO", "server", "replication", "keyspace")


@functools.lru_cache(maxsize=4096)
def _pack_one(command: tuple[str | int, ...]) -> bytes:
    """One command as a RESP array of bulk strings. Cached: a watcher sends the same few
    commands (PING, INFO …) to every instance over and over, and redis-py's general packer
    cost more than the rest of a probe."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _pack(commands: Sequence[list[str | int]]) -> bytes:
    # Only short commands are cached (PING, INFO <sections>, ROLE, CLIENT SETNAME …): the
    # cache never holds a CONFIG SET value or a REPLICAOF target.
    return b"".join(
        _pack_one(tuple(command)) if len(command) <= 3 else _pack_one.__wrapped__(tuple(command))
        for command in commands
    )


class RedisLink:
    """A typed, deadline-bound connection to one Redis instance.

    ``username``/``password``: AUTH (ACL user, or the default user when ``username`` is None).
    ``ssl``: connect with TLS using this context (hostname checks follow the context).
    ``connect_timeout``: upper bound for the TCP (and TLS) connect; every call's own
    ``timeout`` bounds the whole call. ``client_name``: set with CLIENT SETNAME after each
    connect (a refusal, e.g. an ACL without ``client|setname``, is ignored; "" skips it).
    ``renamed``: commands renamed with ``rename-command`` (``{"CONFIG": "xyz-config"}``);
    an empty new name means the command is disabled, and calls needing it fail with ERROR.
    """

    def __init__(
        self,
        address: Address,
        *,
        username: str | None,
        password: str | None,
        ssl: ssl_module.SSLContext | None = None,
        connect_timeout: float,
        client_name: str = "haredis",
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        if username is not None and password is None:
            raise ValueError("an ACL username needs a password")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout!r}")
        if client_name and (_CONTROL.search(client_name) or " " in client_name):
            raise ValueError(f"client_name must not contain spaces or control characters: {client_name!r}")
        self._address = address
        self._username = username
        self._password = password
        self._ssl = ssl
        self._connect_timeout = connect_timeout
        self._client_name = client_name
        self._renamed = {name.upper(): new for name, new in (renamed or {}).items()}
        self._conn: Any = None  # redis.asyncio.connection.Connection, see the module docstring
        self._connecting: asyncio.Future[Any] | None = None  # see _connection
        self._lock = asyncio.Lock()
        self._ping_wire: bytes | None = None  # PING as sent (renamed or not), see ping
        self._info_wire: bytes | None = None  # INFO as sent, see info_wire

    @property
    def address(self) -> Address:
        return self._address

    @property
    def connected(self) -> bool:
        """True while the link holds an open connection (it may still be dead on the wire)."""
        return self._conn is not None and bool(self._conn.is_connected)

    def __repr__(self) -> str:
        return f"RedisLink({self._address})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _new_connection(self) -> Any:
        options: dict[str, Any] = {
            "host": self._address.host,
            "port": self._address.port,
            "username": self._username,
            "password": self._password,
            "socket_timeout": None,  # each call's deadline is enforced around it
            "socket_connect_timeout": self._connect_timeout,
            # No retry object: redis-py then makes its own Retry(NoBackoff(), 0) (the same: no
            # retries) instead of deep-copying ours, which cost more than the rest of a connect
            # (a watcher starting with a thousand primaries opens thousands of these at once).
            "retry": None,
            "parser_class": _PARSER,
            "decode_responses": True,
            "encoding_errors": "replace",
            "protocol": 2,
            "client_name": None,  # set by _open, where a refusal is not fatal
            "driver_info": None,  # no CLIENT SETINFO (7.2+; a wasted round trip on 7.0)
            "health_check_interval": 0,
        }
        if self._ssl is not None:
            return _TLSConnection(ssl_context=self._ssl, **options)
        return Connection(**options)

    def _command(self, args: _Command) -> list[str | int]:
        name = str(args[0]).upper()
        new = self._renamed.get(name)
        if new is None:
            return list(args)
        if not new:
            raise LinkError(FailureKind.ERROR, f"{name} is disabled on {self._address} (rename-command)")
        return [new, *args[1:]]

    @staticmethod
    async def _exchange(conn: Any, commands: Sequence[list[str | int]]) -> list[object]:
        """Send the commands in one write, read one reply each; error replies become values."""
        await conn.send_packed_command(_pack(commands), check_health=False)
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(_ErrorReply.of(exc))
        return replies

    async def _connect(self, conn: Any) -> None:
        """Connect (TCP or TLS, AUTH) and name the connection, bounded on its own by twice
        the connect timeout: it may run in the background of the calls that wait for it."""
        async with asyncio.timeout(2 * self._connect_timeout):
            await conn.connect()
            if self._client_name:
                with contextlib.suppress(LinkError):  # CLIENT disabled by rename-command
                    await self._exchange(conn, [self._command(("CLIENT", "SETNAME", self._client_name))])

    async def _open(self) -> Any:
        conn = self._new_connection()
        self._conn = conn
        try:
            await self._connect(conn)
        except BaseException:
            await self._forget(conn)
            raise
        return conn

    async def _connection(self) -> Any:
        """The open connection, or the one being opened. The opening runs as its own task, so
        a call that times out while waiting for it does not abort it: the next call finds the
        connection ready. (Aborting it meant that when many links connect at once, e.g. at
        start-up, each attempt was torn down at its caller's deadline and the next period
        started the same storm again.) A connect that fails is reported to the waiting calls
        and the next call starts a new one."""
        conn = self._conn
        if conn is not None and conn.is_connected and self._connecting is None:
            return conn
        task = self._connecting
        if task is None:
            await self._forget(conn)
            task = self._connecting = asyncio.ensure_future(self._open())
            task.add_done_callback(self._connect_done)
        return await asyncio.shield(task)

    def _connect_done(self, task: asyncio.Future[Any]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled():
            task.exception()  # retrieved: a caller that gave up already must not log it

    async def _forget(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _run(self, timeout: float, commands: Sequence[_Command]) -> list[object]:
        """Run commands (pipelined) within ``timeout`` seconds; map failures to LinkError."""
        wire = [self._command(args) for args in commands]
        try:
            async with asyncio.timeout(timeout), self._lock:
                for attempt in (1, 2):
                    idle = self._conn is not None and self._conn.is_connected and self._connecting is None
                    conn = await self._connection()
                    try:
                        return await self._exchange(conn, wire)
                    except BaseException as exc:
                        # Timeout, cancellation, reset, protocol error: the stream is no
                        # longer in step with our commands, so never reuse it.
                        await self._forget(conn)
                        if attempt == 2 or not idle or not _closed_while_idle(exc):
                            raise
                raise AssertionError("unreachable")
        except LinkError:
            raise
        except Exception as exc:
            raise self._failure(exc, timeout) from (None if isinstance(exc, TimeoutError) else exc)

    def _failure(self, exc: Exception, timeout: float) -> LinkError:
        """What a call that raised `exc` reports: our deadline is a TIMEOUT, anything else is
        classified (refused, reset, protocol...)."""
        if isinstance(exc, TimeoutError):
            return LinkError(FailureKind.TIMEOUT, f"no reply from {self._address} within {timeout:g}s")
        return LinkError(classify(exc), f"{self._address}: {_describe(exc)}")

    async def _ok(self, timeout: float, command: _Command) -> None:
        (reply,) = await self._run(timeout, [command])
        self._raise_if_error(reply, command)

    @staticmethod
    def _raise_if_error(reply: object, command: _Command) -> None:
        if isinstance(reply, _ErrorReply):
            name = " ".join(str(part) for part in command[:2])
            raise LinkError(FailureKind.ERROR, f"{name} failed: {reply.text}", reply=reply.code)
        if isinstance(reply, BaseException):  # an error nested in an EXEC array
            error = _ErrorReply.of(reply)
            name = " ".join(str(part) for part in command[:2])
            raise LinkError(FailureKind.ERROR, f"{name} failed: {error.text}", reply=error.code)

    async def _transaction(self, timeout: float, commands: Sequence[_Command]) -> list[object]:
        """MULTI + commands + EXEC in one round trip; returns EXEC's results, one per command.

        Results may be exceptions (runtime errors of single commands). A command refused at
        queue time (unknown, NOPERM, wrong arity) aborts the transaction: LinkError(ERROR).
        """
        replies = await self._run(timeout, [("MULTI",), *commands, ("EXEC",)])
        self._raise_if_error(replies[0], ("MULTI",))
        for command, queued in zip(commands, replies[1:-1], strict=True):
            self._raise_if_error(queued, command)
        exec_reply = replies[-1]
        self._raise_if_error(exec_reply, ("EXEC",))
        if not isinstance(exec_reply, list) or len(exec_reply) != len(commands):
            raise LinkError(FailureKind.ERROR, f"unexpected EXEC reply: {exec_reply!r:.200}")
        return list(exec_reply)

    # -- probes -------------------------------------------------------------------------------

    async def ping(self, timeout: float) -> str:
        """``PONG``, or the first word of an error reply (LOADING, MASTERDOWN, BUSY, NOAUTH…).

        The watcher's most frequent call (every instance, every ping period), so it skips
        redis-py's command path: the PING goes straight to the connection's stream and its
        one-line reply is read back from it, under the same deadline, lock, connection
        handling and failure mapping as every other call (see _run)."""
        wire = self.ping_wire()
        try:
            async with asyncio.timeout(timeout) as deadline, self._lock:
                conn = await self._connection()
                try:
                    return await self._exchange_ping(conn, wire)
                except asyncio.CancelledError:
                    try:
                        reply = await self._reply_already_in(conn, deadline)
                    except Exception:
                        reply = None  # a malformed line: the timeout stands
                    if reply is not None:
                        return reply
                    await self._forget(conn)  # out of step with our commands: never reuse
                    raise
                except BaseException:
                    await self._forget(conn)  # out of step with our commands: never reuse
                    raise
        except LinkError:
            raise
        except Exception as exc:
            raise self._failure(exc, timeout) from (None if isinstance(exc, TimeoutError) else exc)

    @classmethod
    async def _reply_already_in(cls, conn: Any, deadline: asyncio.Timeout) -> str | None:
        """At the deadline (and only for it: any other cancellation propagates), the whole
        reply may already sit in the stream's buffer: when our own loop stalls, the reply
        and the deadline are handled in the same loop iteration, the deadline last. The
        instance did answer; calling that a timeout would blame it for our stall, and drop
        and reopen every connection at once after one (each a TIME_WAIT socket)."""
        task = asyncio.current_task()
        reader = conn._reader
        if not deadline.expired() or task is None or task.cancelling() != 1 or reader is None:
            return None
        if b"\n" not in reader._buffer:  # asyncio.StreamReader's buffer: no public peek
            return None
        return await cls._read_ping_reply(reader)  # the line is there: does not wait

    @classmethod
    async def _exchange_ping(cls, conn: Any, wire: bytes) -> str:
        """One PING on the connection's own stream. Every exchange on a link reads all of its
        replies, so nothing is left in redis-py's parser between calls and the stream is
        where the next reply starts. PING's reply is one line: ``+PONG`` or ``-CODE text``."""
        reader, writer = conn._reader, conn._writer
        if reader is None or writer is None:
            raise ConnectionResetError(_SERVER_CLOSED)
        writer.write(wire)  # 14 bytes, one in flight per link: no backpressure to wait for
        return await cls._read_ping_reply(reader)

    @classmethod
    async def _read_ping_reply(cls, reader: asyncio.StreamReader) -> str:
        return cls.ping_answer(await reader.readline())

    # -- what haredis.prober needs to probe over a connection of its own -------------------

    def ping_wire(self) -> bytes:
        """PING as sent to this instance (renamed if the link was told so)."""
        if self._ping_wire is None:
            self._ping_wire = _pack_one(tuple(self._command(("PING",))))
        return self._ping_wire

    @staticmethod
    def ping_answer(line: bytes) -> str:
        """The answer in PING's reply line: its text (PONG), or the first word of an error
        reply (LOADING, MASTERDOWN, BUSY, NOAUTH...: answers, not failures). A line cut
        short is the server closing the connection; anything else is not a PING reply."""
        if not line.endswith(b"\r\n"):
            raise ConnectionResetError(_SERVER_CLOSED)  # EOF before a whole reply
        kind, text = line[:1], line[1:-2].decode("utf-8", "replace")
        if kind == b"+":
            return text
        if kind == b"-":
            return text.split(" ", 1)[0] if text else "ERR"  # as _ErrorReply.code
        raise LinkError(FailureKind.ERROR, f"unexpected PING reply: {line!r:.200}")

    async def open_transport(self) -> asyncio.StreamWriter:
        """A new connection of its own, opened as every connection of the link is (TCP or
        TLS, AUTH, CLIENT SETNAME, bounded by twice the connect timeout), and handed over:
        the prober sets its own protocol on the writer's transport. (The writer comes along
        because it closes its transport when it is garbage collected.) Not the link's
        connection: the link's other calls keep theirs."""
        conn = self._new_connection()
        try:
            await self._connect(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        writer: asyncio.StreamWriter = conn._writer
        conn._reader = conn._writer = None  # ours now: redis-py must neither read nor close it
        return writer

    def failure(self, exc: Exception, timeout: float) -> LinkError:
        """What a PING that met `exc` reports, as `ping` reports it (TimeoutError: the
        deadline of `timeout` seconds passed)."""
        return exc if isinstance(exc, LinkError) else self._failure(exc, timeout)

    def answered_in(self, seconds: float) -> None:
        """The prober's report of an answered PING's round trip (metrics.TimedProbeLink
        observes it; a bare link has no use for it)."""

    async def info(self, timeout: float) -> InstanceInfo:
        """``INFO server replication keyspace`` (one round trip) parsed into InstanceInfo.
        The keyspace tells a primary that restarted empty from one that restarted with data."""
        (reply,) = await self._run(timeout, [_INFO_COMMAND])
        self._raise_if_error(reply, ("INFO",))
        return instance_info(_as_text(reply, "INFO"))

    # -- what haredis.prober needs to ask INFO over a connection of its own ----------------

    def info_wire(self) -> bytes:
        """`info`'s command as sent to this instance (renamed if the link was told so)."""
        if self._info_wire is None:
            self._info_wire = _pack_one(tuple(self._command(_INFO_COMMAND)))
        return self._info_wire

    @staticmethod
    def info_answer(frame: bytes) -> InstanceInfo | LinkError:
        """What `info` returns or raises for one whole reply frame, without redis-py: the
        bulk string parsed into InstanceInfo, an error reply as the LinkError `info` raises
        (returned: it answers the request, the connection stays in step). Raises for a
        frame that is no INFO reply (the connection is then dropped)."""
        kind = frame[:1]
        if kind == b"$":
            header_end = frame.find(b"\r\n")
            if header_end > 0 and frame.endswith(b"\r\n"):
                body = frame[header_end + 2 : -2]
                if frame[1:header_end].isdigit() and len(body) == int(frame[1:header_end]):
                    return instance_info(body.decode("utf-8", "replace"))
        elif kind == b"-" and frame.endswith(b"\r\n"):
            text = frame[1:-2].decode("utf-8", "replace")
            error = _ErrorReply(text.split(" ", 1)[0] if text else "ERR", text)
            return LinkError(FailureKind.ERROR, f"INFO failed: {error.text}", reply=error.code)
        raise LinkError(FailureKind.ERROR, f"unexpected INFO reply: {frame!r:.200}")

    async def role(self, timeout: float) -> RoleReply:
        (reply,) = await self._run(timeout, [("ROLE",)])
        return parse_role(reply)

    async def failover_state(self, timeout: float) -> str:
        """``master_failover_state`` from INFO replication: no-failover, waiting-for-sync or
        failover-in-progress (no-failover when the server does not report it)."""
        (reply,) = await self._run(timeout, [("INFO", "replication")])
        self._raise_if_error(reply, ("INFO",))
        return parse_info(_as_text(reply, "INFO")).get("master_failover_state", "no-failover").strip()

    # -- topology changes ---------------------------------------------------------------------

    async def promote(self, timeout: float) -> bool:
        """Make the instance a primary and disconnect its normal and pub/sub clients, atomically
        (MULTI: REPLICAOF NO ONE, CLIENT KILL TYPE normal, CLIENT KILL TYPE pubsub, ROLE, EXEC).

        True only if ROLE, read inside the same transaction, says master. CLIENT KILL skips
        the calling connection, so the link stays connected.
        """
        results = await self._transaction(
            timeout,
            [
                ("REPLICAOF", "NO", "ONE"),
                ("CLIENT", "KILL", "TYPE", "normal"),
                ("CLIENT", "KILL", "TYPE", "pubsub"),
                ("ROLE",),
            ],
        )
        role_reply = results[3]
        if isinstance(role_reply, BaseException):
            return False
        return parse_role(role_reply).role is Role.PRIMARY

    async def replicaof(self, target: Address, timeout: float) -> None:
        """Repoint the instance to ``target`` and disconnect its normal and pub/sub clients,
        in one transaction. Raises LinkError(ERROR) if Redis refuses the REPLICAOF."""
        command: _Command = ("REPLICAOF", _check_host(target.host), target.port)
        results = await self._transaction(
            timeout,
            [command, ("CLIENT", "KILL", "TYPE", "normal"), ("CLIENT", "KILL", "TYPE", "pubsub")],
        )
        self._raise_if_error(results[0], command)

    async def freeze(
        self, freeze_target: Address, timeout: float
    ) -> tuple[InstanceInfo, InstanceInfo | None]:
        """Detach a replica from its primary for a failover's selection: INFO, then (only if
        it reports role slave) MULTI: REPLICAOF freeze_target, INFO, EXEC. Returns both INFOs
        (the second is None when the instance was not a replica and was left alone).

        Nothing listens at freeze_target, so the replica stops receiving, applying and
        acknowledging its old primary's writes and keeps its replid and offset: the second
        INFO's offset is final, and a later REPLICAOF of the new primary resyncs partially.
        The first INFO tells when it last heard from the old primary.
        """
        before = await self.info(timeout)
        if before.role is not Role.REPLICA:
            return before, None
        command: _Command = ("REPLICAOF", _check_host(freeze_target.host), freeze_target.port)
        info_command: _Command = _INFO_COMMAND
        results = await self._transaction(timeout, [command, info_command])
        self._raise_if_error(results[0], command)
        self._raise_if_error(results[1], info_command)
        return before, instance_info(_as_text(results[1], "INFO"))

    async def reattach(self, target: Address, timeout: float) -> bool:
        """End a freeze: ``REPLICAOF target``, but only if the instance is still detached (a
        replica following nothing); True if it was. An attempt that aborts late (its leader
        was stopped, then superseded) must not undo what a newer leader did since: repoint a
        replica it moved to the new primary, or demote the new primary itself (sim seed 380)."""
        info = await self.info(timeout)
        if info.role is not Role.REPLICA or info.master is not None:
            return False
        await self._ok(timeout, ("REPLICAOF", _check_host(target.host), target.port))
        return True

    async def failover_to(
        self, target: Address, timeout_ms: int, force: bool = False, *, timeout: float
    ) -> None:
        """Start a coordinated switchover: ``FAILOVER TO host port [FORCE] TIMEOUT ms``.

        Redis answers OK at once and works in the background (see failover_state). Without
        FORCE no acknowledged write is lost: on timeout the primary aborts and stays primary.
        """
        if timeout_ms <= 0:
            raise ValueError(f"timeout_ms must be positive, got {timeout_ms!r}")
        command: _Command = ("FAILOVER", "TO", _check_host(target.host), target.port)
        if force:
            command += ("FORCE",)
        await self._ok(timeout, (*command, "TIMEOUT", timeout_ms))

    async def failover_abort(self, timeout: float) -> None:
        """``FAILOVER ABORT`` (safe while waiting-for-sync; see reference/safety.md)."""
        await self._ok(timeout, ("FAILOVER", "ABORT"))

    async def client_pause_write(self, ms: int, timeout: float) -> None:
        """``CLIENT PAUSE ms WRITE``: block writes (replication keeps flowing)."""
        if ms <= 0:
            raise ValueError(f"ms must be positive, got {ms!r}")
        await self._ok(timeout, ("CLIENT", "PAUSE", ms, "WRITE"))

    async def client_unpause(self, timeout: float) -> None:
        await self._ok(timeout, ("CLIENT", "UNPAUSE"))

    async def client_kill_normal_and_pubsub(self, timeout: float) -> int:
        """Disconnect every normal and pub/sub client except this link; returns how many."""
        commands: list[_Command] = [
            ("CLIENT", "KILL", "TYPE", "normal"),
            ("CLIENT", "KILL", "TYPE", "pubsub"),
        ]
        killed = 0
        for command, reply in zip(commands, await self._run(timeout, commands), strict=True):
            self._raise_if_error(reply, command)
            killed += _as_int(reply, "CLIENT KILL")
        return killed

    # -- configuration ------------------------------------------------------------------------

    async def config_set(self, name: str, value: str, timeout: float) -> None:
        await self._ok(timeout, ("CONFIG", "SET", _check_token(name, "name"), _check_token_or_empty(value)))

    async def config_set_many(self, settings: dict[str, str], timeout: float) -> None:
        """One ``CONFIG SET name value [name value ...]`` (Redis 7): all or nothing."""
        if not settings:
            raise ValueError("no settings given")
        command: list[str | int] = ["CONFIG", "SET"]
        for name, value in settings.items():
            command += [_check_token(name, "name"), _check_token_or_empty(value)]
        await self._ok(timeout, tuple(command))

    async def config_rewrite(self, timeout: float) -> None:
        await self._ok(timeout, ("CONFIG", "REWRITE"))

    async def config_get(self, name: str, timeout: float) -> str | None:
        """The value of one parameter, None if the server does not know it."""
        command: _Command = ("CONFIG", "GET", _check_token(name, "name"))
        (reply,) = await self._run(timeout, [command])
        self._raise_if_error(reply, command)
        if not isinstance(reply, list) or len(reply) % 2:
            raise LinkError(FailureKind.ERROR, f"unexpected CONFIG GET reply: {reply!r:.200}")
        pairs = [
            (_as_text(reply[i], "CONFIG GET"), _as_text(reply[i + 1], "CONFIG GET"))
            for i in range(0, len(reply), 2)
        ]
        for key, value in pairs:
            if key.lower() == name.lower():
                return value
        return pairs[0][1] if len(pairs) == 1 else None

    # -- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect()


def _check_token_or_empty(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"value must be free of control characters: {value!r}")
    return value
