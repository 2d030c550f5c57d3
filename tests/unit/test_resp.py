"""haredis.resp: request parser (with Redis's error texts), encoder and reply parser."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haredis.resp import (
    NULL,
    NULL_ARRAY,
    OK,
    Array,
    Boolean,
    Bulk,
    Double,
    Error,
    Integer,
    Map,
    Null,
    ProtocolError,
    Push,
    Reply,
    ReplyParser,
    RespParser,
    Set,
    SimpleString,
    Verbatim,
    bulk_array,
    encode,
    encode_command,
    parse_int64,
    split_inline,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Small limits so that fuzzing reaches them often.
SMALL = {"max_bulk": 64, "max_array": 8, "max_inline": 128, "max_request": 256}
SMALL_BOUND = SMALL["max_request"] + max(SMALL["max_bulk"], SMALL["max_inline"]) + 2


def parse_all(data: bytes, **limits: int) -> list[list[bytes] | str]:
    """Commands, then the ProtocolError text if one ends the stream."""
    parser = RespParser(**limits)
    parser.feed(data)
    out: list[list[bytes] | str] = []
    for _ in range(len(data) + 2):  # every command consumes at least one byte
        try:
            command = parser.next_command()
        except ProtocolError as exc:
            out.append(str(exc))
            return out
        if command is None:
            return out
        out.append(command)
    raise AssertionError("parser did not stop")


def drain(parser: RespParser, budget: int) -> tuple[list[list[bytes]], ProtocolError | None]:
    """Every command available now; stops at None or at the error. Fails if it loops."""
    commands: list[list[bytes]] = []
    for _ in range(budget + 2):
        try:
            command = parser.next_command()
        except ProtocolError as exc:
            return commands, exc
        if command is None:
            return commands, None
        assert isinstance(command, list)
        assert all(isinstance(arg, bytes) for arg in command)
        commands.append(command)
    raise AssertionError("parser did not stop")


# ---------------------------------------------------------------------------------------------
# Request parser: behaviour and Redis's texts


def test_multibulk_and_inline_and_pipelining() -> None:
    data = encode_command("SET", b"k\r\n", b"") + b"PING\r\nECHO  hello\n" + encode_command("GET", "k")
    assert parse_all(data) == [[b"SET", b"k\r\n", b""], [b"PING"], [b"ECHO", b"hello"], [b"GET", b"k"]]


def test_empty_requests_are_skipped_like_redis() -> None:
    assert parse_all(b"*0\r\n*-1\r\n\r\n\n   \r\n*1\r\n$4\r\nPING\r\n") == [[b"PING"]]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*x\r\n", "Protocol error: invalid multibulk length"),
        (b"*+1\r\n", "Protocol error: invalid multibulk length"),
        (b"*01\r\n", "Protocol error: invalid multibulk length"),
        (b"*1 \r\n", "Protocol error: invalid multibulk length"),
        (b"*3000000000\r\n", "Protocol error: invalid multibulk length"),
        (b"*1025\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\nx\r\n", "Protocol error: expected '$', got 'x'"),
        (b"*2\r\n$4\r\nECHO\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$+5\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$" + b"9" * 30 + b"\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$524289\r\n", "Protocol error: invalid bulk length"),
        (b'ECHO "abc\r\n', "Protocol error: unbalanced quotes in request"),
        (b'ECHO "ab"c\r\n', "Protocol error: unbalanced quotes in request"),
        (b"ECHO 'ab\r\n", "Protocol error: unbalanced quotes in request"),
        (b"a" * 70000, "Protocol error: too big inline request"),
        (b"*1\r\n$" + b"1" * 70000, "Protocol error: too big bulk count string"),
        (b"*" + b"1" * 70000, "Protocol error: too big mbulk count string"),
        (b"*1\r\n$4\r\nPINGxx", "Protocol error: bulk string not terminated by CRLF"),
    ],
)
def test_protocol_errors_carry_redis_texts(data: bytes, message: str) -> None:
    assert parse_all(data) == [message]


def test_commands_before_an_error_are_returned_and_the_parser_stays_failed() -> None:
    parser = RespParser()
    parser.feed(b"PING\r\n*1\r\n$-5\r\n")
    assert parser.next_command() == [b"PING"]
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        parser.next_command()
    parser.feed(b"PING\r\n")
    with pytest.raises(ProtocolError):
        parser.next_command()
    assert parser.buffered == 0


def test_unauthenticated_connections_get_redis_tighter_limits() -> None:
    parser = RespParser()
    parser.authenticated = False
    parser.feed(encode_command(*["x"] * 10))
    assert parser.next_command() == [b"x"] * 10
    parser.feed(b"*11\r\n")
    with pytest.raises(ProtocolError, match=r"^Protocol error: unauthenticated multibulk length$"):
        parser.next_command()

    parser = RespParser()
    parser.authenticated = False
    parser.feed(b"*1\r\n$20000\r\n")
    with pytest.raises(ProtocolError, match=r"^Protocol error: unauthenticated bulk length$"):
        parser.next_command()

    parser = RespParser()
    parser.authenticated = False
    parser.feed(b"*2\r\n$4\r\nAUTH\r\n$1\r\np\r\n")
    assert parser.next_command() == [b"AUTH", b"p"]
    parser.authenticated = True
    parser.feed(b"*1\r\n$20000\r\n")
    assert parser.next_command() is None  # now allowed, waiting for the data


def test_total_request_size_is_bounded() -> None:
    parser = RespParser(max_bulk=100, max_array=100, max_request=250)
    parser.feed(b"*3\r\n$100\r\n" + b"a" * 100 + b"\r\n$100\r\n" + b"b" * 100 + b"\r\n")
    assert parser.next_command() is None
    parser.feed(b"$100\r\n")
    with pytest.raises(ProtocolError, match="too big request"):
        parser.next_command()


def test_every_cut_point_of_valid_frames() -> None:
    commands = [[b"SET", b"key", b"va\r\nlue"], [b"PING"], [b""], [b"ECHO", b"x" * 300]]
    data = b"".join(encode_command(*c) for c in commands) + b"ECHO 'in line'\r\n"
    expected = [*commands, [b"ECHO", b"in line"]]
    for cut in range(len(data) + 1):
        parser = RespParser()
        parser.feed(data[:cut])
        first, error = drain(parser, len(data))
        assert error is None
        parser.feed(data[cut:])
        rest, error = drain(parser, len(data))
        assert error is None
        assert first + rest == expected, cut


def test_byte_by_byte_feeding() -> None:
    data = encode_command("HAREDIS.PEER", bytes(range(256)) * 3) + b"PING\n"
    parser = RespParser()
    got: list[list[bytes]] = []
    for byte in data:
        parser.feed(bytes([byte]))
        commands, error = drain(parser, 1)
        assert error is None
        got += commands
    assert got == [[b"HAREDIS.PEER", bytes(range(256)) * 3], [b"PING"]]


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b"set a b", [b"set", b"a", b"b"]),
        (b'  "a b"  c ', [b"a b", b"c"]),
        (b'"\\x41\\x4a\\n\\r\\t\\b\\a\\"\\\\\\q"', [b'AJ\n\r\t\b\a"\\q']),
        (b'"\\x4g"', [b"x4g"]),
        (b"'it\\'s' 'a\\nb'", [b"it's", b"a\\nb"]),
        (b'ab"c d"e', None),  # closing quote not followed by a space
        (b'ab"c d" e', [b"abc d", b"e"]),
        (b"a\0b c", [b"a"]),  # a C string for Redis
        (b'""', [b""]),
        (b"", []),
        (b'"unterminated', None),
    ],
)
def test_inline_splitting_like_sdssplitargs(line: bytes, args: list[bytes] | None) -> None:
    assert split_inline(line) == args


@given(st.lists(st.binary(max_size=20), min_size=1, max_size=6))
@FUZZ
def test_inline_quoting_round_trip(args: list[bytes]) -> None:
    quoted = b" ".join(b'"' + b"".join(b"\\x%02x" % byte for byte in arg) + b'"' for arg in args)
    assert parse_all(quoted + b"\r\n") == [args]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"0", 0),
        (b"-1", -1),
        (b"9223372036854775807", 2**63 - 1),
        (b"-9223372036854775808", -(2**63)),
        (b"9223372036854775808", None),
        (b"01", None),
        (b"-0", None),
        (b"+1", None),
        (b" 1", None),
        (b"1_0", None),
        (b"", None),
        (b"-", None),
    ],
)
def test_parse_int64_is_redis_string2ll(text: bytes, value: int | None) -> None:
    assert parse_int64(text) == value


# ---------------------------------------------------------------------------------------------
# Request parser: fuzzing


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


def feed_checked(parser: RespParser, pieces: list[bytes], bound: int) -> tuple[list[list[bytes]], bool]:
    """Feed piece by piece; checks the buffering bound whenever the parser asks for more."""
    commands: list[list[bytes]] = []
    for piece in pieces:
        parser.feed(piece)
        got, error = drain(parser, len(piece) + parser.buffered)
        commands += got
        if error is not None:
            assert str(error).startswith("Protocol error: ")
            return commands, True
        assert parser.buffered <= bound
    return commands, False


@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=8))
@FUZZ
def test_random_bytes_never_raise_anything_else(data: bytes, cuts: list[int]) -> None:
    parser = RespParser(**SMALL)
    feed_checked(parser, chunked(data, cuts), SMALL_BOUND)


# Frames built from the grammar, right or slightly wrong: lengths too big, negative, lying,
# nested arrays where bulk strings belong, junk between elements.
length_text = st.one_of(
    st.integers(min_value=-3, max_value=300).map(lambda n: b"%d" % n),
    st.sampled_from([b"", b"x", b"+1", b"01", b"-0", b"99999999999999999999999", b"1 "]),
)
element = st.one_of(
    st.binary(max_size=70).map(lambda b: b"$%d\r\n" % len(b) + b + b"\r\n"),
    st.tuples(length_text, st.binary(max_size=70)).map(lambda t: b"$" + t[0] + b"\r\n" + t[1] + b"\r\n"),
    st.tuples(length_text, st.binary(max_size=10)).map(lambda t: b"*" + t[0] + b"\r\n" + t[1]),
    st.binary(max_size=5),
)
frame = st.one_of(
    st.tuples(length_text, st.lists(element, max_size=10)).map(
        lambda t: b"*" + t[0] + b"\r\n" + b"".join(t[1])
    ),
    st.lists(st.integers(0, 9), max_size=5).map(
        lambda xs: b"*%d\r\n" % len(xs) + b"".join(b"$1\r\n%d\r\n" % x for x in xs)
    ),
    st.binary(max_size=40).map(lambda b: b + b"\r\n"),
)


@given(st.lists(frame, max_size=6), st.lists(st.integers(min_value=0), max_size=6), st.booleans())
@FUZZ
def test_grammar_fuzz(frames: list[bytes], cuts: list[int], authenticated: bool) -> None:
    data = b"".join(frames)
    parser = RespParser(**SMALL)
    parser.authenticated = authenticated
    commands, _ = feed_checked(parser, chunked(data, cuts), SMALL_BOUND)
    for command in commands:
        assert 1 <= len(command) <= SMALL["max_array"]
        assert sum(map(len, command)) <= SMALL["max_request"]
        assert all(len(arg) <= max(SMALL["max_bulk"], SMALL["max_inline"]) for arg in command)


@given(
    st.lists(st.lists(st.binary(max_size=64), min_size=1, max_size=8), max_size=5),
    st.lists(st.integers(min_value=0), max_size=10),
)
@FUZZ
def test_valid_commands_survive_any_chunking(commands: list[list[bytes]], cuts: list[int]) -> None:
    data = b"".join(encode_command(*command) for command in commands)
    parser = RespParser(**SMALL)
    got, failed = feed_checked(parser, chunked(data, cuts), SMALL_BOUND)
    assert not failed
    assert got == commands


def test_oversized_claims_fail_before_the_data_arrives() -> None:
    parser = RespParser(max_bulk=1024)
    parser.feed(b"*1\r\n$1025\r\n")
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        parser.next_command()
    parser = RespParser(max_array=4)
    parser.feed(b"*5\r\n")
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.next_command()


# ---------------------------------------------------------------------------------------------
# Encoder


@pytest.mark.parametrize(
    ("reply", "resp2", "resp3"),
    [
        (OK, b"+OK\r\n", b"+OK\r\n"),
        (SimpleString("a\r\nb"), b"+a  b\r\n", b"+a  b\r\n"),
        (Error("ERR bad\nthing"), b"-ERR bad thing\r\n", b"-ERR bad thing\r\n"),
        (Integer(-7), b":-7\r\n", b":-7\r\n"),
        (Integer(2**64), b"$20\r\n18446744073709551616\r\n", b"(18446744073709551616\r\n"),
        (Bulk("h\u00e9"), b"$3\r\nh\xc3\xa9\r\n", b"$3\r\nh\xc3\xa9\r\n"),
        (Bulk(b""), b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (NULL, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        (Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (Double(-math.inf), b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (Boolean(True), b":1\r\n", b"#t\r\n"),
        (Verbatim("txt", "hi"), b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n"),
        (bulk_array(["a", b"b"]), b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        (Set((Integer(1),)), b"*1\r\n:1\r\n", b"~1\r\n:1\r\n"),
        (Map(((Bulk("k"), Integer(1)),)), b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
        (Push((Bulk("message"), NULL)), b"*2\r\n$7\r\nmessage\r\n$-1\r\n", b">2\r\n$7\r\nmessage\r\n_\r\n"),
        (Array(()), b"*0\r\n", b"*0\r\n"),
    ],
)
def test_encode_shapes(reply: Reply, resp2: bytes, resp3: bytes) -> None:
    assert encode(reply, 2) == resp2
    assert encode(reply, 3) == resp3


def test_encode_rejects_what_it_cannot_send() -> None:
    with pytest.raises(ValueError, match="protocol"):
        encode(OK, 4)
    with pytest.raises(TypeError):
        encode("OK", 2)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Reply parser and round trips

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
scalar = st.one_of(
    text.map(SimpleString),
    text.map(lambda t: Error("ERR " + t)),
    st.integers(min_value=-(2**70), max_value=2**70).map(Integer),
    st.one_of(st.binary(max_size=30), text).map(Bulk),
    st.sampled_from([NULL, NULL_ARRAY]),
    st.floats(allow_nan=False).map(Double),
    st.booleans().map(Boolean),
    st.tuples(st.sampled_from(["txt", "mkd"]), st.binary(max_size=20)).map(lambda t: Verbatim(*t)),
)
replies = st.recursive(
    scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda xs: Array(tuple(xs))),
        st.lists(children, max_size=4).map(lambda xs: Set(tuple(xs))),
        st.lists(children, max_size=4).map(lambda xs: Push(tuple(xs))),
        st.lists(st.tuples(children, children), max_size=3).map(lambda xs: Map(tuple(xs))),
    ),
    max_leaves=20,
)


def clean(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def as_parsed(reply: Reply, protocol: int) -> Reply:
    """What a parser reads back: bytes for strings, RESP2's reduced type set."""
    resp3 = protocol == 3
    match reply:
        case SimpleString(value):
            return SimpleString(clean(value))
        case Error(message):
            return Error(clean(message))
        case Bulk(value):
            return Bulk(reply.as_bytes())
        case Integer(value) if not resp3 and not -(2**63) <= value < 2**63:
            return Bulk(b"%d" % value)
        case Null():
            return Null("bulk") if resp3 else reply
        case Double(value) if not resp3:
            return Bulk(repr(value).encode() if math.isfinite(value) else (b"inf" if value > 0 else b"-inf"))
        case Boolean(value) if not resp3:
            return Integer(int(value))
        case Verbatim(fmt, body):
            data = body.encode() if isinstance(body, str) else body
            return Verbatim(fmt, data) if resp3 else Bulk(data)
        case Array(items):
            return Array(tuple(as_parsed(i, protocol) for i in items))
        case Set(items):
            return Set(tuple(as_parsed(i, protocol) for i in items)) if resp3 else as_parsed(Array(items), 2)
        case Push(items):
            return Push(tuple(as_parsed(i, protocol) for i in items)) if resp3 else as_parsed(Array(items), 2)
        case Map(pairs):
            if resp3:
                return Map(tuple((as_parsed(k, 3), as_parsed(v, 3)) for k, v in pairs))
            return Array(tuple(as_parsed(x, 2) for pair in pairs for x in pair))
    return reply


