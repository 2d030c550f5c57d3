"""The calm group's short evaluation (Watcher._evaluate_calm) changes no decision.

A healthy reply in a calm group, and a tick's visit of a group filed calm, skip the general
evaluation, but not when an instance's down verdict has fallen due: the general path would
publish it then, and so must the short one (it falls back). The 500-seed simulator trace
hash covers the rest; these pin the cases a skipped evaluation would get wrong.
"""

from __future__ import annotations

from haredis.core.events import ProbeReply
from haredis.core.group import Group

from .helpers import NAME, R2, CheckedWatcher, P, Rig, primary_settings, watcher_settings
from .test_tick_schedule import TwinRig

STEP = 0.1  # tick interval


class GeneralPathOnly(CheckedWatcher):
    """The reference: every reply and visit takes the general path (_evaluate)."""

    def _evaluate_calm(self, group: Group) -> bool:
        return False


def _rig(kind: type[CheckedWatcher] = CheckedWatcher) -> Rig:
    # down_after 10 s: ping period 1 s, probe timeout 1 s; no peers.
    settings = watcher_settings(electorate=1, primary=primary_settings(quorum=1, down_after=10.0))
    standard = Rig.standard(settings)
    rig = TwinRig(settings, standard.nodes, kind=kind)
    rig.run(5.0, STEP)  # steady: every instance answering, the group calm
    rig.nodes[R2].mode = "hang"
    return rig


def _sdown_times(rig: Rig) -> list[float]:
    return [round(at, 6) for at, _, message in rig.events("+sdown") if f"{R2.host}:{R2.port}" in message]


def test_a_sibling_going_down_between_ticks_is_declared_on_a_healthy_reply() -> None:
    # First the tick on which the hung replica is declared down, ticking only.
    reference = _rig()
    reference.run_until(lambda: _sdown_times(reference), limit=15.0, step=STEP)
    declared_at = _sdown_times(reference)[0]

    # The same run to the tick before, then a PONG from the primary halfway to that tick:
    # by then the replica has gone unanswered for more than down_after.
    rig = _rig()
    rig.run(round(declared_at - STEP - rig.now, 6), STEP)
    assert not _sdown_times(rig)
    reply_at = round(declared_at - STEP / 2, 6)
    rig.now = reply_at
    rig.handle(ProbeReply(now=reply_at, primary=NAME, address=P, reply="PONG"))
    assert _sdown_times(rig) == [reply_at]


def test_a_healthy_reply_in_a_calm_group_publishes_nothing() -> None:
    rig = _rig()
    rig.nodes[R2].mode = "up"
    rig.run(3.0, STEP)
    published = len(rig.published)
    reply_at = round(rig.now + STEP / 2, 6)
    rig.now = reply_at
    actions = rig.handle(ProbeReply(now=reply_at, primary=NAME, address=P, reply="PONG"))
    assert actions == []
    assert len(rig.published) == published


def test_a_hung_replica_is_declared_down_on_the_same_tick_as_by_the_general_path() -> None:
    # Ticks only, off the grid of the probe timeouts (1 s): the replica's verdict falls due
    # on a visit of a group filed calm, not on one of its failed probes.
    rigs = [_rig(), _rig(GeneralPathOnly)]
    for rig in rigs:
        rig.run(15.0, 0.07)
    declared = [_sdown_times(rig) for rig in rigs]
    assert declared[0], declared
    assert declared[0] == declared[1]
