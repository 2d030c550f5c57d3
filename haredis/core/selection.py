"""Which replica to promote: exclusions, then a ranking. Pure functions over plain records.

Excluded (each with the reason an operator sees in `haredis failover --dry-run`):
  down            the replica itself is subjectively down
  unreachable     the last probe did not get a valid reply
  no INFO         we never read its INFO, so we know nothing of its data
  stale INFO      its INFO is older than `max_info_age` (selection re-reads INFO first)
  not a replica   it reports role master (e.g. promoted by an earlier aborted attempt), and
                  is not an ex-primary of the history ours forked from that stopped at or
                  before the fork (see _stray_ancestor: those are candidates)
  priority 0      replica-priority 0 means "never promote me"
  link down       its link to the primary has been down longer than `max_link_down` (not
                  one that follows nothing: a freeze detached it, its data is as it was;
                  not the stranded configured primary itself: its data is the reference)
  other history   its data is not a prefix of the primary's replication history (see
                  _same_history): its offsets mean nothing here
Ranked: lower priority first, then higher replication offset, then smaller run id (an
unknown run id last), which is Sentinel's order.
"""

from __future__ import annotations

from dataclasses import dataclass

from haredis.core.model import Address, InstanceInfo, Role


@dataclass(frozen=True, slots=True)
class Candidate:
    address: Address
    down: bool
    reachable: bool
    info: InstanceInfo | None
    info_age: float | None  # seconds since that INFO was read
    # Already a primary that the configured primary itself now follows: a promotion that
    # happened behind our back (a FAILOVER that ran late). Promoting it again is a no-op
    # that lets the watchers ratify the topology Redis already has.
    adoptable: bool = False
    # ... and the configured primary already took its data (its replid is this one's): it
    # resynced from it, so whatever it held past that is gone from it already, and adopting
    # this node loses nothing more (simulator seed 1405: a watcher that had not learned the
    # newest promotion demoted the new primary under the old one, then the newest topology
    # was agreed; nothing else was eligible and no failover could start).
    primary_synced_from: bool = False
    # The configured primary itself, demoted into a replica that nothing feeds (see the
    # watcher's _stranded_primary): its data is the history's own, however long its link has
    # been down, so re-promoting it loses nothing.
    stranded_primary: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    address: Address
    eligible: bool
    reason: str  # why excluded, or "eligible"
    priority: int
    offset: int
    lag: int | None  # bytes behind the primary's last known offset, None if unknown
    run_id: str


@dataclass(frozen=True, slots=True)
class History:
    """The primary's replication history, as far as we know it ("" / -1: unknown)."""

    replid: str = ""
    replid2: str = ""  # the history it was promoted from
    fork: int = -1  # second_repl_offset: the first offset NOT shared with replid2


def _same_history(info: InstanceInfo, history: History) -> bool:
    """Is this replica's data a prefix of the primary's history?

    * On the primary's replid: yes.
    * Still on the replid the primary was promoted from (not resynced yet): yes, if it does
      not reach past the fork point; a replica that went on taking writes on the old history
      after the fork (an old primary that kept accepting writes) has diverged.
    * Its own replid2 is the primary's replid: it was PROMOTED away from the primary's
      history at some point and may have taken writes: excluded.
    * The primary's replid is not known yet (a topology learned from a peer): a replica
      that already resynced to it shows the predecessor as its replid2: yes, if it switched
      at or before the fork (its own second_repl_offset is its offset at the switch + 1;
      Redis always reports it with a replid2, so -1 means a reply that lacks it). A
      node promoted from the same predecessor later than ours (a competing leader's
      promotion: simulator seed 1014004) shows the same replid2 with a later switch: a
      sibling history that diverged from ours.
    * Nothing known (first start): no history to hold anyone to."""
    if not history.replid and not history.replid2:
        return True
    if info.replid and info.replid == history.replid:
        return True
    if info.replid and info.replid == history.replid2:
        return history.fork < 0 or info.offset < history.fork
    return (
        not history.replid
        and bool(history.replid2)
        and info.replid2 == history.replid2
        and (history.fork < 0 or info.second_repl_offset < 0 or info.second_repl_offset <= history.fork)
    )


