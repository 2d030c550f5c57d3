"""The watcher's RESP port: an asyncio server speaking RESP2/RESP3 to clients, the CLI and peers.

The server answers the connection-level commands itself, the way Redis does (same reply
shapes, same error texts):

    PING [msg]   ECHO msg   QUIT   RESET   AUTH [user] pass
    HELLO [protover [AUTH user pass] [SETNAME name]]
    CLIENT SETNAME|GETNAME|SETINFO|ID|INFO|HELP
    SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE

and routes every other command to a pluggable *dispatcher*: a mapping from the upper-case
command name to a handler ``(conn, args) -> Reply`` (sync or async), optionally wrapped in a
`Command` that declares its arity. The mapping is read on every command, so a dict can be
filled in after the server has started. A handler may raise `CommandError` to answer with an
error; any other exception is logged and answered with ``ERR internal error``.

Order of checks for each command (as in Redis's processCommand): unknown command, arity,
authentication, then the RESP2 subscribed-mode restriction.

Robustness:

- Frame limits come from `RespParser`; a protocol error is answered with ``-ERR Protocol
  error: …`` and closes that connection only.
- Idle connections are closed after `idle_timeout` seconds without input (0 disables it);
  subscribers are exempt, like Redis's ``timeout`` for pub/sub clients.
- `max_clients`: a connection beyond it gets ``-ERR max number of clients reached`` and is
  closed.
- Output is bounded. Replies to commands: after each batch the server waits for the transport's
  write buffer to drain below its high-water mark (at most `drain_timeout`, then the client
  is dropped) before reading more, so a client that sends but never reads stops being read.
  Pub/sub messages are pushed without waiting; a subscriber whose backlog exceeds
  `pubsub_hard_limit`, or stays above `pubsub_soft_limit` for `pubsub_soft_seconds`, is
  disconnected (Redis's ``client-output-buffer-limit pubsub``).
- Subscriptions are bounded per client (Redis has no limit): at most `max_subscriptions`
  channels and patterns together, whose names total at most `max_subscription_bytes`; the
  name that would exceed either gets ``-ERR max subscriptions per client reached …`` and the
  rest of that command is ignored. Every distinct name is kept in memory and every pattern is
  matched on every publish, so without a cap one client could hold any amount of memory and
  slow down every event. Sentinel clients subscribe to a handful of channels, or ``*``.
- One connection's failure (a bug, a reset) is logged and never touches the others.
- ``POST`` and ``Host:`` as a command close the connection at once (Redis's guard against
  cross-protocol scripting from browsers).

`Connection` records what Redis keeps per client: the protocol version, the authenticated
flag, the name, the id and the subscriptions.

Accounting for INFO (`census()`): the counters of `ServerStats` under Redis's meanings (bytes
read and handed to the transport, read and write calls, error replies); Redis's
``instantaneous_*`` rates, sampled every 100 ms and averaged over the last 16 samples by a
background task; and the largest unparsed input and unsent output of any client over the last
8 seconds (Redis's ``client_recent_max_*_buffer``, but in pending bytes: there are no
preallocated buffers here).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import itertools
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from haredis.resp import (
    NULL,
    OK,
    Array,
    Bulk,
    Error,
    Integer,
    Map,
    Null,
    ProtocolError,
    Push,
    Reply,
    RespParser,
    SimpleString,
    Verbatim,
    encode,
    parse_int64,
)

__all__ = [
    "Command",
    "CommandError",
    "Connection",
    "Dispatcher",
    "Handler",
    "RespServer",
    "ServerCensus",
    "ServerStats",
    "glob_match",
]

log = logging.getLogger(__name__)

Handler = Callable[["Connection", list[bytes]], Reply | Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Command:
    """A dispatcher entry with Redis-style arity: n > 0 exactly n arguments including the
    command name, -n at least n, 0 unchecked. `pubsub` allows it in RESP2 subscribed mode."""

    handler: Handler
    arity: int = 0
    pubsub: bool = False


Dispatcher = Mapping[str, Handler | Command]


class CommandError(Exception):
    """Raised by a handler to answer with an error; `message` starts with the code (ERR …)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class ServerStats:
    connections_received: int = 0
    rejected_connections: int = 0  # max_clients reached
    protocol_errors: int = 0
    commands_processed: int = 0
    handler_errors: int = 0
    idle_closed: int = 0
    slow_clients_dropped: int = 0  # output backlog over a limit
    net_input_bytes: int = 0  # bytes read from clients (after TLS)
    net_output_bytes: int = 0  # bytes handed to client transports (replies and pub/sub)
    reads_processed: int = 0  # socket reads, EOF included (Redis's total_reads_processed)
    writes_processed: int = 0  # transport writes (Redis's total_writes_processed)
    error_replies: int = 0  # error replies sent (Redis's total_error_replies)


