"""Signed gossip and votes between watchers, carried over the watchers' RESP ports.

Layers, bottom up:

1. **Payload codec** (`encode_message` / `decode_message`): the core's `Gossip`,
   `VoteRequest` and `VoteReply` as compact JSON with a ``type`` tag. Decoding is strict:
   exact key sets, exact JSON types (a bool is not an int), bounded sizes and counts, no
   control characters in names; any violation is a `PeerMessageError`, never another
   exception.

2. **Envelope** (`PeerSigner` / `PeerVerifier`)::

       HP1 <sender> <recipient> <origin> <boot> <counter> <mac> <payload>

   fields separated by single spaces; `recipient` is a watcher name or ``*`` (everyone),
   `origin` the sender's own RESP address (``host:port``) or ``-``, `boot` the sender's boot id
   (its wall-clock start in ns), `counter` a per-boot sequence number starting at 1, `mac` the
   lower-case hex HMAC-SHA256 over the cluster id and every other field, each length-prefixed
   so no two field tuples share a MAC input. The verifier checks, in order: size, framing,
   MAC (constant-time, against the current and any previous keys), payload, that the payload's
   sender is the envelope's sender, then freshness: per sender it keeps the highest boot id
   and, for that boot, a sliding window of the last `window` counters, so reordering by fewer
   than `window` messages is tolerated, a counter seen twice is a replay and anything from an
   older boot is refused. Rejections are counted per reason in `PeerVerifier.rejected`.

   Limits to know: replay state lives in memory, so a restarted receiver accepts one replay
   of a message captured before its restart; and a sender whose clock went backwards across
   a restart is refused as an "old boot" until it passes its previous boot id (the runtime
   should persist its last boot id and use max(now_ns, last + 1)).

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
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import inspect
import json
import logging
import math
import random
import re
import ssl as ssl_module
import struct
import time
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from haredis.core.messages import Gossip, PeerMessage, PrimaryGossip, VoteReply, VoteRequest
from haredis.core.model import Address
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
_MAGIC: Final = b"HP1"
_DOMAIN: Final = b"haredis-peer-v1\0"
MAX_PAYLOAD: Final = 256 * 1024
MAX_ENVELOPE: Final = MAX_PAYLOAD + 1024
MAX_NAME: Final = 128
MAX_HOST: Final = 255
MAX_PRIMARIES: Final = 4096
_MAX_INT: Final = (1 << 63) - 1
_MIN_KEY: Final = 16


class PeerMessageError(Exception):
    """A peer message was refused. `reason` is a short stable token (used as a metric label)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Payload codec


def _name_ok(name: str, *, allow_empty: bool = False) -> bool:
    if not name:
        return allow_empty
    if len(name) > MAX_NAME:
        return False
    # Cc: C0/C1 controls and DEL; Cs: lone surrogates (JSON "\ud800" escapes decode to them).
    return all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in name)


def _host_ok(host: str) -> bool:
    return 0 < len(host) <= MAX_HOST and all(0x21 <= ord(ch) <= 0x7E for ch in host)


def _address_json(address: Address) -> dict[str, Any]:
    return {"host": address.host, "port": address.port}


def encode_message(message: PeerMessage) -> bytes:
    """Compact JSON with a ``type`` tag. Raises ValueError for a message that would not decode."""
    body: dict[str, Any]
    if isinstance(message, Gossip):
        body = {
            "type": "gossip",
            "sender": message.sender,
            "in_hold": message.in_hold,
            "sent_ms": message.sent_ms,
            "echoes": dict(message.echoes),
            "primaries": [
                {
                    "name": p.name,
                    "says_down": p.says_down,
                    "current_epoch": p.current_epoch,
                    "config_epoch": p.config_epoch,
                    "address": _address_json(p.address),
                    "voted_epoch": p.voted_epoch,
                    "voted_for": p.voted_for,
                    "leading_epoch": p.leading_epoch,
                    "replid": p.replid,
                    "replid2": p.replid2,
                    "fork": p.fork,
                    "maintenance_seq": p.maintenance_seq,
                    "paused_for": p.paused_for,
                    "pause_reason": p.pause_reason,
                }
                for p in message.primaries
            ],
        }
    elif isinstance(message, VoteRequest):
        body = {
            "type": "vote_request",
            "sender": message.sender,
            "primary": message.primary,
            "epoch": message.epoch,
            "forced": message.forced,
        }
    elif isinstance(message, VoteReply):
        body = {
            "type": "vote_reply",
            "sender": message.sender,
            "primary": message.primary,
            "epoch": message.epoch,
            "granted": message.granted,
            "voted_for": message.voted_for,
            "current_epoch": message.current_epoch,
        }
    else:
        raise TypeError(f"not a peer message: {message!r}")
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    try:
        decoded = decode_message(data)
    except PeerMessageError as exc:
        raise ValueError(f"message cannot be sent: {exc}") from None
    if decoded != message:
        raise ValueError(f"message does not survive encoding: {message!r}")
    return data


