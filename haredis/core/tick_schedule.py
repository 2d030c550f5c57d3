"""Which groups a Tick must visit: the tick scheduler of the decision core.

Visiting a group on a tick (probes and INFO due, verdicts, steady-state topology) used to
happen for every group on every tick: with a thousand primaries that was most of a watcher's
CPU, although almost every visit found nothing to do. Now a group is visited on a tick only
when it is restless (see `calm`) or when something of it falls due (`next_due`): the visit
does exactly what it did before, and the visits skipped are the ones that could not have
changed anything (tests/core/test_tick_schedule.py compares both ways, action for action).
The Watcher files a group again after every visit and every event that names it.
"""

from __future__ import annotations

import heapq
import math

from haredis.core import election
from haredis.core.group import Group
from haredis.core.model import Role, WatcherSettings

# A watcher starting with this many groups spreads their first probes over a whole ping
# period (fewer: over a proportional share of it). See TickSchedule.start_slot.
_START_SPREAD_GROUPS = 100


class TickSchedule:
    """A calm group waits in a heap of (due, order, name) until something of it is due; a
    restless one is visited on every tick. A heap entry is live only while it matches
    `_due_at` (older ones are skipped when popped). In hold and after a reload (new
    settings) every group is restless until its next visit files it again."""

    def __init__(self, groups: dict[str, Group], settings: WatcherSettings, now: float) -> None:
        self._due: list[tuple[float, int, str]] = []
        self._due_at: dict[str, float] = {}
        self._restless: set[str] = set()
        # The groups the last `take` found due in the heap: filed calm, unchanged since.
        self.taken_calm: set[str] = set()
        self._order: dict[str, int] = {name: i for i, name in enumerate(groups)}
        self._scheduled_for = settings
        self._started_at = now  # first probes and INFO are spread over one period from here
        for name, group in groups.items():
            self._due_at[name] = first = self.first_visit_at(group)
            heapq.heappush(self._due, (first, self._order[name], name))

    def is_current(self, settings: WatcherSettings) -> bool:
        """False after a reload until the next tick has filed every group again."""
        return settings is self._scheduled_for

    def visit_every_group(self, groups: dict[str, Group], settings: WatcherSettings) -> None:
        """In hold and after a reload every group is visited on every tick, as before."""
        self._scheduled_for = settings
        self._order = {name: i for i, name in enumerate(groups)}
        self._due.clear()
        self._due_at.clear()
        self._restless = set(groups)

    def take(self, now: float, groups: dict[str, Group]) -> list[Group]:
        """The groups this tick must visit, in configuration order: the restless ones and
        the calm ones whose time has come (their heap entries are consumed)."""
        names = set(self._restless)
        heap, live = self._due, self._due_at
        taken_calm = self.taken_calm = set()
        while heap and heap[0][0] <= now:
            at, _, name = heapq.heappop(heap)
            if live.get(name) == at:
                del live[name]
                taken_calm.add(name)
        names |= taken_calm
        order = self._order
        return [groups[name] for name in sorted(names, key=order.__getitem__) if name in groups]

    def file(self, group: Group, settings: WatcherSettings, in_hold: bool) -> None:
        """File a group after a visit or an event: restless, or calm until next_due."""
        name = group.name
        if settings is not self._scheduled_for or name not in self._order:
            return  # a reload happened: the next tick visits every group and files them again
        if not calm(group, in_hold):
            self._restless.add(name)
            self._due_at.pop(name, None)
            return
        self._restless.discard(name)
        self._file_due(name, next_due(group, self))

    def filed_calm(self, name: str, settings: WatcherSettings) -> bool:
        """The group was calm when it was last filed, and nothing but the passing of time
        has changed it since (every event that changes a group files it again; a reload or
        hold empties the heap at the next tick, and settings then differ until it does)."""
        return settings is self._scheduled_for and name in self._due_at

    def refile_calm(self, group: Group) -> None:
        """File again a group known to be still calm (see Watcher._on_healthy_reply): what
        `file` does once `calm` has said yes."""
        self._file_due(group.name, next_due(group, self))

    def _file_due(self, name: str, at: float) -> None:
        if self._due_at.get(name) != at:
            self._due_at[name] = at
            heapq.heappush(self._due, (at, self._order[name], name))

    def restless(self, groups: dict[str, Group], settings: WatcherSettings) -> list[Group] | None:
        """The restless groups, or None after a reload (until the next tick, any may be)."""
        if settings is not self._scheduled_for:
            return None
        return [groups[n] for n in self._restless if n in groups]

    def first_visit_at(self, group: Group) -> float:
        """When a group is first visited: its first probes (see start_slot)."""
        return self.start_slot(group, group.settings.ping_period)

    def start_slot(self, group: Group, period: float) -> float:
        """When a group gets its first probes (period: the ping period) or its first INFO
        (the INFO period): spread from the watcher's start by a hash of the group's name, so
        that a watcher starting with a thousand primaries does not open every connection
        and send every probe and INFO at once (and they stay spread after that). The spread
        is one whole period from _START_SPREAD_GROUPS groups on and proportionally less
        below: a watcher of one group starts at once, as it always did. Once the watcher
        has run for a period, the slot is past: instances found later, and groups added by
        a reload, are probed and asked at once."""
        share = min(1.0, (len(self._order) - 1) / _START_SPREAD_GROUPS)
        return self._started_at + election.jitter("first-probe", group.name) * share * period