class _RateMeter:
    """One of Redis's instantaneous metrics (server.c, trackInstantaneousMetric): the mean of
    a ring of `samples` rates, each the counter's rate over one `period`, so it covers the last
    samples x period seconds (1.6 s).

    Redis samples on a timer. Here nothing wakes up for it: a sample is taken when the server
    is busy anyway (a command ran, INFO asks), at most once per period, and the periods that
    passed without one are filled with the mean rate over the gap, which is what the timer
    would have recorded in total (an idle gap fills the ring with about 0). A 10 Hz timer cost
    an idle daemon 0.15 CPU s/min (bench/scale.py, N=100)."""

    def __init__(self, samples: int = 16, period: float = 0.1) -> None:
        self._rates = [0.0] * samples
        self._next = 0
        self._period = period
        self._last: tuple[float, int] | None = None  # (time, counter) of the previous sample

    def sample(self, counter: int, now: float) -> None:
        if self._last is None:
            self._last = (now, counter)
            return
        elapsed = now - self._last[0]
        if elapsed < self._period:
            return
        rate = (counter - self._last[1]) / elapsed
        for _ in range(min(int(elapsed / self._period), len(self._rates))):
            self._rates[self._next] = rate
            self._next = (self._next + 1) % len(self._rates)
        self._last = (now, counter)

    @property
    def rate(self) -> float:
        return sum(self._rates) / len(self._rates)


class _RecentPeak:
    """The largest value recorded during the last `seconds` whole seconds: one slot per second,
    as Redis keeps its clients' peak buffer sizes (CLIENTS_PEAK_MEM_USAGE_SLOTS)."""

    def __init__(self, seconds: int = 8) -> None:
        self._slots: list[tuple[int, int]] = [(-(2**62), 0)] * seconds  # (second, peak)

    def record(self, value: int, now: float) -> None:
        second = int(now)
        index = second % len(self._slots)
        stamp, peak = self._slots[index]
        self._slots[index] = (second, max(peak, value) if stamp == second else value)

    def peak(self, now: float) -> int:
        second = int(now)
        return max((p for s, p in self._slots if 0 <= second - s < len(self._slots)), default=0)


@dataclass(frozen=True, slots=True)
class ServerCensus:
    """What INFO's clients and stats sections say about the connections, at one instant."""

    connected_clients: int
    max_clients: int
    pubsub_clients: int  # connections subscribed to at least one channel or pattern
    pubsub_channels: int  # channels with at least one subscriber
    pubsub_patterns: int  # distinct patterns with at least one subscriber
    recent_max_input_buffer: int  # bytes, largest over the last 8 s
    recent_max_output_buffer: int  # bytes, largest over the last 8 s
    ops_per_sec: float
    input_kbps: float
    output_kbps: float
    stats: ServerStats  # a copy


# ---------------------------------------------------------------------------------------------
# Redis glob patterns (util.c stringmatchlen) for PSUBSCRIBE.


def _match_class(pattern: bytes, p: int, c: int) -> tuple[bool, int]:
    """Match byte `c` against the class starting at pattern[p] == '['; (matched, width)."""
    n = len(pattern)
    i = p + 1
    negate = i < n and pattern[i] == 0x5E  # ^
    if negate:
        i += 1
    matched = False
    while True:
        if i < n and pattern[i] == 0x5C and n - i >= 2:  # backslash escapes the next byte
            i += 1
            if pattern[i] == c:
                matched = True
        elif i < n and pattern[i] == 0x5D:  # ]
            break
        elif i >= n:  # unterminated: the class runs to the end of the pattern
            i -= 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # a-z
            start, end = sorted((pattern[i], pattern[i + 2]))
            i += 2
            if start <= c <= end:
                matched = True
        elif pattern[i] == c:
            matched = True
        i += 1
    return matched != negate, i + 1 - p


def _match_one(pattern: bytes, p: int, c: int) -> tuple[bool, int]:
    token = pattern[p]
    if token == 0x3F:  # ?
        return True, 1
    if token == 0x5B:  # [
        return _match_class(pattern, p, c)
    if token == 0x5C and p + 1 < len(pattern):
        return pattern[p + 1] == c, 2
    return token == c, 1


