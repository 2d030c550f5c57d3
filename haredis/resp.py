"""Sans-IO RESP2/RESP3: request parsing, a typed reply model, reply encoding and reply parsing.

Nothing here touches a socket or a clock. The server feeds received bytes to a `RespParser`
and asks it for complete commands; it answers with `Reply` values encoded by `encode` for the
connection's protocol version. A client (the peer link, the tests) encodes requests with
`encode_command` and reads replies with `ReplyParser`.

Request parsing follows Redis (networking.c) closely, including its error texts, because
clients and operators recognise them:

- A request starting with ``*`` is a multibulk array of bulk strings; anything else is an
  inline command split like ``sdssplitargs`` (quotes, ``\\xHH`` escapes).
- ``*0`` / ``*-1`` and empty inline lines are skipped silently.
- Limits: a bulk string (``max_bulk``), the element count (``max_array``), an inline line or a
  length line (``max_inline``) and the total size of one command's arguments (``max_request``,
  which Redis does not have: it bounds what a single command can make us buffer). Until the
  connection has authenticated (``authenticated = False``), Redis's tighter limits apply: 10
  elements and 16 KiB per bulk string.
- Stricter than Redis in one place: a bulk string must be followed by CRLF (Redis skips any
  two bytes there, which lets a confused client desynchronise silently).

A `ProtocolError` means the stream cannot be resynchronised: the server replies
``-ERR <message>`` and closes the connection. The parser never raises anything else on any
input, and after `next_command` returns None it holds at most
``max_request + max(max_bulk, max_inline) + 2`` bytes (see `buffered`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

__all__ = [
    "NULL",
    "NULL_ARRAY",
    "OK",
    "Array",
    "Boolean",
    "Bulk",
    "Double",
    "Error",
    "Integer",
    "Map",
    "Null",
    "ProtocolError",
    "Push",
    "Reply",
    "ReplyParser",
    "RespParser",
    "Set",
    "SimpleString",
    "Verbatim",
    "bulk_array",
    "encode",
    "encode_command",
    "parse_int64",
    "split_inline",
]


class ProtocolError(Exception):
    """The byte stream violates the protocol or a limit; the connection must be closed.

    ``str(error)`` is the text Redis uses, e.g. ``Protocol error: invalid bulk length``.
    """


# ---------------------------------------------------------------------------------------------
# Reply model


@dataclass(frozen=True, slots=True)
class SimpleString:
    """``+OK``. CR and LF in `value` are sent as spaces (a status line cannot hold them)."""

    value: str


@dataclass(frozen=True, slots=True)
class Error:
    """``-ERR message``: `message` starts with the error code (``ERR``, ``NOAUTH``, ``WRONGPASS``…)."""

    message: str

    @property
    def code(self) -> str:
        return self.message.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Integer:
    """``:42``; outside the signed 64-bit range: a RESP3 big number, a bulk string in RESP2."""

    value: int


@dataclass(frozen=True, slots=True)
class Bulk:
    """A binary-safe string; `str` values are sent as UTF-8. Parsed replies always hold bytes."""

    value: bytes | str

    def as_bytes(self) -> bytes:
        return _to_bytes(self.value)


@dataclass(frozen=True, slots=True)
class Null:
    """RESP3 ``_``; in RESP2 the null bulk string ``$-1`` or, with kind "array", ``*-1``."""

    kind: Literal["bulk", "array"] = "bulk"


@dataclass(frozen=True, slots=True)
class Double:
    """RESP3 ``,1.5``; a bulk string holding the number in RESP2."""

    value: float


@dataclass(frozen=True, slots=True)
class Boolean:
    """RESP3 ``#t``/``#f``; the integer 1/0 in RESP2."""

    value: bool


@dataclass(frozen=True, slots=True)
class Verbatim:
    """RESP3 verbatim string (``=15\\r\\ntxt:Some string``); a plain bulk string in RESP2."""

    format: str  # three characters: "txt" or "mkd"
    text: bytes | str


@dataclass(frozen=True, slots=True)
class Array:
    items: tuple[Reply, ...]


@dataclass(frozen=True, slots=True)
class Set:
    """RESP3 set (``~``); an array in RESP2."""

    items: tuple[Reply, ...]


@dataclass(frozen=True, slots=True)
class Map:
    """RESP3 map (``%``); a flat array ``[k1, v1, k2, v2, …]`` in RESP2."""

    items: tuple[tuple[Reply, Reply], ...]


