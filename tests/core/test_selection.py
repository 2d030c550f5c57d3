"""Replica selection (haredis/core/selection.py): every exclusion, then Sentinel's ranking."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haredis.core.model import Address, InstanceInfo, Role
from haredis.core.selection import Candidate, History, Verdict, best, rank, within_lag

PRIMARY = Address("10.0.0.1", 6379)
HISTORY = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
OTHER = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
MAX_INFO_AGE = 3.0
MAX_LINK_DOWN = 60.0


def addr(n: int) -> Address:
    return Address(f"10.0.1.{n}", 6379)


def info(**overrides: object) -> InstanceInfo:
    base = InstanceInfo(
        role=Role.REPLICA,
        run_id="run-a",
        replid=HISTORY,
        offset=1000,
        master=PRIMARY,
        link_up=True,
        priority=100,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def cand(
    n: int, *, down: bool = False, reachable: bool = True, age: float | None = 0.5, **kw: object
) -> Candidate:
    return Candidate(address=addr(n), down=down, reachable=reachable, info=info(**kw), info_age=age)


def ranked(
    cands: list[Candidate],
    *,
    expected: str = HISTORY,
    predecessor: str = "",
    primary_offset: int | None = 1000,
) -> list[Verdict]:
    return rank(
        cands,
        history=History(expected, predecessor),
        primary_offset=primary_offset,
        max_info_age=MAX_INFO_AGE,
        max_link_down=MAX_LINK_DOWN,
    )


def only(c: Candidate, **kw: object) -> Verdict:
    [verdict] = ranked([c], **kw)  # type: ignore[arg-type]
    return verdict


# ------------------------------------------------------------------------------ exclusions


def test_a_healthy_fresh_replica_is_eligible() -> None:
    verdict = only(cand(1))
    assert verdict.eligible and verdict.reason == "eligible" and verdict.lag == 0
    assert best([verdict]) == verdict


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (cand(1, down=True), "down"),
        (cand(1, reachable=False), "unreachable"),
        (Candidate(addr(1), down=False, reachable=True, info=None, info_age=None), "no INFO"),
        (cand(1, age=None), "no INFO"),
        (cand(1, age=MAX_INFO_AGE + 0.5), "stale INFO (3.5s old)"),
        (cand(1, role=Role.PRIMARY, master=None), "not a replica (role master)"),
        (cand(1, role=Role.UNKNOWN), "not a replica (role unknown)"),
        (cand(1, priority=0), "priority 0"),
        (cand(1, link_up=False, link_down_seconds=MAX_LINK_DOWN + 1), "link down 61s"),
        (cand(1, replid=OTHER, replid2=""), "other history (replid bbbbbbbb)"),
        (cand(1, replid="", replid2=""), "other history (replid ?)"),
    ],
)
def test_each_exclusion_reason(candidate: Candidate, reason: str) -> None:
    verdict = only(candidate)
    assert not verdict.eligible
    assert verdict.reason == reason
    assert best([verdict]) is None


def test_down_is_reported_before_every_other_reason() -> None:
    verdict = only(cand(1, down=True, reachable=False, age=None, priority=0, replid=OTHER))
    assert verdict.reason == "down"


def test_info_exactly_at_the_age_limit_is_still_fresh() -> None:
    assert only(cand(1, age=MAX_INFO_AGE)).eligible


def test_a_link_down_for_a_short_while_is_fine() -> None:
    assert only(cand(1, link_up=False, link_down_seconds=MAX_LINK_DOWN)).eligible
    # link_down_seconds only matters while the link is down.
    assert only(cand(1, link_up=True, link_down_seconds=MAX_LINK_DOWN * 10)).eligible


def test_a_replica_detached_by_a_freeze_stays_a_candidate_however_long_ago() -> None:
    # A leader froze it (REPLICAOF 127.0.0.1 0: it follows nothing) and died before
    # repointing it: its link has been down for long, on purpose, with its data intact.
    detached = cand(1, master=None, link_up=False, link_down_seconds=MAX_LINK_DOWN * 10)
    assert only(detached).eligible
    # One whose link to a real primary has been down that long is still excluded.
    assert not only(cand(1, link_up=False, link_down_seconds=MAX_LINK_DOWN * 10)).eligible


def test_a_node_on_a_branch_of_our_history_is_a_candidate_only_once_the_primary_lost_its_data() -> None:
    branch = cand(1, replid="branch", replid2=HISTORY)
    assert not only(branch).eligible
    [verdict] = rank(
        [branch],
        history=History(HISTORY, ""),
        primary_offset=1000,
        max_info_age=MAX_INFO_AGE,
        max_link_down=MAX_LINK_DOWN,
        primary_lost_data=True,
    )
    assert verdict.eligible


def test_a_replica_promoted_away_from_the_primarys_history_is_excluded() -> None:
    # replid2 = the primary's replid means it was promoted FROM this history and may have
    # taken writes of its own since: a diverged branch.
    verdict = only(cand(1, replid=OTHER, replid2=HISTORY))
    assert not verdict.eligible and verdict.reason.startswith("other history")


def test_a_replica_still_on_the_primarys_predecessor_history_is_accepted() -> None:
    # The primary was promoted from OTHER; this replica has not resynced yet.
    assert only(cand(1, replid=OTHER, replid2=""), predecessor=OTHER).eligible


def test_with_the_new_primarys_replid_unknown_a_resynced_replica_is_accepted() -> None:
    # Right after a switch learned from a peer: the new replid is unknown, but a replica
    # that resynced to the new primary carries the old replid as its replid2.
    assert only(cand(1, replid="c" * 40, replid2=OTHER), expected="", predecessor=OTHER).eligible
    assert not only(cand(1, replid="c" * 40, replid2=HISTORY), expected="", predecessor=OTHER).eligible


def test_unknown_primary_history_skips_the_history_check() -> None:
    # First start, before the primary ever answered INFO: there is nothing to hold anyone to.
    assert only(cand(1, replid=OTHER), expected="").eligible


def test_lag_is_measured_against_the_primary_offset() -> None:
    assert only(cand(1, offset=700)).lag == 300
    assert only(cand(1, offset=1200)).lag == 0  # ahead (the primary's INFO is older): no lag
    assert only(cand(1, offset=700), primary_offset=None).lag is None


# --------------------------------------------------------------------------------- ranking


def test_lower_priority_wins_over_a_higher_offset() -> None:
    verdicts = ranked([cand(1, priority=100, offset=5000), cand(2, priority=10, offset=10)])
    assert [v.address for v in verdicts] == [addr(2), addr(1)]


def test_higher_offset_wins_at_equal_priority() -> None:
    verdicts = ranked([cand(1, offset=900), cand(2, offset=950), cand(3, offset=100)])
    assert [v.address for v in verdicts] == [addr(2), addr(1), addr(3)]


def test_smaller_run_id_wins_at_equal_offset_and_unknown_run_id_is_last() -> None:
    verdicts = ranked([cand(1, run_id=""), cand(2, run_id="zzz"), cand(3, run_id="aaa")])
    assert [v.address for v in verdicts] == [addr(3), addr(2), addr(1)]


def test_excluded_candidates_come_after_every_eligible_one() -> None:
    verdicts = ranked([cand(1, priority=1, offset=9999, down=True), cand(2, priority=100, offset=1)])
    assert [v.eligible for v in verdicts] == [True, False]
    chosen = best(verdicts)
    assert chosen is not None and chosen.address == addr(2)


def test_no_candidate_at_all() -> None:
    assert ranked([]) == []
    assert best([]) is None


# -------------------------------------------------------------------------------- property


def _rank_key(v: Verdict) -> tuple[int, int, bool, str]:
    """Sentinel's order, written here from the rule, not taken from the module."""
    return (v.priority, -v.offset, v.run_id == "", v.run_id)