def glob_match(pattern: bytes, text: bytes) -> bool:
    """Redis's glob: ``*``, ``?``, ``[abc]``, ``[^a-z]``, backslash escapes; case-sensitive.

    Linear backtracking on the last star (every other token matches exactly one byte), so an
    abusive pattern cannot make it explode. As in Redis, only the empty pattern matches an
    empty channel name.
    """
    if not text:
        return not pattern
    n = len(pattern)
    p = t = 0
    star_p = -1
    star_t = 0
    while t < len(text):
        if p < n and pattern[p] == 0x2A:  # *
            while p < n and pattern[p] == 0x2A:
                p += 1
            if p == n:
                return True
            star_p, star_t = p, t
            continue
        if p < n:
            matched, width = _match_one(pattern, p, text[t])
            if matched:
                p += width
                t += 1
                continue
        if star_p < 0:
            return False
        star_t += 1
        p, t = star_p, star_t
    while p < n and pattern[p] == 0x2A:
        p += 1
    return p == n


# ---------------------------------------------------------------------------------------------
# Connections


def _format_address(info: object) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        host, port = info[0], info[1]
        if isinstance(host, str) and ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    return "?"


def _valid_client_name(name: bytes) -> bool:
    """Redis accepts only printable ASCII without spaces (``!`` to ``~``)."""
    return all(0x21 <= byte <= 0x7E for byte in name)


class Connection:
    """One client connection and its Redis-like state."""

    def __init__(
        self,
        server: RespServer,
        client_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: RespParser,
        now: float,
    ) -> None:
        self.server = server
        self.id = client_id
        self.protocol = 2
        self.authenticated = server.password is None
        self.name = ""  # "" = no name (CLIENT GETNAME answers null)
        self.lib_name = ""
        self.lib_ver = ""
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        self.peer = _format_address(writer.get_extra_info("peername"))
        self.local = _format_address(writer.get_extra_info("sockname"))
        self.created_at = now
        self.last_interaction = now
        self.last_command = ""
        self._reader = reader
        self._writer = writer
        self._parser = parser
        self._close_after_reply = False
        self._busy = False
        self._soft_limit_since: float | None = None
        self._subscription_bytes = 0  # total length of the names in channels and patterns
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection id={self.id} peer={self.peer} name={self.name!r}>"

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns)

    @property
    def closed(self) -> bool:
        return self._writer.transport.is_closing()

    @property
    def output_buffer_size(self) -> int:
        return self._writer.transport.get_write_buffer_size()

    def close_after_reply(self) -> None:
        """Close the connection once the reply to the current command has been written."""
        self._close_after_reply = True

    def abort(self) -> None:
        """Drop the connection now, discarding anything not yet sent."""
        self._writer.transport.abort()

    def _set_authenticated(self, value: bool) -> None:
        self.authenticated = value
        self._parser.authenticated = value

    def _write(self, data: bytes) -> None:
        if not self.closed:
            self._writer.write(data)
            stats = self.server.stats
            stats.writes_processed += 1
            stats.net_output_bytes += len(data)

    def _info_line(self, now: float) -> str:
        flags = "P" if self.subscribed else "N"
        return (
            f"id={self.id} addr={self.peer} laddr={self.local} name={self.name} "
            f"age={int(now - self.created_at)} idle={int(now - self.last_interaction)} flags={flags} "
            f"db=0 sub={len(self.channels)} psub={len(self.patterns)} ssub=0 multi=-1 "
            f"omem={self.output_buffer_size} cmd={self.last_command or 'NULL'} user=default "
            f"redir=-1 resp={self.protocol} lib-name={self.lib_name} lib-ver={self.lib_ver}\n"
        )


# ---------------------------------------------------------------------------------------------
# Built-in commands


@dataclass(frozen=True, slots=True)
class _Builtin:
    fullname: str  # lower case, as Redis prints it in errors ("client|setname")
    arity: int
    run: Callable[[RespServer, Connection, list[bytes]], list[Reply]]
    no_auth: bool = False
    pubsub: bool = False


_NOAUTH: Final = Error("NOAUTH Authentication required.")
_WRONGPASS: Final = Error("WRONGPASS invalid username-password pair or user is disabled.")
_SUBSCRIBED_ONLY: Final = (
    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
    "are allowed in this context"
)
_HELLO_NOAUTH: Final = Error(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
    "protocol version at the same time"
)
_BAD_NAME: Final = Error("ERR Client names cannot contain spaces, newlines or special characters.")
_CLIENT_HELP: Final = (
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client library name or version.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Prints this help.",
)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _arity_error(fullname: str) -> Error:
    return Error(f"ERR wrong number of arguments for '{fullname}' command")


