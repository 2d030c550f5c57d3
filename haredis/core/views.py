"""Read-only projections of a watcher's state: the snapshot views served to operators and
clients, the one-line status rows, and the `+failover-summary` line. Nothing here decides
or changes anything."""

from __future__ import annotations

from typing import NamedTuple

from haredis.core.agreement import PeerTable
from haredis.core.failover import Failover, Phase
from haredis.core.group import Group, Instance
from haredis.core.model import Address, InstanceView, PeerView, PrimaryView, Role


def primary_view(group: Group, now: float, watcher: str, peers: PeerTable, opinion_ttl: float) -> PrimaryView:
    """What `watcher` knows of one primary, its replicas and its peers' opinions of it."""
    fo = group.failover
    leader = ""
    if fo is not None and fo.phase is not Phase.ELECTION:
        leader = watcher
    elif group.durable.voted_epoch == group.durable.current_epoch:
        leader = group.durable.voted_for
    peer_views = tuple(
        PeerView(
            name=p.name,
            last_heard=p.last_heard,
            says_down=bool(v and v[0].says_down and now - v[1] <= opinion_ttl),
            current_epoch=v[0].current_epoch if v else 0,
            config_epoch=v[0].config_epoch if v else 0,
            voted_for=v[0].voted_for if v else "",
            voted_epoch=v[0].voted_epoch if v else 0,
            in_hold=p.in_hold,
        )
        for p in sorted(peers.peers.values(), key=lambda p: p.name)
        for v in (p.views.get(group.name),)
    )
    return PrimaryView(
        name=group.name,
        address=group.address,
        config_epoch=group.durable.config_epoch,
        current_epoch=group.durable.current_epoch,
        primary=instance_view(group.instances[group.address], now),
        replicas=tuple(instance_view(i, now) for i in group.replicas()),
        peers=peer_views,
        sdown=group.primary_down,
        odown=group.odown,
        odown_votes=group.odown_votes,
        quorum=group.settings.quorum,
        failover_state=fo.phase.value if fo is not None else "none",
        failover_epoch=fo.epoch if fo is not None else 0,
        leader=leader,
        paused_until=group.paused_until,
        pause_reason=group.pause_reason,
        last_failover_at=group.last_failover_at,
        settings=group.settings,
    )


def instance_view(inst: Instance, now: float) -> InstanceView:
    """One instance as the detector and its latest INFO see it."""
    info = inst.info
    det = inst.detector
    return InstanceView(
        address=inst.address,
        role=info.role if info is not None else Role.UNKNOWN,
        run_id=info.run_id if info is not None else "",
        sdown=det.down,
        sdown_since=det.down_since,
        last_ok=det.last_ok,
        last_probe_sent=det.last_probe_sent,
        last_error=det.last_error,
        info_age=None if inst.info_at is None else now - inst.info_at,
        offset=info.offset if info is not None else 0,
        priority=info.priority if info is not None else 100,
        link_up=info.link_up if info is not None else False,
        link_down_seconds=info.link_down_seconds if info is not None else 0.0,
        master=info.master if info is not None else None,
        replid=info.replid if info is not None else "",
        announced=info.announced if info is not None else True,
    )


def failover_summary(group: Group, fo: Failover, now: float) -> str:
    """`+failover-summary` (haredis's own channel): one key=value line per finished failover,
    published by its leader, for `haredis history` and the phase metrics. Seconds."""

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    durations = fo.phase_durations
    reason = "switchover" if fo.switchover else "forced" if fo.forced else "odown"
    lost = "-"
    if fo.primary_offset is not None and fo.target_offset is not None and not fo.switchover:
        lost = str(max(0, fo.primary_offset - fo.target_offset))
    elif fo.switchover:
        lost = "0"  # FAILOVER TO waits until the target has every acknowledged write
    promote = durations.get(Phase.SELECT.value, 0.0) + durations.get(Phase.PROMOTE.value, 0.0)
    promote += durations.get(Phase.VERIFY.value, 0.0)
    return (
        f"{group.name} epoch={fo.epoch} old={fo.old_primary} new={fo.target} reason={reason}"
        f" detect={secs(fo.detect)} agree={secs(fo.agree)}"
        f" elect={secs(durations.get(Phase.ELECTION.value))} promote={secs(promote)}"
        f" reconfigure={secs(durations.get(Phase.RECONF.value))} total={secs(now - fo.started_at)}"
        f" lost_bytes={lost} seen={fo.replicas_seen}/{fo.replicas_known}"
    )


class StatusRow(NamedTuple):
    """One primary in the one-line status (see Watcher.status_rows)."""

    name: str
    failover_state: str  # "none" or the failover's phase
    failover_epoch: int
    odown: bool
    sdown: bool
    address: Address
    config_epoch: int
    ok_replicas: int  # replicas not subjectively down
    replicas: int


def status_row(group: Group) -> StatusRow:
    """One primary's row of the one-line status, read straight from the state (a snapshot
    builds a view of every instance and peer: with a thousand primaries that cost more than
    the tick it followed). Agrees with primary_view()."""
    fo = group.failover
    replicas = group.replicas()
    return StatusRow(
        name=group.name,
        failover_state=fo.phase.value if fo is not None else "none",
        failover_epoch=fo.epoch if fo is not None else 0,
        odown=group.odown,
        sdown=group.primary_down,
        address=group.address,
        config_epoch=group.durable.config_epoch,
        ok_replicas=sum(1 for inst in replicas if not inst.detector.down),
        replicas=len(replicas),
    )