@dataclass(frozen=True, slots=True)
class Push:
    """RESP3 out-of-band push (``>``), e.g. a pub/sub message; an array in RESP2."""

    items: tuple[Reply, ...]


Reply = SimpleString | Error | Integer | Bulk | Null | Double | Boolean | Verbatim | Array | Set | Map | Push

OK: Final = SimpleString("OK")
NULL: Final = Null()
NULL_ARRAY: Final = Null("array")


def bulk_array(items: Iterable[bytes | str]) -> Array:
    """An array of bulk strings, the most common aggregate reply."""
    return Array(tuple(Bulk(item) for item in items))


# ---------------------------------------------------------------------------------------------
# Encoding

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_CRLF: Final = b"\r\n"


def _to_bytes(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        # surrogateescape gives back the exact bytes of a string the reply parser decoded.
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def _line(value: str) -> bytes:
    """A status or error line: CR and LF would end the line early, so they become spaces."""
    return _to_bytes(value).replace(b"\r", b" ").replace(b"\n", b" ")


def _format_double(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return repr(value).encode("ascii")


def encode(reply: Reply, protocol: int = 2) -> bytes:
    """The wire form of `reply` for protocol version 2 or 3."""
    if protocol not in (2, 3):
        raise ValueError(f"unsupported protocol version {protocol}")
    out: list[bytes] = []
    _encode(reply, protocol == 3, out)
    return b"".join(out)


def _encode_bulk(data: bytes, out: list[bytes]) -> None:
    out.append(b"$%d\r\n" % len(data))
    out.append(data)
    out.append(_CRLF)


def _encode(reply: Reply, resp3: bool, out: list[bytes]) -> None:
    match reply:
        case SimpleString(value):
            out.append(b"+" + _line(value) + _CRLF)
        case Error(message):
            out.append(b"-" + _line(message) + _CRLF)
        case Bulk(value):
            _encode_bulk(_to_bytes(value), out)
        case Integer(value):
            if _INT64_MIN <= value <= _INT64_MAX:
                out.append(b":%d\r\n" % value)
            elif resp3:
                out.append(b"(%d\r\n" % value)
            else:
                _encode_bulk(b"%d" % value, out)
        case Null(kind):
            if resp3:
                out.append(b"_\r\n")
            else:
                out.append(b"*-1\r\n" if kind == "array" else b"$-1\r\n")
        case Double(value):
            if resp3:
                out.append(b"," + _format_double(value) + _CRLF)
            else:
                _encode_bulk(_format_double(value), out)
        case Boolean(value):
            if resp3:
                out.append(b"#t\r\n" if value else b"#f\r\n")
            else:
                out.append(b":1\r\n" if value else b":0\r\n")
        case Verbatim(fmt, text):
            data = _to_bytes(text)
            if resp3:
                tag = _to_bytes(fmt)
                if len(tag) != 3 or b":" in tag or b"\r" in tag or b"\n" in tag:
                    raise ValueError(f"verbatim format must be three characters, got {fmt!r}")
                out.append(b"=%d\r\n" % (len(data) + 4))
                out.append(tag + b":" + data + _CRLF)
            else:
                _encode_bulk(data, out)
        case Array(items) | Set(items) | Push(items):
            if not resp3:
                prefix = b"*"
            elif isinstance(reply, Set):
                prefix = b"~"
            elif isinstance(reply, Push):
                prefix = b">"
            else:
                prefix = b"*"
            out.append(prefix + b"%d\r\n" % len(items))
            for item in items:
                _encode(item, resp3, out)
        case Map(pairs):
            if resp3:
                out.append(b"%%%d\r\n" % len(pairs))
            else:
                out.append(b"*%d\r\n" % (2 * len(pairs)))
            for key, val in pairs:
                _encode(key, resp3, out)
                _encode(val, resp3, out)
        case _:
            raise TypeError(f"not a RESP reply: {reply!r}")


def encode_command(*args: bytes | str | int) -> bytes:
    """A client request: a multibulk array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = b"%d" % arg if isinstance(arg, int) else _to_bytes(arg)
        _encode_bulk(data, out)
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Request parsing (server side)

_STAR: Final = 0x2A  # *
_DOLLAR: Final = 0x24  # $
_CR: Final = 0x0D
_LF: Final = 0x0A

# Redis's tighter limits for connections that still have to authenticate (networking.c).
_UNAUTH_MAX_ARRAY: Final = 10
_UNAUTH_MAX_BULK: Final = 16384


def parse_int64(text: bytes | bytearray) -> int | None:
    """Redis's string2ll: optional '-', no '+', no spaces, no leading zeros, signed 64 bits."""
    if not text or len(text) > 20:
        return None
    if text == b"0":
        return 0
    digits = text[1:] if text[0] == 0x2D else text
    if not digits or not 0x31 <= digits[0] <= 0x39:
        return None
    for byte in digits:
        if not 0x30 <= byte <= 0x39:
            return None
    value = int(digits)
    if text[0] == 0x2D:
        value = -value
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


_SPACE: Final = frozenset(b" \t\n\v\f\r")  # C isspace()
_TOKEN_END: Final = frozenset(b" \n\r\t")
_ESCAPES: Final = {ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09, ord("b"): 0x08, ord("a"): 0x07}
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command like Redis's sdssplitargs; None on unbalanced quotes.

    Double quotes understand ``\\xHH``, ``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\a``; single quotes
    only ``\\'``. A closing quote must be followed by a space or the end of the line. The line
    is a C string for Redis, so it ends at the first NUL byte.
    """
    line = line.split(b"\0", 1)[0]
    n = len(line)
    args: list[bytes] = []
    i = 0
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        in_double = in_single = False
        current = bytearray()
        while True:
            c = line[i] if i < n else 0
            if in_double:
                if (
                    c == 0x5C
                    and i + 3 < n
                    and line[i + 1] == 0x78
                    and line[i + 2] in _HEX
                    and line[i + 3] in _HEX
                ):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    i += 1
                    break
                elif i >= n:
                    return None
                else:
                    current.append(c)
            elif in_single:
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    i += 1
                    break
                elif i >= n:
                    return None
                else:
                    current.append(c)
            elif i >= n or c in _TOKEN_END:
                break
            elif c == 0x22:
                in_double = True
            elif c == 0x27:
                in_single = True
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


class RespParser:
    """Incremental parser of client requests (multibulk or inline) with hard limits.

    ``feed(data)`` appends bytes; ``next_command()`` returns the next complete command as a
    list of byte strings, or None when more data is needed; it raises `ProtocolError` on a
    violation, after which the parser must be discarded with the connection.
    """

    def __init__(
        self,
        *,
        max_bulk: int = 512 * 1024,
        max_array: int = 1024,
        max_inline: int = 64 * 1024,
        max_request: int = 2 * 1024 * 1024,
    ) -> None:
        if min(max_bulk, max_array, max_inline, max_request) < 1:
            raise ValueError("parser limits must be positive")
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_inline = max_inline
        self.max_request = max_request
        # False until the connection authenticates: Redis's tighter pre-auth limits apply.
        self.authenticated = True
        self._buf = bytearray()
        self._pos = 0
        self._args: list[bytes] = []
        self._args_size = 0
        self._remaining = 0  # elements still expected in the current multibulk request
        self._bulk_len = -1  # length of the bulk string being read, -1 while expecting '$'
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for requests not yet returned (unparsed input plus collected arguments)."""
        return len(self._buf) - self._pos + self._args_size

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            return  # the stream is dead; keep nothing
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_command(self) -> list[bytes] | None:
        if self._failed is not None:
            raise self._failed
        try:
            return self._next()
        except ProtocolError as exc:
            self._failed = exc
            # Nothing more will be parsed: do not keep the attacker's bytes around.
            self._buf = bytearray()
            self._pos = 0
            self._args = []
            self._args_size = 0
            raise

    def _next(self) -> list[bytes] | None:
        buf = self._buf
        while True:
            if self._remaining == 0:
                if self._pos >= len(buf):
                    return None
                if buf[self._pos] != _STAR:
                    command = self._inline()
                    if command is None:
                        return None
                    if command:
                        return command
                    continue
                line = self._header_line("Protocol error: too big mbulk count string")
                if line is None:
                    return None
                count = parse_int64(line[1:])
                if count is None or count > self.max_array:
                    raise ProtocolError("Protocol error: invalid multibulk length")
                if not self.authenticated and count > _UNAUTH_MAX_ARRAY:
                    raise ProtocolError("Protocol error: unauthenticated multibulk length")
                if count <= 0:
                    continue
                self._remaining = count
                self._args = []
                self._args_size = 0
                self._bulk_len = -1
            while self._remaining > 0:
                if self._bulk_len < 0:
                    if self._pos >= len(buf):
                        return None
                    first = buf[self._pos]
                    if first != _DOLLAR:
                        got = bytes([first]).decode("utf-8", "surrogateescape")
                        raise ProtocolError(f"Protocol error: expected '$', got '{got}'")
                    line = self._header_line("Protocol error: too big bulk count string")
                    if line is None:
                        return None
                    size = parse_int64(line[1:])
                    if size is None or size < 0 or size > self.max_bulk:
                        raise ProtocolError("Protocol error: invalid bulk length")
                    if not self.authenticated and size > _UNAUTH_MAX_BULK:
                        raise ProtocolError("Protocol error: unauthenticated bulk length")
                    if self._args_size + size > self.max_request:
                        raise ProtocolError("Protocol error: too big request")
                    self._bulk_len = size
                end = self._pos + self._bulk_len
                if len(buf) < end + 2:
                    return None
                if buf[end] != _CR or buf[end + 1] != _LF:
                    raise ProtocolError("Protocol error: bulk string not terminated by CRLF")
                self._args.append(bytes(buf[self._pos : end]))
                self._args_size += self._bulk_len
                self._pos = end + 2
                self._bulk_len = -1
                self._remaining -= 1
            command = self._args
            self._args = []
            self._args_size = 0
            return command

    def _header_line(self, too_big: str) -> bytes | None:
        """A ``*N`` or ``$N`` line without its CRLF, or None if incomplete.

        Like Redis, the line ends at the first CR; the byte after it must be LF (Redis does
        not check it; a stray CR there is malformed anyway and the number check rejects it).
        """
        buf = self._buf
        limit = self._pos + self.max_inline
        cr = buf.find(b"\r", self._pos, limit + 1)
        if cr < 0:
            if len(buf) > limit:
                raise ProtocolError(too_big)
            return None
        if cr + 1 >= len(buf):
            return None
        line = bytes(buf[self._pos : cr])
        if buf[cr + 1] != _LF:
            line += b"\r"  # makes the number invalid, so the caller reports it like Redis
        self._pos = cr + 2
        return line

    def _inline(self) -> list[bytes] | None:
        buf = self._buf
        limit = self._pos + self.max_inline
        newline = buf.find(b"\n", self._pos, limit + 1)
        if newline < 0:
            if len(buf) > limit:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        end = newline
        if end > self._pos and buf[end - 1] == _CR:
            end -= 1
        line = bytes(buf[self._pos : end])
        self._pos = newline + 1
        args = split_inline(line)
        if args is None:
            raise ProtocolError("Protocol error: unbalanced quotes in request")
        if len(args) > self.max_array:
            raise ProtocolError("Protocol error: invalid multibulk length")
        return args


# ---------------------------------------------------------------------------------------------
# Reply parsing (client side)


class _Incomplete(Exception):
    pass


_INTEGER_RE: Final = re.compile(rb"-?[0-9]+")
_DOUBLE_RE: Final = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?inf|nan")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class ReplyParser:
    """Incremental parser of RESP2 and RESP3 replies (what a server sends).

    ``next_reply()`` returns the next complete reply or None when more data is needed; a
    null reply is the `Null` value, never None. RESP3 attributes are read and dropped;
    streamed (chunked) aggregates are refused. Bulk strings come back as bytes, simple
    strings and errors as str (undecodable bytes kept with surrogateescape).
    """

    def __init__(
        self,
        *,
        max_bulk: int = 64 * 1024 * 1024,
        max_array: int = 1024 * 1024,
        max_depth: int = 32,
        max_line: int = 64 * 1024,
        max_buffer: int = 128 * 1024 * 1024,
    ) -> None:
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_depth = max_depth
        self.max_line = max_line
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._pos = 0
        self._failed: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._failed is not None:
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_reply(self) -> Reply | None:
        if self._failed is not None:
            raise self._failed
        if self._pos >= len(self._buf):
            return None
        start = self._pos
        try:
            reply = self._parse(0)
        except _Incomplete:
            self._pos = start
            if len(self._buf) - start > self.max_buffer:
                self._fail(ProtocolError("Protocol error: reply too large"))
            return None
        except ProtocolError as exc:
            self._fail(exc)
        except (ValueError, RecursionError) as exc:  # int() digit limit; defensive
            self._fail(ProtocolError(f"Protocol error: {exc}"))
        return reply

    def _fail(self, exc: ProtocolError) -> NoReturn:
        self._failed = exc
        self._buf = bytearray()
        self._pos = 0
        raise exc

    def _read_line(self) -> bytes:
        buf = self._buf
        end = buf.find(b"\r\n", self._pos, self._pos + self.max_line + 2)
        if end < 0:
            if len(buf) - self._pos > self.max_line + 1:
                raise ProtocolError("Protocol error: line too long")
            raise _Incomplete
        line = bytes(buf[self._pos : end])
        self._pos = end + 2
        return line

    def _read_exact(self, size: int) -> bytes:
        end = self._pos + size
        if len(self._buf) < end + 2:
            raise _Incomplete
        if self._buf[end : end + 2] != _CRLF:
            raise ProtocolError("Protocol error: bulk string not terminated by CRLF")
        data = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return data

    def _int(self, line: bytes, what: str) -> int:
        if not _INTEGER_RE.fullmatch(line) or len(line) > 20:
            raise ProtocolError(f"Protocol error: invalid {what}")
        return int(line)

    def _count(self, line: bytes, depth: int) -> int:
        count = self._int(line, "aggregate length")
        if count < 0 or count > self.max_array:
            raise ProtocolError("Protocol error: invalid aggregate length")
        if depth >= self.max_depth:
            raise ProtocolError("Protocol error: replies nested too deeply")
        return count

    def _parse(self, depth: int) -> Reply:
        if self._pos >= len(self._buf):
            raise _Incomplete
        kind = self._buf[self._pos]
        self._pos += 1
        line = self._read_line()
        match kind:
            case 0x2B:  # +
                return SimpleString(_decode(line))
            case 0x2D:  # -
                return Error(_decode(line))
            case 0x3A:  # :
                return Integer(self._int(line, "integer"))
            case 0x24 | 0x21 | 0x3D:  # $ ! =
                if kind == 0x24 and line == b"-1":
                    return Null()
                size = self._int(line, "bulk length")
                if size < 0 or size > self.max_bulk:
                    raise ProtocolError("Protocol error: invalid bulk length")
                data = self._read_exact(size)
                if kind == 0x21:
                    return Error(_decode(data))
                if kind == 0x3D:
                    if len(data) < 4 or data[3] != 0x3A:
                        raise ProtocolError("Protocol error: invalid verbatim string")
                    return Verbatim(_decode(data[:3]), data[4:])
                return Bulk(data)
            case 0x2A | 0x7E | 0x3E:  # * ~ >
                if kind == 0x2A and line == b"-1":
                    return Null("array")
                count = self._count(line, depth)
                items = tuple(self._parse(depth + 1) for _ in range(count))
                if kind == 0x7E:
                    return Set(items)
                if kind == 0x3E:
                    return Push(items)
                return Array(items)
            case 0x25:  # %
                count = self._count(line, depth)
                pairs = []
                for _ in range(count):
                    key = self._parse(depth + 1)
                    pairs.append((key, self._parse(depth + 1)))
                return Map(tuple(pairs))
            case 0x7C:  # | attribute: read and drop, the reply follows
                count = self._count(line, depth)
                for _ in range(2 * count):
                    self._parse(depth + 1)
                return self._parse(depth)
            case 0x5F:  # _
                if line:
                    raise ProtocolError("Protocol error: invalid null")
                return Null()
            case 0x2C:  # ,
                if not _DOUBLE_RE.fullmatch(line.lower()):
                    raise ProtocolError("Protocol error: invalid double")
                return Double(float(line))
            case 0x23:  # #
                if line not in (b"t", b"f"):
                    raise ProtocolError("Protocol error: invalid boolean")
                return Boolean(line == b"t")
            case 0x28:  # ( big number
                if not _INTEGER_RE.fullmatch(line):
                    raise ProtocolError("Protocol error: invalid big number")
                return Integer(int(line))
            case _:
                shown = bytes([kind]).decode("ascii", "backslashreplace")
                raise ProtocolError(f"Protocol error: unknown reply type '{shown}'")