def _unknown_command(args: list[bytes]) -> Error:
    """Redis's text: the name and the first arguments, quoted, at most 128 bytes of them."""

    def cstr(data: bytes) -> bytes:  # Redis formats with %s: a NUL ends the string
        return data.split(b"\0", 1)[0]

    shown = bytearray()
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + cstr(arg)[: 128 - len(shown)] + b"' "
    name = _text(cstr(args[0])[:128])
    return Error(f"ERR unknown command '{name}', with args beginning with: {_text(bytes(shown))}")


def _cmd_ping(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    if len(args) > 2:
        return [_arity_error("ping")]
    if conn.subscribed and conn.protocol == 2:
        return [Array((Bulk(b"pong"), Bulk(args[1] if len(args) == 2 else b"")))]
    return [Bulk(args[1]) if len(args) == 2 else SimpleString("PONG")]


def _cmd_echo(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return [Bulk(args[1])]


def _cmd_quit(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    conn.close_after_reply()
    return [OK]


def _cmd_reset(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    server._unsubscribe_all(conn)
    conn.protocol = 2
    conn.name = ""
    conn._set_authenticated(server.password is None)
    return [SimpleString("RESET")]


def _cmd_auth(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    if len(args) > 3:
        return [Error("ERR syntax error")]
    if len(args) == 2 and server.password is None:
        return [
            Error(
                "ERR AUTH <password> called without any password configured for the default user. "
                "Are you sure your configuration is correct?"
            )
        ]
    username = args[1] if len(args) == 3 else server.username.encode()
    password = args[-1]
    if not server._check_credentials(username, password):
        return [_WRONGPASS]
    conn._set_authenticated(True)
    return [OK]


def _cmd_hello(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    version = 0
    if len(args) >= 2:
        parsed = parse_int64(args[1])
        if parsed is None:
            return [Error("ERR Protocol version is not an integer or out of range")]
        if parsed not in (2, 3):
            return [Error("NOPROTO unsupported protocol version")]
        version = parsed
    credentials: tuple[bytes, bytes] | None = None
    name: bytes | None = None
    j = 2
    while j < len(args):
        option = args[j].upper()
        more = len(args) - 1 - j
        if option == b"AUTH" and more >= 2:
            credentials = (args[j + 1], args[j + 2])
            j += 3
        elif option == b"SETNAME" and more >= 1:
            name = args[j + 1]
            j += 2
        else:
            return [Error(f"ERR Syntax error in HELLO option '{_text(args[j])}'")]
    if credentials is not None:
        if not server._check_credentials(*credentials):
            return [_WRONGPASS]
        conn._set_authenticated(True)
    if not conn.authenticated:
        return [_HELLO_NOAUTH]
    if name is not None:
        if not _valid_client_name(name):
            return [_BAD_NAME]
        conn.name = name.decode("ascii")
    if version:
        conn.protocol = version
    return [
        Map(
            (
                (Bulk("server"), Bulk(server.server_name)),
                (Bulk("version"), Bulk(server.server_version)),
                (Bulk("proto"), Integer(conn.protocol)),
                (Bulk("id"), Integer(conn.id)),
                (Bulk("mode"), Bulk("sentinel")),
                (Bulk("role"), Bulk("sentinel")),
                (Bulk("modules"), Array(())),
            )
        )
    ]


def _client_setname(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    if not _valid_client_name(args[2]):
        return [_BAD_NAME]
    conn.name = args[2].decode("ascii")
    return [OK]


def _client_getname(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return [Bulk(conn.name) if conn.name else NULL]


def _client_id(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return [Integer(conn.id)]


def _client_info(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return [Verbatim("txt", conn._info_line(server._now()))]


def _client_setinfo(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    attribute = args[2].lower()
    if attribute not in (b"lib-name", b"lib-ver"):
        return [Error(f"ERR Unrecognized option '{_text(args[2])}'")]
    if not _valid_client_name(args[3]):
        return [Error(f"ERR {_text(args[2])} cannot contain spaces, newlines or special characters.")]
    if attribute == b"lib-name":
        conn.lib_name = args[3].decode("ascii")
    else:
        conn.lib_ver = args[3].decode("ascii")
    return [OK]


def _client_help(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return [Array(tuple(SimpleString(line) for line in _CLIENT_HELP))]


def _cmd_subscribe(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return server._subscribe(conn, args[1:], pattern=args[0].upper() == b"PSUBSCRIBE")


def _cmd_unsubscribe(server: RespServer, conn: Connection, args: list[bytes]) -> list[Reply]:
    return server._unsubscribe(conn, args[1:], pattern=args[0].upper() == b"PUNSUBSCRIBE")


_BUILTINS: Final[dict[bytes, _Builtin]] = {
    b"PING": _Builtin("ping", -1, _cmd_ping, pubsub=True),
    b"ECHO": _Builtin("echo", 2, _cmd_echo),
    b"QUIT": _Builtin("quit", -1, _cmd_quit, no_auth=True, pubsub=True),
    b"RESET": _Builtin("reset", 1, _cmd_reset, no_auth=True, pubsub=True),
    b"AUTH": _Builtin("auth", -2, _cmd_auth, no_auth=True),
    b"HELLO": _Builtin("hello", -1, _cmd_hello, no_auth=True),
    b"SUBSCRIBE": _Builtin("subscribe", -2, _cmd_subscribe, pubsub=True),
    b"PSUBSCRIBE": _Builtin("psubscribe", -2, _cmd_subscribe, pubsub=True),
    b"UNSUBSCRIBE": _Builtin("unsubscribe", -1, _cmd_unsubscribe, pubsub=True),
    b"PUNSUBSCRIBE": _Builtin("punsubscribe", -1, _cmd_unsubscribe, pubsub=True),
}
_CLIENT_SUBCOMMANDS: Final[dict[bytes, _Builtin]] = {
    b"SETNAME": _Builtin("client|setname", 3, _client_setname),
    b"GETNAME": _Builtin("client|getname", 2, _client_getname),
    b"ID": _Builtin("client|id", 2, _client_id),
    b"INFO": _Builtin("client|info", 2, _client_info),
    b"SETINFO": _Builtin("client|setinfo", 4, _client_setinfo),
    b"HELP": _Builtin("client|help", 2, _client_help),
}


# ---------------------------------------------------------------------------------------------
# The server


class RespServer:
    """An asyncio RESP server. ``await start()``, then `port` is the bound port.

    `host` may be a list of addresses. `password` turns on ``requirepass``-style auth for
    `username` (Redis's "default" user); it can be changed later with `set_password`.
    """

    def __init__(
        self,
        dispatcher: Dispatcher | None = None,
        host: str | Sequence[str] = "127.0.0.1",
        port: int = 0,
        *,
        password: str | None = None,
        username: str = "default",
        max_clients: int = 10000,
        idle_timeout: float = 300.0,
        ssl: ssl_module.SSLContext | None = None,
        max_bulk: int = 512 * 1024,
        max_array: int = 1024,
        max_inline: int = 64 * 1024,
        max_request: int = 2 * 1024 * 1024,
        write_buffer_high: int = 256 * 1024,
        drain_timeout: float = 30.0,
        pubsub_hard_limit: int = 8 * 1024 * 1024,
        pubsub_soft_limit: int = 2 * 1024 * 1024,
        pubsub_soft_seconds: float = 60.0,
        max_subscriptions: int = 1024,
        max_subscription_bytes: int = 64 * 1024,
        server_name: str = "haredis",
        server_version: str = "0.1.0",
    ) -> None:
        self.dispatcher: Dispatcher = dispatcher if dispatcher is not None else {}
        self.host = host
        self.password = password
        self.username = username
        self.max_clients = max_clients
        self.idle_timeout = idle_timeout
        self.ssl = ssl
        self.write_buffer_high = write_buffer_high
        self.drain_timeout = drain_timeout
        self.pubsub_hard_limit = pubsub_hard_limit
        self.pubsub_soft_limit = pubsub_soft_limit
        self.pubsub_soft_seconds = pubsub_soft_seconds
        self.max_subscriptions = max_subscriptions
        self.max_subscription_bytes = max_subscription_bytes
        self.server_name = server_name
        self.server_version = server_version
        self.stats = ServerStats()
        self._limits = {
            "max_bulk": max_bulk,
            "max_array": max_array,
            "max_inline": max_inline,
            "max_request": max_request,
        }
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._connections: dict[int, Connection] = {}
        self._channels: dict[bytes, set[Connection]] = {}
        self._patterns: dict[bytes, set[Connection]] = {}
        self._closing = False
        self._ops = _RateMeter(period=self.RATE_PERIOD)
        self._input_rate = _RateMeter(period=self.RATE_PERIOD)
        self._output_rate = _RateMeter(period=self.RATE_PERIOD)
        self._input_peak = _RecentPeak()
        self._output_peak = _RecentPeak()
        self._next_sample_at = 0.0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        self._server = await asyncio.start_server(
            self._on_client,
            host=self.host,
            port=self._requested_port,
            ssl=self.ssl,
            reuse_address=True,
            limit=64 * 1024,
        )
        self._sample_rates()
        log.info("resp server listening addresses=%s", ",".join(self.addresses))

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The bound port (the first listening socket's); 0 before start()."""
        for sock in self.sockets:
            return int(sock.getsockname()[1])
        return 0

    @property
    def addresses(self) -> list[str]:
        return [_format_address(sock.getsockname()) for sock in self.sockets]

    @property
    def connections(self) -> Mapping[int, Connection]:
        return self._connections

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, let commands in progress finish for up to `grace` seconds, then
        close every connection."""
        if self._server is None or self._closing:
            return
        self._closing = True
        self._server.close()
        for conn in list(self._connections.values()):
            if not conn._busy:
                conn._writer.close()  # the read in progress sees EOF; unsent output is flushed
        tasks = [conn._task for conn in self._connections.values() if conn._task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(grace, 0.0))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for conn in list(self._connections.values()):
            conn.abort()
        await self._server.wait_closed()
        log.info("resp server closed")

    def set_password(self, password: str | None) -> None:
        """Change the password for new authentications (existing sessions stay logged in)."""
        self.password = password

    def _check_credentials(self, username: bytes, password: bytes) -> bool:
        if not hmac.compare_digest(username, self.username.encode()):
            return False
        if self.password is None:  # like Redis's "nopass" default user
            return True
        return hmac.compare_digest(password, self.password.encode())

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- accounting (INFO) ------------------------------------------------------------------

    RATE_PERIOD: Final = 0.1  # seconds per sample of the instantaneous metrics, as Redis

    def _sample_rates(self) -> None:
        """Sample the instantaneous metrics if a period has passed (see _RateMeter): called
        after each command and by census(), never by a timer."""
        now = self._now()
        if now < self._next_sample_at:
            return
        self._next_sample_at = now + self.RATE_PERIOD
        self._ops.sample(self.stats.commands_processed, now)
        self._input_rate.sample(self.stats.net_input_bytes, now)
        self._output_rate.sample(self.stats.net_output_bytes, now)

    def census(self) -> ServerCensus:
        self._sample_rates()
        now = self._now()
        return ServerCensus(
            connected_clients=len(self._connections),
            max_clients=self.max_clients,
            pubsub_clients=sum(1 for conn in self._connections.values() if conn.subscribed),
            pubsub_channels=len(self._channels),
            pubsub_patterns=len(self._patterns),
            recent_max_input_buffer=self._input_peak.peak(now),
            recent_max_output_buffer=self._output_peak.peak(now),
            ops_per_sec=self._ops.rate,
            input_kbps=self._input_rate.rate / 1024,
            output_kbps=self._output_rate.rate / 1024,
            stats=replace(self.stats),
        )

    # -- pub/sub --------------------------------------------------------------------------

    def publish(self, channel: bytes | str, message: bytes | str) -> int:
        """Deliver to every subscriber of `channel` and every matching pattern; returns the
        number of deliveries (a client subscribed twice counts twice, as in Redis)."""
        channel_b = channel.encode() if isinstance(channel, str) else channel
        message_b = message.encode() if isinstance(message, str) else message
        delivered = 0
        subscribers = self._channels.get(channel_b)
        if subscribers:
            items: tuple[Reply, ...] = (Bulk(b"message"), Bulk(channel_b), Bulk(message_b))
            frames = {2: encode(Array(items), 2), 3: encode(Push(items), 3)}
            for conn in list(subscribers):
                delivered += self._deliver(conn, frames[conn.protocol])
        for pattern, conns in list(self._patterns.items()):
            if not glob_match(pattern, channel_b):
                continue
            pitems: tuple[Reply, ...] = (Bulk(b"pmessage"), Bulk(pattern), Bulk(channel_b), Bulk(message_b))
            frames = {2: encode(Array(pitems), 2), 3: encode(Push(pitems), 3)}
            for conn in list(conns):
                delivered += self._deliver(conn, frames[conn.protocol])
        return delivered

    def subscriber_count(self, channel: bytes | str) -> int:
        channel_b = channel.encode() if isinstance(channel, str) else channel
        return len(self._channels.get(channel_b, ()))

    def _deliver(self, conn: Connection, frame: bytes) -> int:
        if conn.closed:
            return 0
        conn._write(frame)
        backlog = conn.output_buffer_size
        now = self._now()
        self._output_peak.record(backlog, now)
        if backlog > self.pubsub_hard_limit:
            self._drop_slow(conn, f"backlog {backlog} bytes over the hard limit")
            return 1
        if backlog > self.pubsub_soft_limit:
            if conn._soft_limit_since is None:
                conn._soft_limit_since = now
            elif now - conn._soft_limit_since > self.pubsub_soft_seconds:
                self._drop_slow(conn, f"backlog {backlog} bytes over the soft limit for too long")
        else:
            conn._soft_limit_since = None
        return 1

    def _drop_slow(self, conn: Connection, why: str) -> None:
        log.warning("closing slow subscriber id=%d addr=%s reason=%r", conn.id, conn.peer, why)
        self.stats.slow_clients_dropped += 1
        self._unsubscribe_all(conn)
        conn.abort()

    def _subscribe(self, conn: Connection, names: list[bytes], *, pattern: bool) -> list[Reply]:
        index = self._patterns if pattern else self._channels
        mine = conn.patterns if pattern else conn.channels
        kind = Bulk(b"psubscribe" if pattern else b"subscribe")
        replies: list[Reply] = []
        for name in names:
            if name not in mine:
                if (
                    len(conn.channels) + len(conn.patterns) >= self.max_subscriptions
                    or conn._subscription_bytes + len(name) > self.max_subscription_bytes
                ):
                    replies.append(
                        Error(
                            f"ERR max subscriptions per client reached ({self.max_subscriptions} "
                            f"channels and patterns, {self.max_subscription_bytes} bytes of names)"
                        )
                    )
                    break
                mine.add(name)
                conn._subscription_bytes += len(name)
                index.setdefault(name, set()).add(conn)
            replies.append(self._pubsub_reply(conn, kind, Bulk(name)))
        return replies

    def _unsubscribe(self, conn: Connection, names: list[bytes], *, pattern: bool) -> list[Reply]:
        mine = conn.patterns if pattern else conn.channels
        kind = Bulk(b"punsubscribe" if pattern else b"unsubscribe")
        targets = names or sorted(mine)
        if not targets:
            return [self._pubsub_reply(conn, kind, NULL)]
        replies: list[Reply] = []
        for name in targets:
            self._forget(conn, name, pattern=pattern)
            replies.append(self._pubsub_reply(conn, kind, Bulk(name)))
        return replies

    def _pubsub_reply(self, conn: Connection, kind: Bulk, name: Bulk | Null) -> Reply:
        items = (kind, name, Integer(len(conn.channels) + len(conn.patterns)))
        return Push(items) if conn.protocol == 3 else Array(items)

    def _forget(self, conn: Connection, name: bytes, *, pattern: bool) -> None:
        index = self._patterns if pattern else self._channels
        mine = conn.patterns if pattern else conn.channels
        if name in mine:
            mine.discard(name)
            conn._subscription_bytes -= len(name)
        subscribers = index.get(name)
        if subscribers is not None:
            subscribers.discard(conn)
            if not subscribers:
                del index[name]

    def _unsubscribe_all(self, conn: Connection) -> None:
        for name in list(conn.channels):
            self._forget(conn, name, pattern=False)
        for name in list(conn.patterns):
            self._forget(conn, name, pattern=True)

    # -- connections ----------------------------------------------------------------------

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine) so the task is ours: close() can cancel and await
        # it without asyncio's streams machinery reporting the cancellation as an error.
        self.stats.connections_received += 1
        if self._closing or len(self._connections) >= self.max_clients:
            self.stats.rejected_connections += 1
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(b"-ERR max number of clients reached\r\n")
                writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        writer.transport.set_write_buffer_limits(high=self.write_buffer_high)
        parser = RespParser(**self._limits)
        conn = Connection(self, next(self._ids), reader, writer, parser, self._now())
        conn._set_authenticated(self.password is None)
        self._connections[conn.id] = conn
        conn._task = asyncio.get_running_loop().create_task(self._serve(conn), name=f"resp-client-{conn.id}")

    async def _serve(self, conn: Connection) -> None:
        try:
            await self._serve_loop(conn)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, TimeoutError, ssl_module.SSLError) as exc:
            log.debug("client connection ended id=%d addr=%s error=%r", conn.id, conn.peer, exc)
        except Exception:
            log.exception("unexpected error on client connection id=%d addr=%s", conn.id, conn.peer)
        finally:
            self._unsubscribe_all(conn)
            self._connections.pop(conn.id, None)
            await self._finish(conn)

    async def _finish(self, conn: Connection) -> None:
        writer = conn._writer
        if writer.transport.is_closing() and writer.transport.get_write_buffer_size() == 0:
            writer.transport.abort()  # nothing left to flush
            return
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl_module.SSLError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise

    async def _serve_loop(self, conn: Connection) -> None:
        reader = conn._reader
        parser = conn._parser
        while not self._closing:
            timeout = None if conn.subscribed or self.idle_timeout <= 0 else self.idle_timeout
            try:
                async with asyncio.timeout(timeout):
                    data = await reader.read(64 * 1024)
            except TimeoutError:
                log.debug("closing idle client id=%d addr=%s", conn.id, conn.peer)
                self.stats.idle_closed += 1
                return
            self.stats.reads_processed += 1
            if not data:
                return
            self.stats.net_input_bytes += len(data)
            conn._busy = True
            conn.last_interaction = self._now()
            parser.feed(data)
            self._input_peak.record(parser.buffered, conn.last_interaction)
            out: list[bytes] = []
            try:
                while not conn._close_after_reply:
                    try:
                        args = parser.next_command()
                    except ProtocolError as exc:
                        self.stats.protocol_errors += 1
                        log.info("protocol error from client id=%d addr=%s: %s", conn.id, conn.peer, exc)
                        self.stats.error_replies += 1
                        out.append(encode(Error(f"ERR {exc}"), conn.protocol))
                        conn.close_after_reply()
                        break
                    if args is None:
                        break
                    if self._is_attack(args):
                        log.warning("possible cross-protocol attack from addr=%s, closing", conn.peer)
                        conn.abort()
                        return
                    out.append(await self._execute(conn, args))
                    if sum(map(len, out)) >= self.write_buffer_high:
                        await self._flush(conn, out)
                await self._flush(conn, out)
            finally:
                conn._busy = False
            if conn._close_after_reply or conn.closed:
                return

    async def _flush(self, conn: Connection, out: list[bytes]) -> None:
        if out:
            conn._write(b"".join(out))
            out.clear()
        if conn.closed:
            return
        self._output_peak.record(conn.output_buffer_size, self._now())
        try:
            async with asyncio.timeout(self.drain_timeout):
                await conn._writer.drain()
        except TimeoutError:
            log.warning("closing client that does not read its replies id=%d addr=%s", conn.id, conn.peer)
            self.stats.slow_clients_dropped += 1
            conn.abort()

    @staticmethod
    def _is_attack(args: list[bytes]) -> bool:
        name = args[0].lower()
        return name == b"post" or name == b"host:"

    def _resolve(self, conn: Connection, args: list[bytes]) -> _Builtin | Command | Error:
        name = args[0].upper()
        builtin = _BUILTINS.get(name)
        if builtin is None and name == b"CLIENT":
            if len(args) < 2:
                return _arity_error("client")
            builtin = _CLIENT_SUBCOMMANDS.get(args[1].upper())
            if builtin is None:
                return Error(f"ERR unknown subcommand '{_text(args[1])}'. Try CLIENT HELP.")
        if builtin is not None:
            return builtin
        entry = self.dispatcher.get(name.decode("latin-1"))
        if entry is None:
            return _unknown_command(args)
        return entry if isinstance(entry, Command) else Command(entry)

    async def _execute(self, conn: Connection, args: list[bytes]) -> bytes:
        spec = self._resolve(conn, args)
        replies: list[Reply]
        if isinstance(spec, Error):
            replies = [spec]
        else:
            fullname = spec.fullname if isinstance(spec, _Builtin) else args[0].decode("latin-1").lower()
            conn.last_command = fullname
            arity = spec.arity
            if (arity > 0 and len(args) != arity) or (arity < 0 and len(args) < -arity):
                replies = [_arity_error(fullname)]
            elif not conn.authenticated and not (isinstance(spec, _Builtin) and spec.no_auth):
                replies = [_NOAUTH]
            elif conn.protocol == 2 and conn.subscribed and not spec.pubsub:
                replies = [Error(_SUBSCRIBED_ONLY.format(fullname))]
            elif isinstance(spec, _Builtin):
                replies = spec.run(self, conn, args)
                self.stats.commands_processed += 1
            else:
                replies = [await self._call_handler(conn, spec, args)]
                # As Redis counts: commands that ran (not the rejected ones), once they ran.
                self.stats.commands_processed += 1
            self._sample_rates()
        out = []
        for reply in replies:
            if isinstance(reply, Error):
                self.stats.error_replies += 1
            try:
                out.append(encode(reply, conn.protocol))
            except Exception:
                log.exception("cannot encode the reply to %r", args[0][:64])
                self.stats.handler_errors += 1
                out.append(encode(Error("ERR internal error"), conn.protocol))
        return b"".join(out)

    async def _call_handler(self, conn: Connection, command: Command, args: list[bytes]) -> Reply:
        try:
            result = command.handler(conn, args)
            if inspect.isawaitable(result):
                result = await result
        except CommandError as exc:
            return Error(exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.handler_errors += 1
            log.exception("command handler failed command=%r client=%d", args[0][:64], conn.id)
            return Error("ERR internal error")
        return result