_candidate = st.builds(
    lambda n, down, reachable, age, role, priority, link_up, link_down, replid, replid2, offset, run_id: (
        Candidate(
            address=addr(n),
            down=down,
            reachable=reachable,
            info=info(
                role=role,
                priority=priority,
                link_up=link_up,
                link_down_seconds=link_down,
                replid=replid,
                replid2=replid2,
                offset=offset,
                run_id=run_id,
            ),
            info_age=age,
        )
    ),
    st.integers(1, 250),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.floats(0.0, 6.0)),
    st.sampled_from(list(Role)),
    st.sampled_from([0, 1, 10, 100]),
    st.booleans(),
    st.floats(0.0, 120.0),
    st.sampled_from([HISTORY, OTHER, ""]),
    st.sampled_from([HISTORY, OTHER, ""]),
    st.integers(0, 2000),
    st.sampled_from(["", "r1", "r2", "r3"]),
)


@settings(max_examples=200, deadline=None)
@given(cands=st.lists(_candidate, max_size=8, unique_by=lambda c: c.address))
def test_the_chosen_replica_is_eligible_and_nobody_eligible_beats_it(cands: list[Candidate]) -> None:
    verdicts = ranked(cands)
    assert sorted(v.address for v in verdicts) == sorted(c.address for c in cands)
    by_addr = {c.address: c for c in cands}
    for v in verdicts:
        c = by_addr[v.address]
        assert c.info is not None
        # Eligibility, restated from the rules.
        expected_ok = (
            not c.down
            and c.reachable
            and c.info_age is not None
            and c.info_age <= MAX_INFO_AGE
            and c.info.role is Role.REPLICA
            and c.info.priority != 0
            and (c.info.link_up or c.info.link_down_seconds <= MAX_LINK_DOWN)
            and c.info.replid == HISTORY
        )
        assert v.eligible == expected_ok, (v, c)
    chosen = best(verdicts)
    eligible = [v for v in verdicts if v.eligible]
    if not eligible:
        assert chosen is None
        return
    assert chosen is not None and chosen.eligible
    assert all(_rank_key(chosen) <= _rank_key(v) for v in eligible)
    # The eligible ones come first and in order.
    assert verdicts[: len(eligible)] == sorted(eligible, key=lambda v: (_rank_key(v), v.address))