def calm(group: Group, in_hold: bool) -> bool:
    """Nothing about this group changes with the mere passing of time before next_due:
    no hold, no failover, no down verdict, down opinion or run of hard failures (they
    need fast re-probes and timely verdicts), no pause, and no instance that contradicts
    the topology (steady-state reconfiguration counts time). Deliberately coarse: a group
    in any doubt is restless and visited on every tick, exactly as before."""
    if (
        in_hold
        or group.failover is not None
        or group.odown
        or group.primary_down
        or group.odown_votes
        or group.role_mismatch_since is not None
        or group.restarted_empty
        or group.paused_until is not None
    ):
        return False
    # Runs after every event: identity and field comparisons, not Address.__eq__.
    primary = group.address
    host, port = primary.host, primary.port
    instances = group.instances
    primary_inst = instances.get(primary)
    for inst in instances.values():
        det = inst.detector
        if det.down_since is not None or det.hard_fail_since is not None:
            return False
        if inst.contradicting_since is not None or inst.convert_sent_at is not None:
            return False
        info = inst.info
        if info is None or inst is primary_inst:
            continue
        if info.role is Role.PRIMARY:
            return False
        master = info.master
        if info.role is Role.REPLICA and (master is None or master.port != port or master.host != host):
            return False
    return True


def next_due(group: Group, schedule: TickSchedule) -> float:
    """When a visit of this calm group would first find something to do: a probe or an
    INFO to send, the guard on an unanswered probe or INFO, or a down verdict that an
    unanswered probe would bring (see Detector). `schedule` gives the start-up slots."""
    s = group.settings
    ping_period, down_after, info_period = s.ping_period, s.down_after, s.info_period
    guard = 2.0 * s.probe_timeout
    due = math.inf
    for inst in group.instances.values():  # runs after every event: plain comparisons
        det = inst.detector
        if det.last_probe_sent is None:
            return schedule.first_visit_at(group)  # everything of a new instance is due then
        if det.in_flight_since is not None:
            at = det.in_flight_since + guard
        else:
            at = det.last_probe_sent + ping_period
        unanswered = det.unanswered_since
        if unanswered is not None and unanswered + down_after < at:
            at = unanswered + down_after
        if inst.info_asked_at is not None:
            info_due = inst.info_asked_at + 2 * info_period
        else:
            # As _schedule_probes reads them (`or`: a time of 0.0 counts as never).
            info_due = inst.info_at or -1e18
            failed_at = inst.info_failed_at or -1e18
            if info_due == failed_at == -1e18:
                info_due = schedule.start_slot(group, info_period)  # the first INFO
            else:
                info_due = (failed_at if failed_at > info_due else info_due) + info_period
        if info_due < at:
            at = info_due
        if at < due:
            due = at
    return due