def _stray_ancestor(info: InstanceInfo, history: History, *, past_fork: bool) -> bool:
    """A primary on the history ours forked from: an old primary that was replaced while it
    was paused or cut off. Holding nothing past the fork point, its data is a prefix of ours
    and it may stand in for a replica: when the primary after it is lost before any replica
    finished syncing from it, it can be the only node left with the writes clients confirmed
    (chaos schedule:1014). Past the fork (writes it took, or had not sent, when it was
    replaced) only with `past_fork`: when our primary came back empty, so nothing of our
    history beyond the fork survives on it."""
    return (
        info.role is Role.PRIMARY
        and bool(history.replid2)
        and info.replid == history.replid2
        and info.offset >= 0
        and (past_fork or info.offset < history.fork)
    )


def _exclusion(
    c: Candidate, history: History, max_info_age: float, max_link_down: float, *, past_fork: bool
) -> str | None:
    if c.down:
        return "down"
    if not c.reachable:
        return "unreachable"
    if c.info is None or c.info_age is None:
        return "no INFO"
    if c.info_age > max_info_age:
        return f"stale INFO ({c.info_age:.1f}s old)"
    info = c.info
    if (
        info.role is not Role.REPLICA
        and not (c.adoptable and info.role is Role.PRIMARY)
        and not _stray_ancestor(info, history, past_fork=past_fork)
    ):
        return f"not a replica (role {info.role.value})"
    if info.priority == 0:
        return "priority 0"
    # A replica that follows nothing (master_port 0) was detached by a selection's freeze:
    # its link is down on purpose and its data is as of the freeze. When the leader that
    # froze it died before repointing it, it must stay a candidate for the next attempt
    # (chaos schedule:1011: excluded for "link down", no candidate was left).
    if (
        not info.link_up
        and info.link_down_seconds > max_link_down
        and info.master is not None
        and not c.stranded_primary
    ):
        return f"link down {info.link_down_seconds:.0f}s"
    if not (
        _same_history(info, history)
        or (c.adoptable and bool(history.replid) and info.replid2 == history.replid)
        or (c.adoptable and c.primary_synced_from and info.role is Role.PRIMARY)
        or _stray_ancestor(info, history, past_fork=past_fork)
        or (past_fork and bool(history.replid) and info.replid2 == history.replid)
    ):
        return f"other history (replid {info.replid[:8] or '?'})"
    return None


def rank(
    candidates: list[Candidate],
    *,
    history: History,
    primary_offset: int | None,
    max_info_age: float,
    max_link_down: float,
    primary_lost_data: bool = False,
) -> list[Verdict]:
    """Every candidate with its verdict: the eligible ones first, best first.

    `primary_lost_data`: the primary restarted empty, so nothing of our history survives on
    it: an old primary of the parent history is then a candidate even past the fork (see
    _stray_ancestor), and so is a node on a history that forked from ours (replid2 = our
    replid: promoted away from it, or a replica of such a node), which holds our history up
    to its fork and more (chaos schedule:1014: the only copy, on a frozen replica)."""
    verdicts: list[Verdict] = []
    for c in candidates:
        reason = _exclusion(c, history, max_info_age, max_link_down, past_fork=primary_lost_data)
        info = c.info
        offset = info.offset if info is not None else 0
        lag = None
        if info is not None and primary_offset is not None:
            lag = max(0, primary_offset - offset)
        verdicts.append(
            Verdict(
                address=c.address,
                eligible=reason is None,
                reason=reason or "eligible",
                priority=info.priority if info is not None else 0,
                offset=offset,
                lag=lag,
                run_id=info.run_id if info is not None else "",
            )
        )
    verdicts.sort(key=_sort_key)
    return verdicts


def _sort_key(v: Verdict) -> tuple[bool, int, int, bool, str, Address]:
    # Eligible first; then priority ascending, offset descending, run id ascending with an
    # unknown run id last; the address only makes the order total (deterministic).
    return (not v.eligible, v.priority, -v.offset, v.run_id == "", v.run_id, v.address)


def best(verdicts: list[Verdict]) -> Verdict | None:
    return verdicts[0] if verdicts and verdicts[0].eligible else None


def within_lag(verdicts: list[Verdict], max_lag_bytes: int | None) -> list[Verdict]:
    """The verdicts, in order, with eligible replicas lagging more than the gate removed.

    The gate is a filter, not a veto on the top-ranked replica: a preferred (lower priority)
    replica that lags must not block a fresh one. A lag we cannot compute (the primary's
    offset is unknown) passes the gate: we only refuse what we know to be behind."""
    if max_lag_bytes is None:
        return verdicts
    return [v for v in verdicts if not v.eligible or v.lag is None or v.lag <= max_lag_bytes]