# ------------------------------------------------------------------------------- lag gate


def test_the_lag_gate_filters_lagging_replicas_and_keeps_the_order() -> None:
    verdicts = ranked(
        [
            cand(1, priority=10, offset=100),  # preferred, but 900 bytes behind
            cand(2, priority=100, offset=980),  # 20 behind
            cand(3, priority=100, offset=950),  # 50 behind
            cand(4, down=True, offset=1000),  # excluded anyway
        ]
    )
    assert [v.address for v in verdicts] == [addr(1), addr(2), addr(3), addr(4)]
    gated = within_lag(verdicts, 100)
    assert [v.address for v in gated] == [addr(2), addr(3), addr(4)]
    chosen = best(gated)
    assert chosen is not None and chosen.address == addr(2)
    assert [v.address for v in within_lag(verdicts, 10)] == [addr(4)]
    assert best(within_lag(verdicts, 10)) is None  # nothing eligible passes a 10-byte gate
    assert within_lag(verdicts, None) == verdicts


def test_an_unknown_lag_passes_the_gate() -> None:
    verdicts = ranked([cand(1, offset=0)], primary_offset=None)
    assert verdicts[0].lag is None and within_lag(verdicts, 0) == verdicts


@settings(max_examples=120, deadline=None)
@given(cands=st.lists(_candidate, max_size=8, unique_by=lambda c: c.address), gate=st.integers(0, 2000))
def test_the_gated_choice_is_eligible_within_the_gate_and_unbeaten(cands: list[Candidate], gate: int) -> None:
    verdicts = ranked(cands)
    chosen = best(within_lag(verdicts, gate))
    fit = [v for v in verdicts if v.eligible and (v.lag is None or v.lag <= gate)]
    if not fit:
        assert chosen is None
        return
    assert chosen is not None and chosen.eligible and chosen.lag is not None and chosen.lag <= gate
    assert all(_rank_key(chosen) <= _rank_key(v) for v in fit)


def test_a_replica_on_the_predecessor_history_past_the_fork_point_has_diverged() -> None:
    # The primary was promoted from OTHER at offset 500 (second_repl_offset 501). A replica
    # still on OTHER at offset 400 holds a prefix; one at 600 kept taking writes as a
    # primary after the fork (an old primary converted late) and must not be promoted.
    def verdict(offset: int) -> Verdict:
        [v] = rank(
            [cand(1, replid=OTHER, replid2="", offset=offset)],
            history=History(HISTORY, OTHER, fork=501),
            primary_offset=None,
            max_info_age=MAX_INFO_AGE,
            max_link_down=MAX_LINK_DOWN,
        )
        return v

    assert verdict(400).eligible and verdict(500).eligible
    assert not verdict(501).eligible and verdict(600).reason.startswith("other history")


def test_a_primary_our_primary_resynced_from_is_adopted_whatever_its_history() -> None:
    """The configured primary follows another primary and took its data (same replid): the
    configured primary holds nothing of our history past that any more, so adopting the one
    it follows loses nothing more (simulator seed 1405: otherwise nothing was eligible)."""
    stray = replace(cand(1, role=Role.PRIMARY, replid=OTHER, master=None), adoptable=True)
    assert not only(stray).eligible  # followed, but the configured primary kept our history
    synced = replace(stray, primary_synced_from=True)
    assert only(synced).eligible
    # Only a primary is adopted so: a replica it follows is no candidate on that ground.
    replica = replace(cand(2, replid=OTHER), adoptable=True, primary_synced_from=True)
    assert only(replica).reason.startswith("other history")