@given(
    st.lists(replies, min_size=1, max_size=4), st.sampled_from([2, 3]), st.lists(st.integers(0), max_size=5)
)
@FUZZ
def test_encode_then_parse_round_trip(values: list[Reply], protocol: int, cuts: list[int]) -> None:
    data = b"".join(encode(v, protocol) for v in values)
    parser = ReplyParser()
    got: list[Reply] = []
    for piece in chunked(data, cuts):
        parser.feed(piece)
        for _ in range(len(data) + 1):
            reply = parser.next_reply()
            if reply is None:
                break
            got.append(reply)
    assert got == [as_parsed(v, protocol) for v in values]
    assert parser.buffered == 0


def test_reply_parser_every_cut_point() -> None:
    value = Map(((Bulk("server"), Bulk("haredis")), (Bulk("modules"), Array((Double(0.5), NULL)))))
    data = encode(value, 3) + encode(OK, 3)
    for cut in range(len(data) + 1):
        parser = ReplyParser()
        parser.feed(data[:cut])
        got = []
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
        parser.feed(data[cut:])
        while (reply := parser.next_reply()) is not None:
            got.append(reply)
        assert got == [as_parsed(value, 3), OK], cut


def test_reply_parser_extras() -> None:
    parser = ReplyParser(max_depth=3)
    parser.feed(
        b"|1\r\n+ttl\r\n:3\r\n+after-attribute\r\n!5\r\nERR x\r\n(-12345678901234567890123\r\n,nan\r\n"
    )
    assert parser.next_reply() == SimpleString("after-attribute")
    assert parser.next_reply() == Error("ERR x")
    assert parser.next_reply() == Integer(-12345678901234567890123)
    nan = parser.next_reply()
    assert isinstance(nan, Double)
    assert math.isnan(nan.value)
    parser.feed(b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n")
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parser.next_reply()
    with pytest.raises(ProtocolError):  # stays failed
        parser.next_reply()


@pytest.mark.parametrize(
    "data",
    [
        b"?x\r\n",
        b":1x\r\n",
        b"$-2\r\n",
        b"$3\r\nabcd\r\n",
        b"*-2\r\n",
        b",1_0\r\n",
        b"#x\r\n",
        b"_x\r\n",
        b"*?\r\n",
        b"=2\r\nab\r\n",
    ],
)
def test_reply_parser_rejects_malformed(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    with pytest.raises(ProtocolError):
        parser.next_reply()


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=6))
@FUZZ
def test_reply_parser_random_bytes(data: bytes, cuts: list[int]) -> None:
    parser = ReplyParser(max_bulk=64, max_array=16, max_depth=4, max_line=64, max_buffer=512)
    for piece in chunked(data, cuts):
        parser.feed(piece)
        for _ in range(len(data) + 2):
            try:
                reply = parser.next_reply()
            except ProtocolError:
                return
            if reply is None:
                break
        else:
            raise AssertionError("reply parser did not stop")
        assert parser.buffered <= 512 + len(piece)
