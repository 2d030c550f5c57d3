"""haredis.peers: payload codec, signed envelopes, replay windows, the server-side handler and
the link's queueing policy (the network parts are in tests/integration/test_server.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haredis.core.messages import Gossip, PeerMessage, PrimaryGossip, VoteReply, VoteRequest
from haredis.core.model import Address
from haredis.peers import (
    PeerLink,
    PeerMesh,
    PeerMessageError,
    PeerSigner,
    PeerVerifier,
    decode_message,
    encode_message,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
BOOT = 1_700_000_000_000_000_000
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOSSIP = Gossip(
    sender="w1",
    in_hold=False,
    primaries=(
        PrimaryGossip(
            name="mymaster",
            says_down=True,
            current_epoch=7,
            config_epoch=6,
            address=Address("10.0.0.1", 6379),
            voted_epoch=7,
            voted_for="w2",
            leading_epoch=0,
        ),
    ),
    sent_ms=123_456,
    echoes=(("w2", 99_000), ("w3", 100_250)),
)
REQUEST = VoteRequest(sender="w1", primary="mymaster", epoch=8, forced=True)
REPLY = VoteReply(sender="w1", primary="mymaster", epoch=8, granted=False, voted_for="", current_epoch=9)


def signer(name: str = "w1", boot: int = BOOT, key: bytes = KEY, **kw: object) -> PeerSigner:
    return PeerSigner(key, name, boot, **kw)  # type: ignore[arg-type]


def reject_reason(verifier: PeerVerifier, data: bytes) -> str:
    with pytest.raises(PeerMessageError) as info:
        verifier.verify(data)
    return info.value.reason


# ---------------------------------------------------------------------------------------------
# Payload codec


@pytest.mark.parametrize("message", [GOSSIP, REQUEST, REPLY, Gossip("w9", True, ())])
def test_codec_round_trip(message: PeerMessage) -> None:
    data = encode_message(message)
    assert b" " not in data  # compact
    assert decode_message(data) == message


def mutate(message: PeerMessage, change: dict[str, object], path: tuple[str | int, ...] = ()) -> bytes:
    obj = json.loads(encode_message(message))
    target = obj
    for step in path:
        target = target[step]
    for key, value in change.items():
        if value is KeyError:
            del target[key]
        else:
            target[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "data",
    [
        mutate(REQUEST, {"epoch": "8"}),
        mutate(REQUEST, {"epoch": True}),  # a bool is not an int
        mutate(REQUEST, {"epoch": -1}),
        mutate(REQUEST, {"epoch": 2**63}),
        mutate(REQUEST, {"forced": 1}),
        mutate(REQUEST, {"sender": ""}),
        mutate(REQUEST, {"sender": "w\x001"}),
        mutate(REQUEST, {"primary": "a\nb"}),
        mutate(REQUEST, {"primary": "a\u0085b"}),  # C1 control
        mutate(REQUEST, {"primary": "x" * 129}),
        mutate(REQUEST, {"epoch": KeyError}),
        mutate(REQUEST, {"extra": 1}),
        mutate(REQUEST, {"type": "vote"}),
        mutate(REPLY, {"voted_for": None}),
        mutate(GOSSIP, {"primaries": {}}),
        mutate(GOSSIP, {"port": 0}, ("primaries", 0, "address")),
        mutate(GOSSIP, {"host": "a b"}, ("primaries", 0, "address")),
        mutate(GOSSIP, {"host": ""}, ("primaries", 0, "address")),
        mutate(GOSSIP, {"config_epoch": 1.5}, ("primaries", 0)),
        mutate(GOSSIP, {"sent_ms": -1}),
        mutate(GOSSIP, {"sent_ms": KeyError}),
        mutate(GOSSIP, {"echoes": [["w2", 1]]}),
        mutate(GOSSIP, {"w2": "1"}, ("echoes",)),
        mutate(GOSSIP, {"w\n2": 1}, ("echoes",)),
        mutate(GOSSIP, {f"w{i}": 1 for i in range(300)}, ("echoes",)),
        b'{"type":"vote_request","sender":"w1","primary":"m","epoch":1,"forced":false,"epoch":2}',
        b'{"type":"vote_request","sender":"\\ud800","primary":"m","epoch":1,"forced":false}',
        b'{"type":"vote_request","sender":"w1","primary":"m","epoch":NaN,"forced":false}',
        b'{"type":"vote_request","sender":"w1","primary":"m","epoch":' + b"9" * 5000 + b',"forced":false}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe{}",
        b"[]",
        b"null",
        b"",
    ],
)
def test_decoder_is_strict(data: bytes) -> None:
    with pytest.raises(PeerMessageError) as info:
        decode_message(data)
    assert info.value.reason in ("malformed", "oversized")


def test_decoder_refuses_absurd_sizes() -> None:
    with pytest.raises(PeerMessageError) as info:
        decode_message(b" " * (300 * 1024))
    assert info.value.reason == "oversized"
    many = Gossip("w1", False, GOSSIP.primaries * 5000)
    with pytest.raises(ValueError, match="cannot be sent"):
        encode_message(many)


def test_encoder_refuses_what_the_decoder_would_refuse() -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        encode_message(VoteRequest(sender="bad\nname", primary="m", epoch=1))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
field_names = st.sampled_from(
    ["type", "sender", "primary", "epoch", "forced", "granted", "voted_for", "in_hold"]
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["gossip", "vote_request", "vote_reply", "x"])},
    optional={name: json_values for name in ["sender", "primary", "epoch", "forced", "primaries", "in_hold"]},
)


@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
@FUZZ
def test_decoder_fuzz_bytes_and_json(data: bytes) -> None:
    try:
        message = decode_message(data)
    except PeerMessageError as exc:
        assert exc.reason in ("malformed", "oversized")
    else:
        assert encode_message(message) is not None


@given(message_like)
@LIGHT
def test_decoder_fuzz_near_misses(obj: dict[str, object]) -> None:
    try:
        message = decode_message(json.dumps(obj).encode())
    except PeerMessageError as exc:
        assert exc.reason == "malformed"
    else:
        assert decode_message(encode_message(message)) == message


names = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)
epochs = st.integers(min_value=0, max_value=2**63 - 1)
primaries = st.builds(
    PrimaryGossip,
    name=names,
    says_down=st.booleans(),
    current_epoch=epochs,
    config_epoch=epochs,
    address=st.builds(Address, st.from_regex(r"[a-z0-9.:-]{1,30}", fullmatch=True), st.integers(1, 65535)),
    voted_epoch=epochs,
    voted_for=names | st.just(""),
    leading_epoch=epochs,
)
messages = st.one_of(
    st.builds(
        Gossip,
        sender=names,
        in_hold=st.booleans(),
        primaries=st.lists(primaries, max_size=4).map(tuple),
        sent_ms=epochs,
        echoes=st.dictionaries(names, epochs, max_size=5).map(lambda d: tuple(d.items())),
    ),
    st.builds(VoteRequest, sender=names, primary=names, epoch=epochs, forced=st.booleans()),
    st.builds(
        VoteReply,
        sender=names,
        primary=names,
        epoch=epochs,
        granted=st.booleans(),
        voted_for=names | st.just(""),
        current_epoch=epochs,
    ),
)


@given(messages)
@FUZZ
def test_codec_round_trip_any_valid_message(message: PeerMessage) -> None:
    assert decode_message(encode_message(message)) == message


# ---------------------------------------------------------------------------------------------
# Envelope: signing and verification


def test_sign_and_verify() -> None:
    s = signer(origin=Address("127.0.0.1", 26379), cluster="prod")
    v = PeerVerifier(KEY, own_name="w2", cluster="prod")
    first, second = s.sign(GOSSIP), s.sign(REQUEST, recipient="w2")
    got = v.verify(first)
    assert (got.sender, got.message, got.recipient, got.for_me) == ("w1", GOSSIP, "*", True)
    assert got.origin == Address("127.0.0.1", 26379)
    assert (got.boot_id, got.counter) == (BOOT, 1)
    got = v.verify(second)
    assert (got.message, got.recipient, got.counter, got.for_me) == (REQUEST, "w2", 2, True)
    assert v.accepted == 2
    assert dict(v.rejected) == {}


def test_forged_mac_wrong_key_wrong_cluster_and_tampering_are_rejected() -> None:
    v = PeerVerifier(KEY, cluster="prod", own_name=None)
    envelope = signer(cluster="prod").sign(REQUEST)
    assert reject_reason(v, signer(key=OTHER_KEY, cluster="prod").sign(REQUEST)) == "forged"
    assert reject_reason(v, signer(cluster="staging").sign(REQUEST)) == "forged"
    tampered = envelope.replace(b'"epoch":8', b'"epoch":9')
    assert tampered != envelope
    assert reject_reason(v, tampered) == "forged"
    mac = envelope.split(b" ")[6]
    flipped = mac[:-1] + (b"0" if mac[-1:] != b"0" else b"1")
    assert reject_reason(v, envelope.replace(mac, flipped)) == "forged"
    readdressed = envelope.replace(b"HP1 w1 * ", b"HP1 w1 w3 ", 1)
    assert reject_reason(v, readdressed) == "forged"
    assert v.verify(envelope).message == REQUEST  # the genuine one still passes
    assert v.rejected["forged"] == 5


def test_unsigned_and_malformed_envelopes_are_rejected_and_counted() -> None:
    v = PeerVerifier(KEY, own_name=None)
    good = signer().sign(REPLY)
    parts = good.split(b" ", 7)
    cases = {
        encode_message(REPLY): "unsigned",
        b" ".join([*parts[:6], b"-", parts[7]]): "unsigned",
        b"HP2" + good[3:]: "malformed",
        b"HP1 w1 *": "malformed",
        b" ".join([parts[0], b"w\x01", *parts[2:]]): "malformed",
        b" ".join([*parts[:4], b"0", *parts[5:]]): "malformed",  # boot must be positive
        b" ".join([*parts[:5], b"-1", *parts[6:]]): "malformed",
        b" ".join([*parts[:6], parts[6].upper(), parts[7]]): "malformed",
        b"": "malformed",
        b"x" * 300_000: "oversized",
    }
    for data, reason in cases.items():
        assert reject_reason(v, data) == reason, data[:60]
    assert v.rejected == {"unsigned": 2, "malformed": 7, "oversized": 1}
    assert v.accepted == 0


def test_signed_but_inconsistent_payloads() -> None:
    v = PeerVerifier(KEY, own_name="w2")
    s = signer("w1")
    # The envelope sender must be the message's sender: no speaking for someone else.
    with pytest.raises(ValueError, match="not this watcher"):
        s.sign(VoteRequest(sender="w3", primary="m", epoch=1))
    impostor = PeerSigner(KEY, "w1", BOOT + 1)
    impostor.sender = "w3"  # bypass the local check to forge a mismatch the verifier must catch
    assert (
        reject_reason(v, impostor.sign(VoteRequest(sender="w3", primary="m", epoch=1))) == "sender-mismatch"
    )
    assert reject_reason(v, signer("w2").sign(VoteRequest(sender="w2", primary="m", epoch=1))) == "self"
    assert v.verify(s.sign(REQUEST)).sender == "w1"


def test_replay_reorder_window_and_old_boot() -> None:
    v = PeerVerifier(KEY, window=8, own_name=None)
    s = signer()
    envelopes = [s.sign(GOSSIP) for _ in range(12)]  # counters 1..12
    assert v.verify(envelopes[2]).counter == 3
    assert v.verify(envelopes[0]).counter == 1  # reordered, within the window
    assert reject_reason(v, envelopes[0]) == "replayed"
    assert reject_reason(v, envelopes[2]) == "replayed"
    assert v.verify(envelopes[11]).counter == 12
    assert reject_reason(v, envelopes[3]) == "stale"  # 12 - 4 >= window
    assert v.verify(envelopes[7]).counter == 8  # 12 - 8 < window, not seen yet
    assert reject_reason(v, envelopes[7]) == "replayed"
    # A restart: a newer boot id resets the window; the old boot is refused from now on.
    restarted = signer(boot=BOOT + 10)
    assert v.verify(restarted.sign(GOSSIP)).counter == 1
    assert reject_reason(v, envelopes[8]) == "old-boot"
    assert reject_reason(v, signer(boot=BOOT - 1).sign(GOSSIP)) == "old-boot"
    assert v.rejected == {"replayed": 3, "stale": 1, "old-boot": 2}


@given(st.permutations(list(range(1, 41))), st.integers(1, 40))
@LIGHT
def test_each_counter_is_accepted_at_most_once(order: list[int], window: int) -> None:
    s = signer()
    envelopes = {i: s.sign(REPLY) for i in range(1, 41)}
    v = PeerVerifier(KEY, window=window, own_name=None)
    accepted: list[int] = []
    highest = 0
    for counter in order + order[:10]:  # then replay some
        try:
            accepted.append(v.verify(envelopes[counter]).counter)
        except PeerMessageError as exc:
            assert exc.reason in ("replayed", "stale")
            assert counter in accepted or highest - counter >= window
        highest = max(highest, *accepted) if accepted else 0
    assert len(accepted) == len(set(accepted))
    assert set(accepted) >= {c for c in order if c == max(order[: order.index(c) + 1])}  # records always pass


def test_misdirected_messages_are_verified_but_not_for_us() -> None:
    v = PeerVerifier(KEY, own_name="w2")
    got = v.verify(signer().sign(REPLY, recipient="w3"))
    assert not got.for_me
    assert v.misdirected == 1
    assert v.accepted == 0


def test_previous_keys_allow_rotation_and_no_key_refuses_all() -> None:
    v = PeerVerifier(OTHER_KEY, previous_keys=[KEY], own_name=None)
    assert v.verify(signer(key=KEY).sign(REQUEST)).message == REQUEST
    assert v.verify(signer("w5", key=OTHER_KEY).sign(VoteRequest("w5", "m", 1))).sender == "w5"
    nobody = PeerVerifier(b"", own_name=None)
    assert reject_reason(nobody, signer().sign(REQUEST)) == "no-key"
    with pytest.raises(ValueError):
        PeerSigner(b"", "w1", BOOT)
    with pytest.raises(ValueError):
        PeerSigner(KEY, "has space", BOOT)
    with pytest.raises(ValueError):
        PeerSigner(KEY, "w1", 0)


@given(st.binary(max_size=400))
@FUZZ
def test_verifier_fuzz_random_bytes(data: bytes) -> None:
    v = PeerVerifier(KEY, own_name=None)
    with pytest.raises(PeerMessageError):
        v.verify(data)
    assert sum(v.rejected.values()) == 1


@given(st.data())
@FUZZ
def test_verifier_fuzz_mutated_envelopes(data: st.DataObject) -> None:
    envelope = bytearray(signer().sign(GOSSIP))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(envelope) - 1))
        envelope[index] = data.draw(st.integers(0, 255))
    v = PeerVerifier(KEY, own_name=None)
    try:
        got = v.verify(bytes(envelope))
    except PeerMessageError as exc:
        assert exc.reason in ("forged", "malformed", "unsigned")
    else:  # only a no-op mutation can pass
        assert bytes(envelope) == signer().sign(GOSSIP)
        assert got.message == GOSSIP


# ---------------------------------------------------------------------------------------------
# PeerLink queue policy and PeerMesh routing (no network: links are never started)


async def test_link_queue_puts_votes_first_merges_gossip_and_never_blocks() -> None:
    link = PeerLink(Address("127.0.0.1", 9), signer(), queue_size=3)
    link.send(GOSSIP)
    link.send(REQUEST)  # a vote goes ahead of queued gossip
    assert [item.message for item in link._queue] == [REQUEST, GOSSIP]
    # A newer gossip is merged into the queued one: its views win, the others are kept.
    push = Gossip("w1", True, (), sent_ms=5, echoes=(("w2", 4),))
    link.send(push)
    merged = Gossip("w1", True, GOSSIP.primaries, sent_ms=5, echoes=(("w2", 4),))
    assert [item.message for item in link._queue] == [REQUEST, merged]
    newer = replace(GOSSIP.primaries[0], config_epoch=9)
    link.send(Gossip("w1", False, (newer,)))
    assert [item.message for item in link._queue] == [REQUEST, Gossip("w1", False, (newer,))]
    link.send(REPLY)
    assert [item.message for item in link._queue] == [REQUEST, REPLY, Gossip("w1", False, (newer,))]
    link.send(REPLY)  # full: the oldest gossip goes
    assert [item.message for item in link._queue] == [REQUEST, REPLY, REPLY]
    link.send(GOSSIP)  # no gossip left: the oldest message goes
    assert [item.message for item in link._queue] == [REPLY, REPLY, GOSSIP]
    assert link.dropped == 2
    await link.close()


async def test_link_queue_holds_a_vote_round_for_many_primaries() -> None:
    # A host holding the primaries of many groups dies: within one election round a watcher
    # sends each peer a vote request and a reply per group. None of them may be dropped (a
    # lost vote costs its election the whole timeout), and they stay in order ahead of gossip.
    link = PeerLink(Address("127.0.0.1", 9), signer())
    primaries = [f"g{i:04d}" for i in range(1000)]
    link.send(GOSSIP)
    for name in primaries:
        link.send(replace(REQUEST, primary=name))
        link.send(replace(REPLY, primary=name))
        link.send(GOSSIP)  # merged into the one queued gossip
    assert link.dropped == 0
    queued = [item.message for item in link._queue]
    assert len(queued) == 2 * len(primaries) + 1
    assert [m.primary for m in queued[:-1] if isinstance(m, VoteRequest)] == primaries
    assert isinstance(queued[-1], Gossip)
    await link.close()


async def test_a_full_queue_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    link = PeerLink(Address("127.0.0.1", 9), signer(), queue_size=2)
    with caplog.at_level("WARNING", logger="haredis.peers"):
        for epoch in range(1, 7):
            link.send(replace(REQUEST, epoch=epoch))
    assert link.dropped == 4
    warnings = [r.getMessage() for r in caplog.records if "peer queue full" in r.getMessage()]
    assert len(warnings) == 1  # the first drop is reported, the rest wait for the next interval
    assert "dropped=1" in warnings[0] and "queue_size=2" in warnings[0]
    assert [item.message.epoch for item in link._queue] == [5, 6]  # type: ignore[union-attr]
    await link.close()


async def test_link_drops_messages_that_waited_too_long() -> None:
    link = PeerLink(Address("127.0.0.1", 9), signer(), max_age=0.05)
    link.send(GOSSIP)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() - link._queue[0].queued_at <= 0.05:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    link.send(REQUEST)
    fresh = link._next_fresh()
    assert fresh is not None and fresh.message == REQUEST
    assert link._next_fresh() is None  # the gossip behind it was too old
    assert link.dropped == 1
    await link.close()


async def test_mesh_routing_learns_names_and_falls_back_to_addressed_broadcast() -> None:
    a, b = Address("127.0.0.1", 9001), Address("127.0.0.1", 9002)
    mesh = PeerMesh([a, b, a], signer())
    assert list(mesh.links) == [a, b]
    mesh.send_to("w2", REPLY)  # unknown: every link, addressed to w2
    assert [(i.message, i.recipient) for i in mesh.links[a]._queue] == [(REPLY, "w2")]
    assert [(i.message, i.recipient) for i in mesh.links[b]._queue] == [(REPLY, "w2")]
    mesh.learn("w2", b)
    mesh.learn("w9", Address("10.9.9.9", 1))  # not a configured address: ignored
    assert dict(mesh.routes) == {"w2": b}
    mesh.links[b].up = True
    mesh.send_to("w2", REQUEST)
    assert len(mesh.links[a]._queue) == 1
    assert [i.message for i in mesh.links[b]._queue] == [REPLY, REQUEST]
    mesh.learn("w3", b)  # the address changed hands
    assert dict(mesh.routes) == {"w3": b}
    mesh.broadcast(GOSSIP)
    assert mesh.links[a]._queue[-1].recipient == "*"
    await mesh.close()