class _Fields:
    """Typed, strict access to one JSON object; every failure is a PeerMessageError."""

    def __init__(self, obj: object, what: str, keys: frozenset[str]) -> None:
        if not isinstance(obj, dict):
            raise PeerMessageError("malformed", f"{what} is not an object")
        if set(obj) != keys:
            missing = sorted(keys - set(obj))
            extra = sorted(set(obj) - keys)
            raise PeerMessageError("malformed", f"{what}: missing {missing} unexpected {extra}"[:200])
        self.obj: dict[str, object] = obj
        self.what = what

    def get_int(self, key: str, lo: int = 0, hi: int = _MAX_INT) -> int:
        value = self.obj[key]
        if type(value) is not int or not lo <= value <= hi:
            raise PeerMessageError("malformed", f"{self.what}.{key} must be an integer in {lo}..{hi}")
        return value

    def get_bool(self, key: str) -> bool:
        value = self.obj[key]
        if type(value) is not bool:
            raise PeerMessageError("malformed", f"{self.what}.{key} must be a boolean")
        return value

    def get_text(self, key: str, *, max_len: int) -> str:
        value = self.obj[key]
        if not isinstance(value, str) or len(value) > max_len or _CONTROL_TEXT_RE.search(value):
            raise PeerMessageError(
                "malformed",
                f"{self.what}.{key} must be text of at most {max_len} characters, no control characters",
            )
        return value

    def get_replid(self, key: str) -> str:
        value = self.obj[key]
        if not isinstance(value, str) or not _REPLID_RE.fullmatch(value):
            raise PeerMessageError("malformed", f"{self.what}.{key} must be a replication id (hex, or empty)")
        return value

    def get_name(self, key: str, *, allow_empty: bool = False) -> str:
        value = self.obj[key]
        if not isinstance(value, str) or not _name_ok(value, allow_empty=allow_empty):
            raise PeerMessageError(
                "malformed", f"{self.what}.{key} must be a name without control characters"
            )
        return value

    def get_name_key(self, key: str) -> str:
        """A key of this object that must itself be a name (a peer's, in gossip echoes)."""
        if not _name_ok(key, allow_empty=False):
            raise PeerMessageError("malformed", f"{self.what} keys must be names without control characters")
        return key

    def get_address(self, key: str) -> Address:
        fields = _Fields(self.obj[key], f"{self.what}.{key}", _ADDRESS_KEYS)
        host = fields.obj["host"]
        if not isinstance(host, str) or not _host_ok(host):
            raise PeerMessageError("malformed", f"{self.what}.{key}.host is not a valid host")
        return Address(host, fields.get_int("port", 1, 65535))


