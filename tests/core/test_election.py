"""Epochs and votes (haredis/core/election.py): the voter's rule, the candidate's epoch, winning."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haredis.core.actions import PersistState, RequestVotes
from haredis.core.election import (
    candidacy_delay,
    candidacy_rank,
    decide_vote,
    has_won,
    jitter,
    next_candidate_epoch,
)
from haredis.core.events import VoteReplied
from haredis.core.messages import VoteReply, VoteRequest
from haredis.core.model import PrimaryDurable

from .helpers import Rig, primary_settings, watcher_settings

NAME = "mymaster"


def ask(
    durable: PrimaryDurable,
    sender: str,
    epoch: int,
    *,
    forced: bool = False,
    in_hold: bool = False,
    alive: bool = False,
) -> tuple[PrimaryDurable, bool, str, int, bool]:
    d = decide_vote(
        durable,
        VoteRequest(sender, NAME, epoch, forced),
        voter="v",
        in_hold=in_hold,
        primary_failing=not alive,
    )
    assert d.reply.sender == "v" and d.reply.primary == NAME and d.reply.epoch == epoch
    return d.durable, d.reply.granted, d.reply.voted_for, d.reply.current_epoch, d.newly_granted


# ------------------------------------------------------------------------------ decide_vote


def test_first_candidate_of_an_epoch_gets_the_vote() -> None:
    state, granted, voted_for, current, newly = ask(PrimaryDurable(), "a", 1)
    assert granted and newly and voted_for == "a" and current == 1
    assert state == PrimaryDurable(current_epoch=1, voted_epoch=1, voted_for="a")


def test_a_second_candidate_in_the_same_epoch_is_refused_and_told_who_won() -> None:
    state, *_ = ask(PrimaryDurable(), "a", 3)
    again, granted, voted_for, current, newly = ask(state, "b", 3)
    assert not granted and not newly
    assert voted_for == "a" and current == 3
    assert again == state  # nothing to persist


def test_the_same_candidate_asking_again_gets_the_same_answer() -> None:
    state, *_ = ask(PrimaryDurable(), "a", 3)
    # Even if the primary now looks alive or we are in hold: the vote was already given.
    for alive, in_hold in ((False, False), (True, False), (False, True)):
        again, granted, voted_for, _, newly = ask(state, "a", 3, alive=alive, in_hold=in_hold)
        assert granted and voted_for == "a"
        assert not newly and again == state


def test_a_higher_epoch_is_adopted_even_when_the_vote_is_refused() -> None:
    durable = PrimaryDurable(current_epoch=2, voted_epoch=2, voted_for="a", config_epoch=2)
    state, granted, voted_for, current, _ = ask(durable, "b", 9, in_hold=True)
    assert not granted and voted_for == "" and current == 9
    assert state.current_epoch == 9 and state.voted_epoch == 2 and state.voted_for == "a"


def test_an_older_epoch_than_our_vote_is_refused() -> None:
    durable = PrimaryDurable(current_epoch=5, voted_epoch=5, voted_for="a")
    state, granted, voted_for, current, newly = ask(durable, "b", 4)
    assert not granted and not newly and current == 5
    assert voted_for == ""  # we did not vote for anyone in epoch 4 as far as we remember
    assert state == durable


def test_refused_in_hold() -> None:
    state, granted, _, current, newly = ask(PrimaryDurable(), "a", 1, in_hold=True, forced=True)
    assert not granted and not newly
    assert state.voted_epoch == 0 and current == 1


def test_refused_while_the_primary_is_positively_alive_unless_forced() -> None:
    state, granted, *_ = ask(PrimaryDurable(), "a", 1, alive=True)
    assert not granted and state.voted_epoch == 0
    # The refusal spent nothing: the same epoch can still be granted once the primary is down.
    state, granted, *_ = ask(state, "a", 1, alive=False)
    assert granted
    # An operator's forced failover is granted with the primary alive.
    state, granted, voted_for, _, newly = ask(PrimaryDurable(), "a", 1, alive=True, forced=True)
    assert granted and newly and voted_for == "a"


_request = st.tuples(
    st.sampled_from(["a", "b", "c"]),  # sender
    st.integers(1, 6),  # epoch
    st.booleans(),  # forced
    st.booleans(),  # in_hold
    st.booleans(),  # primary alive
)


@settings(max_examples=400, deadline=None)
@given(requests=st.lists(_request, max_size=40), start_epoch=st.integers(0, 3))
def test_at_most_one_candidate_is_granted_per_epoch(
    requests: list[tuple[str, int, bool, bool, bool]], start_epoch: int
) -> None:
    state = PrimaryDurable(current_epoch=start_epoch)
    granted_to: dict[int, set[str]] = defaultdict(set)
    for sender, epoch, forced, in_hold, alive in requests:
        before = state
        state, granted, voted_for, current, newly = ask(
            state, sender, epoch, forced=forced, in_hold=in_hold, alive=alive
        )
        if granted:
            granted_to[epoch].add(sender)
            assert voted_for == sender
            assert state.voted_epoch == epoch and state.voted_for == sender
        if newly:
            assert granted and before.voted_epoch < epoch <= state.voted_epoch
            assert not in_hold and (forced or not alive)
        else:
            assert (state.voted_epoch, state.voted_for) == (before.voted_epoch, before.voted_for)
        # Epochs never go back; the reply tells the candidate our current epoch.
        assert state.current_epoch == max(before.current_epoch, epoch) == current
        assert state.voted_epoch >= before.voted_epoch
    for epoch, candidates in granted_to.items():
        assert len(candidates) == 1, (epoch, candidates)


# ----------------------------------------------------------------------------- candidacy


@given(current=st.integers(0, 100), voted=st.integers(0, 100), config=st.integers(0, 100))
def test_next_candidate_epoch_is_above_every_known_epoch(current: int, voted: int, config: int) -> None:
    durable = PrimaryDurable(current_epoch=current, voted_epoch=voted, config_epoch=config)
    epoch = next_candidate_epoch(durable)
    assert epoch > current and epoch > voted and epoch > config
    assert epoch == max(current, voted, config) + 1  # and no gap: epochs stay small


def test_a_candidate_never_asks_in_an_epoch_it_already_voted_in() -> None:
    # We voted for "a" in epoch 4, and only heard current epoch 3 elsewhere.
    durable = PrimaryDurable(current_epoch=3, voted_epoch=4, voted_for="a")
    epoch = next_candidate_epoch(durable)
    assert epoch == 5
    _, granted, *_ = ask(durable, "a", 4)
    assert granted  # epoch 4 belongs to "a"; our own epoch is a different one


@pytest.mark.parametrize(
    ("votes", "majority", "quorum", "won"),
    [
        (2, 2, 2, True),
        (1, 2, 1, False),  # quorum 1 but no majority
        (2, 2, 3, False),  # majority but quorum 3
        (3, 2, 3, True),
        (3, 3, 5, False),
        (5, 3, 5, True),
        (0, 1, 1, False),
    ],
)
def test_has_won_needs_majority_and_quorum(votes: int, majority: int, quorum: int, won: bool) -> None:
    assert has_won(votes, majority=majority, quorum=quorum) is won


@given(votes=st.integers(0, 10), majority=st.integers(1, 6), quorum=st.integers(1, 10))
def test_has_won_is_monotonic_in_votes(votes: int, majority: int, quorum: int) -> None:
    if has_won(votes, majority=majority, quorum=quorum):
        assert has_won(votes + 1, majority=majority, quorum=quorum)
        assert votes >= majority and votes >= quorum


# --------------------------------------------------------------------------------- jitter


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False)), max_size=4))
def test_jitter_is_deterministic_and_in_unit_interval(parts: list[object]) -> None:
    value = jitter(*parts)
    assert 0.0 <= value < 1.0
    assert jitter(*parts) == value


def test_jitter_spreads_watchers_apart() -> None:
    values = [jitter(f"w{i}", NAME, 1, "start") for i in range(200)]
    assert len(set(values)) == 200
    # Roughly uniform: every tenth of [0, 1) is hit.
    assert {int(v * 10) for v in values} == set(range(10))
    assert jitter("w1", NAME, 1, "start") != jitter("w1", NAME, 2, "start")


# ----------------------------------------------------------------------- candidacy order

WATCHERS = ("w1", "w2", "w3")


@settings(max_examples=200, deadline=None)
@given(primary=st.text(min_size=1, max_size=12), epoch=st.integers(min_value=0, max_value=10**9))
def test_every_watcher_computes_the_same_order_with_one_watcher_per_place(primary: str, epoch: int) -> None:
    # Each watcher passes its own name and the peers it knows: the places must agree.
    ranks = [candidacy_rank(own, [w for w in WATCHERS if w != own], primary, epoch) for own in WATCHERS]
    assert sorted(ranks) == [0, 1, 2]
    assert ranks == [candidacy_rank(own, WATCHERS, primary, epoch) for own in WATCHERS]


def test_the_first_place_is_shared_out_over_primaries_and_changes_with_the_epoch() -> None:
    firsts = [
        next(w for w in WATCHERS if candidacy_rank(w, WATCHERS, f"g{i:03d}", 0) == 0) for i in range(300)
    ]
    # Each watcher stands first for roughly its third of the primaries (a host full of
    # primaries dying does not make one watcher lead every failover).
    assert all(60 <= firsts.count(w) <= 140 for w in WATCHERS)
    # After a lost election (a new epoch) another order: a first-ranked watcher that is dead
    # does not keep the others waiting epoch after epoch.
    orders = {
        tuple(sorted(WATCHERS, key=lambda w: candidacy_rank(w, WATCHERS, "g001", e))) for e in range(30)
    }
    assert len(orders) > 1


def test_candidacy_delay_is_the_spacing_per_watcher_ahead() -> None:
    delays = sorted(candidacy_delay(w, WATCHERS, "mymaster", 4, spacing=0.2) for w in WATCHERS)
    assert delays == pytest.approx([0.0, 0.2, 0.4])
    assert candidacy_delay("w1", (), "mymaster", 4, spacing=0.2) == 0.0  # alone: stand at once


def test_jitter_does_not_depend_on_the_process_hash_seed() -> None:
    # Replays must be exact across processes: str hashing is salted per process, jitter must not be.
    code = "from haredis.core.election import jitter; print(repr(jitter('w1', 'mymaster', 7, 'retry')))"
    root = Path(__file__).resolve().parents[2]
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout.strip())
    assert outputs == {repr(jitter("w1", "mymaster", 7, "retry"))}


# ---------------------------------------------------------------------- in a Watcher


def test_candidate_persists_its_own_vote_before_asking() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.crash_primary()
    batch = next(b for b in rig.watcher.batches if any(isinstance(a, RequestVotes) for a in b))
    # The checked watcher verified the disk held (epoch, w1) before RequestVotes left; be explicit.
    first = batch[0]
    assert isinstance(first, PersistState)
    assert batch.index(first) < next(i for i, a in enumerate(batch) if isinstance(a, RequestVotes))
    held = first.state.get(NAME)
    [request] = rig.vote_requests()
    assert (held.voted_epoch, held.voted_for, held.current_epoch) == (request.epoch, "w1", request.epoch)
    assert request.epoch == 1 and not request.forced


def test_majority_without_quorum_does_not_win() -> None:
    rig = Rig.standard(watcher_settings(primary=primary_settings(quorum=3)))
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.gossip("w3", says_down=True)
    rig.crash_primary()
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)  # 2 of 3 is a majority, but quorum is 3
    assert rig.events("+elected-leader") == []
    rig.grant("w2", request.epoch)  # the same voter twice is still one vote
    assert rig.events("+elected-leader") == []
    rig.grant("w3", request.epoch)
    assert len(rig.events("+elected-leader")) == 1


def test_a_vote_for_another_epoch_does_not_count() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.crash_primary()
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch - 1 if request.epoch > 1 else request.epoch + 5)
    assert rig.events("+elected-leader") == []


def test_an_unwon_election_is_abandoned_after_the_timeout_and_retried_higher() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.crash_primary()
    started = rig.now
    timeout = rig.settings.election_timeout
    rig.run_until(lambda: rig.events("-failover-abort-not-elected"), limit=2.0)
    [(aborted_at, _, _)] = rig.events("-failover-abort-not-elected")
    assert started + timeout - 1e-6 <= aborted_at <= started + timeout + 0.06
    rig.gossip("w2", says_down=True)  # keep the opinion fresh
    rig.run_until(lambda: len(rig.vote_requests()) >= 2, limit=2.0)
    first, second = rig.vote_requests()[:2]
    assert second.epoch == first.epoch + 1
    # The retry waited a randomised backoff below retry_backoff.
    retry_at = rig.events("+try-failover")[1][0]
    assert retry_at - aborted_at <= rig.settings.retry_backoff + 0.06


def test_a_reply_from_a_higher_epoch_supersedes_the_election() -> None:
    rig = Rig.standard()
    rig.run(2.0)
    rig.gossip("w2", says_down=True)
    rig.crash_primary()
    [request] = rig.vote_requests()
    rig.handle(
        VoteReplied(now=rig.now, reply=VoteReply("w2", NAME, request.epoch, False, "w3", request.epoch + 1))
    )
    assert rig.view().current_epoch == request.epoch + 1
    assert rig.view().failover_state == "none"
    assert rig.events("-failover-abort-not-elected")
    assert rig.watcher.disk.get(NAME).current_epoch == request.epoch + 1
