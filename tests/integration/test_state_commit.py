"""The runtime's group commit: the real Watcher and the real state file, the runtime's writer
thread, and a peer port that reads the state file whenever a message leaves.

The contract under test (haredis/core/actions.py): nothing after a PersistState may run
before that state is durable, and no one may learn a vote before it is on disk. What the
group commit adds: one write for every batch fed while a write was pending or under way,
and the actions of later batches held in order behind it.

No Redis is involved: only vote requests are fed, which the core answers without probing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from haredis.core.events import VoteRequested
from haredis.core.messages import PeerMessage, VoteReply, VoteRequest
from haredis.core.model import Address, DurableState, PrimarySettings, WatcherSettings
from haredis.core.watcher import Watcher
from haredis.runtime import PersistFailed, RedisPort, Runtime
from haredis.state import load_state, save_state

WAIT = 10.0  # seconds any single await in these tests may take before it counts as a hang


@dataclass
class Sent:
    to: str
    message: PeerMessage
    on_disk: DurableState  # the state file as it was when the message left


@dataclass
class RecordingPeers:
    """The runtime's PeerPort: records each message with the state file at that moment."""

    state_file: Path
    sent: list[Sent] = field(default_factory=list)

    def broadcast(self, message: PeerMessage) -> None:
        self.sent.append(Sent("*", message, load_state(self.state_file)))

    def send_to(self, name: str, message: PeerMessage) -> None:
        self.sent.append(Sent(name, message, load_state(self.state_file)))

    def replies(self) -> list[Sent]:
        return [s for s in self.sent if isinstance(s.message, VoteReply)]