_ADDRESS_KEYS: Final = frozenset({"host", "port"})
_REPLID_RE: Final = re.compile(r"[0-9a-fA-F]{0,64}")
_CONTROL_TEXT_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_REASON: Final = 200
_PRIMARY_KEYS: Final = frozenset(
    {
        "name",
        "says_down",
        "current_epoch",
        "config_epoch",
        "address",
        "voted_epoch",
        "voted_for",
        "leading_epoch",
        "replid",
        "replid2",
        "fork",
        "maintenance_seq",
        "paused_for",
        "pause_reason",
    }
)
_GOSSIP_KEYS: Final = frozenset({"type", "sender", "in_hold", "sent_ms", "echoes", "primaries"})
MAX_ECHOES: Final = 256  # one per peer; far more watchers than anyone runs
_VOTE_REQUEST_KEYS: Final = frozenset({"type", "sender", "primary", "epoch", "forced"})
_VOTE_REPLY_KEYS: Final = frozenset(
    {"type", "sender", "primary", "epoch", "granted", "voted_for", "current_epoch"}
)


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise PeerMessageError("malformed", f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _reject_constant(text: str) -> object:
    raise PeerMessageError("malformed", f"{text} is not allowed")


def _reject_float(text: str) -> object:
    raise PeerMessageError("malformed", "floating-point numbers are not allowed")


def decode_message(data: bytes) -> PeerMessage:
    """Strictly decode a payload; raises PeerMessageError (reason "malformed" or "oversized")."""
    if len(data) > MAX_PAYLOAD:
        raise PeerMessageError("oversized", f"{len(data)} bytes")
    try:
        text = data.decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_reject_float,
        )
    except PeerMessageError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise PeerMessageError("malformed", f"not JSON: {exc}"[:200]) from None
    if not isinstance(obj, dict):
        raise PeerMessageError("malformed", "message is not an object")
    kind = obj.get("type")
    if kind == "gossip":
        fields = _Fields(obj, "gossip", _GOSSIP_KEYS)
        raw = fields.obj["primaries"]
        if not isinstance(raw, list) or len(raw) > MAX_PRIMARIES:
            raise PeerMessageError("malformed", f"gossip.primaries must be a list of at most {MAX_PRIMARIES}")
        primaries = []
        for item in raw:
            p = _Fields(item, "primary", _PRIMARY_KEYS)
            primaries.append(
                PrimaryGossip(
                    name=p.get_name("name"),
                    says_down=p.get_bool("says_down"),
                    current_epoch=p.get_int("current_epoch"),
                    config_epoch=p.get_int("config_epoch"),
                    address=p.get_address("address"),
                    voted_epoch=p.get_int("voted_epoch"),
                    voted_for=p.get_name("voted_for", allow_empty=True),
                    leading_epoch=p.get_int("leading_epoch"),
                    replid=p.get_replid("replid"),
                    replid2=p.get_replid("replid2"),
                    fork=p.get_int("fork", lo=-1),
                    maintenance_seq=p.get_int("maintenance_seq"),
                    paused_for=p.get_int("paused_for"),
                    pause_reason=p.get_text("pause_reason", max_len=MAX_REASON),
                )
            )
        raw_echoes = fields.obj["echoes"]
        if not isinstance(raw_echoes, dict) or len(raw_echoes) > MAX_ECHOES:
            raise PeerMessageError("malformed", f"gossip.echoes must be an object of at most {MAX_ECHOES}")
        echoes = _Fields(raw_echoes, "gossip.echoes", frozenset(raw_echoes))
        return Gossip(
            sender=fields.get_name("sender"),
            in_hold=fields.get_bool("in_hold"),
            primaries=tuple(primaries),
            sent_ms=fields.get_int("sent_ms"),
            echoes=tuple((echoes.get_name_key(name), echoes.get_int(name)) for name in raw_echoes),
        )
    if kind == "vote_request":
        fields = _Fields(obj, "vote_request", _VOTE_REQUEST_KEYS)
        return VoteRequest(
            sender=fields.get_name("sender"),
            primary=fields.get_name("primary"),
            epoch=fields.get_int("epoch"),
            forced=fields.get_bool("forced"),
        )
    if kind == "vote_reply":
        fields = _Fields(obj, "vote_reply", _VOTE_REPLY_KEYS)
        return VoteReply(
            sender=fields.get_name("sender"),
            primary=fields.get_name("primary"),
            epoch=fields.get_int("epoch"),
            granted=fields.get_bool("granted"),
            voted_for=fields.get_name("voted_for", allow_empty=True),
            current_epoch=fields.get_int("current_epoch"),
        )
    raise PeerMessageError("malformed", "unknown message type")


# ---------------------------------------------------------------------------------------------
# Envelope

