"""Probe phases within a group: the instances of one primary are probed on the same tick.

A replica is found by its primary's INFO, after the primary's first probe; without alignment
it keeps its own phase for ever and a calm group is visited on two ticks of every ping
period. Alignment may probe a steady instance early (never sooner than half a period after
its last probe), and an instance failing hard (re-probed fast) never drags its siblings.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from haredis.core.actions import Probe
from haredis.core.model import Address

from .helpers import R1, R2, P, Rig, primary_settings, watcher_settings

STEP = 0.1  # tick interval of the rig


def _regular(gap: float) -> bool:
    """One ping period on the tick grid: 1 s, or one tick more when float rounding puts the
    due time just after a tick."""
    return 1.0 - 1e-6 <= gap <= 1.0 + STEP + 1e-6


def _rig() -> Rig:
    # down_after 10 s: ping period 1 s, ten ticks per period.
    settings = watcher_settings(electorate=1, primary=primary_settings(quorum=1, down_after=10.0))
    return Rig.standard(settings)


def _probe_times(rig: Rig, seconds: float) -> dict[Address, list[float]]:
    """Run the rig tick by tick; when each instance was probed."""
    times: dict[Address, list[float]] = defaultdict(list)
    for _ in range(round(seconds / STEP)):
        first = len(rig.watcher.batches)
        rig.run(STEP, STEP)
        for batch in rig.watcher.batches[first:]:
            for action in batch:
                if isinstance(action, Probe):
                    times[action.address].append(round(rig.now, 6))
    return times


def test_replicas_found_after_the_primary_are_probed_on_its_tick() -> None:
    rig = _rig()
    times = _probe_times(rig, 6.0)
    assert times[R1] and times[R2], times
    # The replicas' first probe follows the primary's INFO, a tick after its first probe;
    # from the next period on they share its ticks.
    late = [t for t in times[P] if t >= 2.0]
    assert late
    for replica in (R1, R2):
        assert [t for t in times[replica] if t >= 2.0] == late, (replica, times)


def test_no_instance_is_probed_twice_within_half_a_period() -> None:
    rig = _rig()
    times = _probe_times(rig, 8.0)
    for address, sent in times.items():
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        assert gaps and min(gaps) >= 0.5 - 1e-6, (address, sent)
        # Once aligned, every instance keeps the regular period.
        assert all(_regular(g) for g in gaps[2:]), (address, sent)


def test_an_instance_failing_hard_does_not_drag_its_siblings() -> None:
    rig = _rig()
    _probe_times(rig, 3.0)
    rig.nodes[R2].mode = "refused"
    times = _probe_times(rig, 3.0)
    # The refused replica is re-probed fast (crash_detect / 3, on the tick grid) ...
    gaps_r2 = [b - a for a, b in itertools.pairwise(times[R2])]
    assert gaps_r2 and min(gaps_r2) < 0.5, times[R2]
    # ... while its siblings keep their one probe per period.
    for address in (P, R1):
        gaps = [b - a for a, b in itertools.pairwise(times[address])]
        assert gaps and all(_regular(g) for g in gaps), (address, times[address])
