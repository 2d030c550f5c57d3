"""The daemon's status line is built from the core's status rows (Watcher.status_rows), not
from a snapshot; it must read exactly as the snapshot's status line at every step of a
primary's life: healthy, a replica down, the primary down, a failover in each of its phases,
the new topology, and hold."""

from __future__ import annotations

from haredis.core.events import Tick
from haredis.runtime import status_line, status_text
from tests.core.helpers import NAME, R1, P, Rig


def _both(rig: Rig) -> tuple[str, str]:
    watcher = rig.watcher
    return status_line(watcher.snapshot()), status_text(watcher.in_hold, watcher.status_rows())


def test_status_rows_read_as_the_snapshot_through_a_failover_and_a_hold() -> None:
    rig = Rig.standard()
    seen: set[str] = set()

    def check() -> None:
        from_snapshot, from_rows = _both(rig)
        assert from_rows == from_snapshot
        seen.add(from_rows)

    def run(seconds: float) -> None:
        for _ in range(round(seconds / 0.05)):
            rig.run(0.05)
            check()

    run(2.0)
    rig.nodes[R1].mode = "refused"
    run(2.0)
    rig.nodes[P].mode = "refused"
    for _ in range(200):
        if rig.view().sdown:
            break
        run(0.05)
    run(0.1)  # down, and no peer agrees yet
    rig.gossip("w2", says_down=True)
    rig.gossip("w3", says_down=False)
    for _ in range(200):
        if rig.vote_requests():
            break
        run(0.05)
    [request] = rig.vote_requests()
    rig.grant("w2", request.epoch)
    for _ in range(200):
        if rig.events("+failover-end"):
            break
        run(0.05)
    run(1.0)
    rig.handle(Tick(now=rig.now + 30.0))  # a clock jump: hold
    rig.now += 30.0
    check()
    assert rig.watcher.in_hold
    # Every state the line can show was compared, not only the healthy one.
    joined = " | ".join(sorted(seen))
    for expected in ("ok", "replicas=1/2", "sdown", "ODOWN", "failing over (epoch 1", "epoch=1", "HOLD"):
        assert expected in joined, (expected, joined)
    assert f"{NAME} ok primary={P}" in joined


def test_no_primaries() -> None:
    assert status_text(False, []) == "no primaries"