_TOKEN_RE: Final = re.compile(rb"[!-~]{1,%d}" % MAX_NAME)  # printable ASCII, no space
_DECIMAL_RE: Final = re.compile(rb"[1-9][0-9]{0,18}")
_MAC_RE: Final = re.compile(rb"[0-9a-f]{64}")


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mac_input(
    cluster: bytes, sender: bytes, recipient: bytes, origin: bytes, boot: int, counter: int, payload: bytes
) -> bytes:
    return b"".join(
        (
            _DOMAIN,
            _lp(cluster),
            _lp(sender),
            _lp(recipient),
            _lp(origin),
            struct.pack(">QQ", boot, counter),
            _lp(payload),
        )
    )


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or not key:
        raise ValueError("the peer key must be non-empty bytes")
    if len(key) < _MIN_KEY:
        log.warning("the peer secret is only %d bytes; use at least %d random bytes", len(key), _MIN_KEY)
    return key


def _check_token(name: str, what: str) -> bytes:
    data = name.encode("utf-8", "replace")
    if not _TOKEN_RE.fullmatch(data):
        raise ValueError(f"{what} must be 1..{MAX_NAME} printable ASCII characters without spaces: {name!r}")
    return data


class PeerSigner:
    """Signs this watcher's messages. One per process: the counter is shared by every link."""

    def __init__(
        self,
        key: bytes,
        sender: str,
        boot_id: int,
        *,
        cluster: str = "",
        origin: Address | None = None,
    ) -> None:
        self._key = _check_key(key)
        self.sender = sender
        self._sender = _check_token(sender, "the watcher name")
        if not 0 < boot_id <= _MAX_INT:
            raise ValueError("boot_id must be a positive 63-bit integer (e.g. time.time_ns())")
        self.boot_id = boot_id
        self._cluster = cluster.encode()
        self.origin = origin
        self._origin = _check_token(str(origin), "the origin address") if origin is not None else b"-"
        self.counter = 0

    def sign(self, message: PeerMessage, recipient: str = "*") -> bytes:
        if message.sender != self.sender:
            raise ValueError(f"message sender {message.sender!r} is not this watcher {self.sender!r}")
        recipient_b = b"*" if recipient == "*" else _check_token(recipient, "the recipient")
        payload = encode_message(message)
        self.counter += 1
        digest = hmac.new(
            self._key,
            _mac_input(
                self._cluster, self._sender, recipient_b, self._origin, self.boot_id, self.counter, payload
            ),
            hashlib.sha256,
        ).hexdigest()
        return b" ".join(
            (
                _MAGIC,
                self._sender,
                recipient_b,
                self._origin,
                b"%d" % self.boot_id,
                b"%d" % self.counter,
                digest.encode("ascii"),
                payload,
            )
        )


@dataclass(frozen=True, slots=True)
class Verified:
    sender: str
    recipient: str  # "*" or a watcher name
    origin: Address | None  # the sender's RESP address as it announces it
    boot_id: int
    counter: int
    message: PeerMessage
    for_me: bool  # False: addressed to another watcher (broadcast fallback), do not deliver


@dataclass(slots=True)
class _Freshness:
    boot: int
    highest: int
    seen: int  # bit i set: counter highest - i was accepted