class GatedWriter:
    """save_state into a real file, counted; `hold()` makes the next writes wait for
    `release()` (in the writer thread, so the event loop runs on meanwhile)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes = 0
        self.started = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self.fail_with: OSError | None = None

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, state: DurableState) -> None:
        self.started.set()
        if not self._gate.wait(WAIT):
            raise TimeoutError("the test never released the write")
        if self.fail_with is not None:
            raise self.fail_with
        save_state(self.path, state)
        self.writes += 1


def no_redis(primary: str, address: Address, purpose: str) -> RedisPort:
    raise AssertionError(f"this test talks to no Redis (asked for {primary} {address} {purpose})")


def make_runtime(tmp_path: Path, primaries: int = 1) -> tuple[Runtime, GatedWriter, RecordingPeers]:
    names = [f"g{i:03d}" for i in range(primaries)]
    settings = WatcherSettings(
        name="w1",
        electorate=3,
        primaries=tuple(
            PrimarySettings(name=n, address=Address("10.0.0.1", 7000 + i), quorum=2)
            for i, n in enumerate(names)
        ),
    )
    state_file = tmp_path / "state.json"
    save_state(state_file, DurableState())
    writer = GatedWriter(state_file)
    peers = RecordingPeers(state_file)
    watcher = Watcher(settings, DurableState(), now=time.monotonic())
    runtime = Runtime(
        watcher, links=no_redis, peers=peers, persist=writer, publish=lambda channel, text: None
    )
    return runtime, writer, peers


def vote_request(primary: str, epoch: int, sender: str = "w2") -> VoteRequested:
    # forced: an operator's failover, which a voter grants without evidence of its own.
    return VoteRequested(now=time.monotonic(), request=VoteRequest(sender, primary, epoch, forced=True))


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def settle(passes: int = 20) -> None:
    """Let the loop run a few passes (for asserting that something did NOT happen)."""
    for _ in range(passes):
        await asyncio.sleep(0.002)


async def test_a_vote_reply_leaves_only_after_the_vote_is_on_disk(tmp_path: Path) -> None:
    runtime, writer, peers = make_runtime(tmp_path)
    runtime.feed(vote_request("g000", 4))
    assert peers.sent == [] and runtime.commit_pending  # not before the write
    await wait_until(lambda: len(peers.replies()) == 1, "the vote reply")
    [sent] = peers.replies()
    assert sent.to == "w2" and isinstance(sent.message, VoteReply) and sent.message.granted
    on_disk = sent.on_disk.get("g000")
    assert (on_disk.voted_epoch, on_disk.voted_for, on_disk.current_epoch) == (4, "w2", 4)
    assert not runtime.commit_pending and writer.writes == 1
    await runtime.close(1.0)


async def test_votes_fed_in_one_loop_pass_share_one_write(tmp_path: Path) -> None:
    runtime, writer, peers = make_runtime(tmp_path, primaries=30)
    # As a pipelined burst of vote requests arrives: all fed before the loop runs again.
    for i in range(30):
        runtime.feed(vote_request(f"g{i:03d}", 7))
    assert peers.sent == []
    await wait_until(lambda: len(peers.replies()) == 30, "30 vote replies")
    assert writer.writes == 1
    for i, sent in enumerate(peers.replies()):
        assert isinstance(sent.message, VoteReply) and sent.message.primary == f"g{i:03d}"
        assert sent.on_disk.get(f"g{i:03d}").voted_for == "w2"  # every reply found its vote on disk
    await runtime.close(1.0)


async def test_batches_fed_during_a_write_wait_in_order_and_share_the_next_one(tmp_path: Path) -> None:
    runtime, writer, peers = make_runtime(tmp_path, primaries=3)
    writer.hold()
    runtime.feed(vote_request("g000", 2))
    await wait_until(writer.started.is_set, "the first write to start")
    # While it is under way: a new vote (needs its own write) and a repeated request, which
    # the core answers without anything new to persist: it must still wait its turn.
    runtime.feed(vote_request("g001", 3, sender="w3"))
    runtime.feed(vote_request("g000", 2))
    await settle()
    assert peers.sent == [] and writer.writes == 0
    writer.release()
    await wait_until(lambda: len(peers.replies()) == 3, "three replies")
    replies = peers.replies()
    assert [(s.to, s.message.primary) for s in replies] == [("w2", "g000"), ("w3", "g001"), ("w2", "g000")]  # type: ignore[union-attr]
    assert replies[1].on_disk.get("g001").voted_for == "w3"
    assert writer.writes == 2  # the first, then one for both batches fed during it
    await runtime.close(1.0)


async def test_the_snapshot_shows_no_vote_before_it_is_durable(tmp_path: Path) -> None:
    runtime, writer, _ = make_runtime(tmp_path)
    writer.hold()
    runtime.feed(vote_request("g000", 5))
    assert runtime.watcher.durable.get("g000").current_epoch == 5  # the core has moved on
    for view in (runtime.snapshot.primary("g000"), runtime.refresh_snapshot().primary("g000")):
        assert view is not None and view.current_epoch == 0 and view.leader == ""
    writer.release()
    await wait_until(lambda: not runtime.commit_pending, "the write")
    view = runtime.snapshot.primary("g000")
    assert view is not None and view.current_epoch == 5 and view.leader == "w2"
    await runtime.close(1.0)


async def test_a_failed_write_stops_the_runtime_and_nothing_leaves(tmp_path: Path) -> None:
    runtime, writer, peers = make_runtime(tmp_path)
    writer.fail_with = OSError(28, "No space left on device")
    runtime.feed(vote_request("g000", 3))
    await asyncio.wait_for(runtime.stopped.wait(), WAIT)
    assert isinstance(runtime.fatal, PersistFailed) and "No space left" in str(runtime.fatal)
    runtime.feed(vote_request("g000", 3))  # a stopped runtime takes nothing more
    await settle()
    assert peers.sent == [] and writer.writes == 0
    assert load_state(tmp_path / "state.json") == DurableState()
    await runtime.close(1.0)


async def test_close_waits_for_the_write_under_way(tmp_path: Path) -> None:
    runtime, writer, peers = make_runtime(tmp_path)
    writer.hold()
    runtime.feed(vote_request("g000", 6))
    await wait_until(writer.started.is_set, "the write to start")
    closing = asyncio.ensure_future(runtime.close(1.0))
    await settle()
    assert not closing.done()  # the daemon writes its final state after close(): no overlap
    assert peers.sent == []
    writer.release()
    await asyncio.wait_for(closing, WAIT)
    assert load_state(tmp_path / "state.json").get("g000").voted_epoch == 6
    # What waited for that write ran once it was durable, never before.
    assert all(sent.on_disk.get("g000").voted_epoch == 6 for sent in peers.sent)


@pytest.mark.parametrize("primaries", [1, 50])
async def test_every_reply_of_a_long_stream_found_its_vote_on_disk(tmp_path: Path, primaries: int) -> None:
    # Requests arriving across many loop passes, some during writes: each reply still leaves
    # after its own vote is durable, and the writes are far fewer than the votes.
    runtime, writer, peers = make_runtime(tmp_path, primaries)
    epochs = range(1, 9)
    for epoch in epochs:
        for i in range(primaries):
            runtime.feed(vote_request(f"g{i:03d}", epoch, sender="w2" if epoch % 2 else "w3"))
        await asyncio.sleep(0)
    total = primaries * len(epochs)
    await wait_until(lambda: len(peers.replies()) == total, f"{total} replies")
    for sent in peers.replies():
        assert isinstance(sent.message, VoteReply) and sent.message.granted
        durable = sent.on_disk.get(sent.message.primary)
        assert durable.voted_epoch >= sent.message.epoch
    assert writer.writes <= len(epochs)
    await runtime.close(1.0)
