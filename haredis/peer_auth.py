"""The signed envelope around a peer payload (`PeerSigner` / `PeerVerifier`): the MAC, its
keys, and freshness (per-sender replay windows)::

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
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from haredis.core.messages import PeerMessage
from haredis.core.model import Address
from haredis.peer_codec import (
    MAX_INT,
    MAX_NAME,
    MAX_PAYLOAD,
    PeerMessageError,
    decode_message,
    encode_message,
)

__all__ = ["MAX_ENVELOPE", "PeerSigner", "PeerVerifier", "Verified"]

# The peer layer's messages keep one logger, whichever module sends them.
log = logging.getLogger("haredis.peers")

_MAGIC: Final = b"HP1"
_DOMAIN: Final = b"haredis-peer-v1\0"
MAX_ENVELOPE: Final = MAX_PAYLOAD + 1024
_MIN_KEY: Final = 16

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
        if not 0 < boot_id <= MAX_INT:
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
