"""The peer payload codec: the core's `Gossip`, `VoteRequest` and `VoteReply` as compact JSON
with a ``type`` tag (`encode_message` / `decode_message`), and the limits a payload must
respect. Decoding is strict: exact key sets, exact JSON types (a bool is not an int), bounded
sizes and counts, no control characters in names; any violation is a `PeerMessageError`,
never another exception."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Final

from haredis.core.messages import Gossip, PeerMessage, PrimaryGossip, VoteReply, VoteRequest
from haredis.core.model import Address

__all__ = [
    "MAX_ECHOES",
    "MAX_HOST",
    "MAX_INT",
    "MAX_NAME",
    "MAX_PAYLOAD",
    "MAX_PRIMARIES",
    "MAX_REASON",
    "PeerMessageError",
    "decode_message",
    "encode_message",
]

MAX_PAYLOAD: Final = 256 * 1024
MAX_NAME: Final = 128
MAX_HOST: Final = 255
MAX_PRIMARIES: Final = 4096
MAX_INT: Final = (1 << 63) - 1


class PeerMessageError(Exception):
    """A peer message was refused. `reason` is a short stable token (used as a metric label)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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

    def get_int(self, key: str, lo: int = 0, hi: int = MAX_INT) -> int:
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
