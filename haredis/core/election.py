"""Epochs and votes: one leader per (primary, epoch), proven by a majority of votes.

Theory:
* Every primary has its own epoch counter. A candidate takes epoch = max(current, voted) + 1,
  votes for itself and asks every peer.
* A voter adopts any higher epoch it sees and grants AT MOST ONE vote per epoch: the first
  candidate to ask gets it; asking again gets the same answer. A request for an epoch older
  than the voter's current one is refused. The vote is part of the
  durable state, written before the reply leaves (actions.PersistState is a barrier), so a
  restarted voter remembers it.
* A voter refuses while it is in hold mode (its view of time is not to be trusted) and,
  unless the request is an operator's forced failover, while it has no evidence of its own
  that the primary is failing: it must see the primary subjectively down, or its last probe
  must have been refused or reset (a crash, known before down_after). A voter whose last
  probe merely went unanswered refuses: with a quorum smaller than a majority, that is what
  stops a minority cut off from the primary from winning during a stall shorter than
  down_after that most watchers ride out (a simulator finding).
* A candidate wins with votes from a majority of ALL configured watchers (dead ones count
  as voters that did not vote) and at least `quorum`. Two candidates cannot both collect a
  majority of single votes in one epoch, hence one leader per epoch.
* Losing is cheap: the attempt is abandoned after `election_timeout` and retried after a
  randomised backoff below `retry_backoff`, not Sentinel's 2 x failover-timeout.

The randomness is derived from a hash of (watcher, primary, epoch, salt), so the core stays
deterministic and replayable while different watchers still wait different times.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from haredis.core.messages import VoteReply, VoteRequest
from haredis.core.model import PrimaryDurable


def jitter(*parts: object) -> float:
    """A deterministic pseudo-random fraction in [0, 1) from the given parts."""
    text = "\x1f".join(str(p) for p in parts).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(1 << 64)


def candidacy_rank(own: str, watchers: Iterable[str], primary: str, epoch: int) -> int:
    """This watcher's place (0 = first) in the order the watchers stand for `primary` in the
    election after `epoch`: a hash of (watcher, primary, epoch), so every watcher that knows
    the same names computes the same order without a message, each watcher comes first for
    about its share of the primaries, and the order changes with the epoch."""
    names = sorted({own, *watchers}, key=lambda name: (jitter(name, primary, epoch, "rank"), name))
    return names.index(own)


def candidacy_delay(own: str, watchers: Iterable[str], primary: str, epoch: int, spacing: float) -> float:
    """How long after its primary became objectively down a watcher waits before standing:
    `spacing` per watcher ranked ahead of it (candidacy_rank). With a spacing longer than a
    vote request takes to arrive, the first-ranked watcher's request reaches the others
    before they would stand, so they vote for it instead of splitting the vote three ways;
    a random stagger of a few tens of ms cannot do that once many primaries fail together
    and messages take hundreds of ms. A first-ranked watcher that is dead or cut off costs
    one spacing."""
    return spacing * candidacy_rank(own, watchers, primary, epoch)


def next_candidate_epoch(durable: PrimaryDurable) -> int:
    return max(durable.current_epoch, durable.voted_epoch, durable.config_epoch) + 1


@dataclass(frozen=True, slots=True)
class VoteDecision:
    durable: PrimaryDurable
    reply: VoteReply
    newly_granted: bool


def decide_vote(
    durable: PrimaryDurable,
    request: VoteRequest,
    *,
    voter: str,
    in_hold: bool,
    primary_failing: bool,
) -> VoteDecision:
    """The voter's whole rule. Returns the new durable state and the reply to send."""
    state = durable
    if request.epoch > state.current_epoch:
        state = replace(state, current_epoch=request.epoch)
    newly = False
    if state.voted_epoch >= request.epoch:
        granted = state.voted_epoch == request.epoch and state.voted_for == request.sender
    elif request.epoch < state.current_epoch or in_hold or (not primary_failing and not request.forced):
        # A request for an epoch we have moved past is stale (the reply's current_epoch tells
        # the candidate to catch up), as in Sentinel.
        granted = False
    else:
        state = replace(state, voted_epoch=request.epoch, voted_for=request.sender)
        granted = newly = True
    voted_for = state.voted_for if state.voted_epoch == request.epoch else ""
    reply = VoteReply(
        sender=voter,
        primary=request.primary,
        epoch=request.epoch,
        granted=granted,
        voted_for=voted_for,
        current_epoch=state.current_epoch,
    )
    return VoteDecision(durable=state, reply=reply, newly_granted=newly)


def has_won(votes: int, *, majority: int, quorum: int) -> bool:
    return votes >= majority and votes >= quorum