class PeerVerifier:
    """Checks envelopes; keeps per-sender replay windows; counts rejections per reason.

    `own_name` is this watcher's name: messages addressed to another watcher are verified but
    marked ``for_me=False``, and messages signed with it are refused. (None, for tests and
    tools only, accepts every recipient.)

    Reasons: ``no-key`` (this watcher has no secret), ``oversized``, ``unsigned``,
    ``malformed``, ``forged`` (bad MAC), ``self`` (our own name: a loop, or two watchers
    sharing a name), ``sender-mismatch``, ``replayed``, ``stale`` (older than the window) and
    ``old-boot``.
    """

    def __init__(
        self,
        key: bytes,
        *,
        own_name: str | None,
        cluster: str = "",
        previous_keys: Sequence[bytes] = (),
        window: int = 64,
        max_senders: int = 1024,
    ) -> None:
        # No key (a watcher without peers): nothing can be verified, everything is refused.
        self._keys = [_check_key(k) for k in (key, *previous_keys) if k]
        self.own_name = own_name
        self._cluster = cluster.encode()
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self.max_senders = max_senders
        self._state: collections.OrderedDict[str, _Freshness] = collections.OrderedDict()
        self._rejected: collections.Counter[str] = collections.Counter()
        self.accepted = 0
        self.misdirected = 0

    @property
    def rejected(self) -> Mapping[str, int]:
        return self._rejected

    def verify(self, data: bytes) -> Verified:
        try:
            return self._verify(data)
        except PeerMessageError as exc:
            self._rejected[exc.reason] += 1
            raise

    def _verify(self, data: bytes) -> Verified:
        if len(data) > MAX_ENVELOPE:
            raise PeerMessageError("oversized", f"{len(data)} bytes")
        if data[:1] == b"{":
            raise PeerMessageError("unsigned", "a bare message without an envelope")
        parts = data.split(b" ", 7)
        if len(parts) != 8 or parts[0] != _MAGIC:
            raise PeerMessageError("malformed", "not an HP1 envelope")
        _, sender_b, recipient_b, origin_b, boot_b, counter_b, mac_b, payload = parts
        if mac_b in (b"", b"-"):
            raise PeerMessageError("unsigned", "no MAC")
        if not (
            _TOKEN_RE.fullmatch(sender_b)
            and _TOKEN_RE.fullmatch(recipient_b)
            and _TOKEN_RE.fullmatch(origin_b)
            and _DECIMAL_RE.fullmatch(boot_b)
            and _DECIMAL_RE.fullmatch(counter_b)
        ):
            raise PeerMessageError("malformed", "bad envelope header")
        if not _MAC_RE.fullmatch(mac_b):
            raise PeerMessageError("malformed", "bad MAC field")
        boot, counter = int(boot_b), int(counter_b)
        signed = _mac_input(self._cluster, sender_b, recipient_b, origin_b, boot, counter, payload)
        mac = bytes.fromhex(mac_b.decode("ascii"))
        good = False
        for key in self._keys:  # no early exit: time does not tell which key matched
            good |= hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), mac)
        if not self._keys:
            raise PeerMessageError("no-key", "no peer secret is configured here")
        if not good:
            raise PeerMessageError("forged", "bad MAC")
        sender = sender_b.decode("ascii")
        if self.own_name is not None and sender == self.own_name:
            raise PeerMessageError("self", "a message signed with our own name")
        origin: Address | None = None
        if origin_b != b"-":
            try:
                origin = Address.parse(origin_b.decode("ascii"))
            except ValueError as exc:
                raise PeerMessageError("malformed", f"bad origin: {exc}") from None
        message = decode_message(payload)
        if message.sender != sender:
            raise PeerMessageError("sender-mismatch", "payload sender differs from the envelope")
        self._check_fresh(sender, boot, counter)
        recipient = recipient_b.decode("ascii")
        for_me = recipient == "*" or self.own_name is None or recipient == self.own_name
        if for_me:
            self.accepted += 1
        else:
            self.misdirected += 1
        return Verified(sender, recipient, origin, boot, counter, message, for_me)

    def _check_fresh(self, sender: str, boot: int, counter: int) -> None:
        state = self._state.get(sender)
        if state is None or boot > state.boot:
            self._state[sender] = _Freshness(boot, counter, 1)
            self._state.move_to_end(sender)
            while len(self._state) > self.max_senders:
                self._state.popitem(last=False)
            return
        if boot < state.boot:
            raise PeerMessageError("old-boot", f"boot {boot} is older than {state.boot}")
        self._state.move_to_end(sender)
        if counter > state.highest:
            shift = counter - state.highest
            state.seen = ((state.seen << shift) | 1) & ((1 << self.window) - 1) if shift < self.window else 1
            state.highest = counter
            return
        age = state.highest - counter
        if age >= self.window:
            raise PeerMessageError("stale", f"counter {counter} is below the window")
        if state.seen >> age & 1:
            raise PeerMessageError("replayed", f"counter {counter} was already seen")
        state.seen |= 1 << age


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
