"""The named scenarios of issue 7. Each is a body for :func:`harness.run`; the generic checker
runs after every one, and a scenario adds its own expectations with ``session.expect``.

Hosts: r1 (primary at start), r2, r3 (replicas), w1 w2 w3 (watchers, quorum 2,
down_after 1000 ms) and c1 (the writer). Durations are fixed so one scenario stays under a
minute including setup and convergence.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from .checker import final_keys, leader_claims
from .harness import Session
from .rig import REDIS_HOSTS, WATCHER_HOSTS

PARTITION_S = 10.0


def jepsen_2013(s: Session) -> None:
    """{primary + writer + one watcher} | {replicas + majority of watchers}: the majority fails
    over; without fencing the old primary keeps acknowledging plain writes that are lost on heal.
    WAIT 1 cannot succeed on the minority side, so no wait-acked write may be lost."""
    s.rig.partition(
        ["r1", "c1", "w1"], ["r2", "r3", "w2", "w3"], label="partition 2013: r1,c1,w1 | r2,r3,w2,w3"
    )
    s.sleep(PARTITION_S)
    s.after_converge.append(lambda: _outlook_names_two_candidates(s))


def _outlook_names_two_candidates(s: Session) -> None:
    """The diagnostic a non-converging run prints (Rig.failover_outlook) works against the
    real daemons: converged, each watcher ranks the two replicas, and one at least is
    eligible (the old primary may still be in its full resync: "other history")."""
    replicas = [n for n in REDIS_HOSTS if n != s.rig.current_primary_guess()]
    for watcher in ("w1", "w2", "w3"):
        outlook = s.rig.failover_outlook(watcher)
        named = all(f"{r}: " in outlook for r in replicas) and len(replicas) == 2
        s.expect(named and ": eligible" in outlook, f"unexpected failover outlook: {outlook}")


def watcher_split(s: Session) -> None:
    """A watcher alone (minority: it must not fail over), then the majority of watchers cut from
    the primary and from the minority watcher (majority: it may fail over)."""
    others = [h for h in s.rig.hosts if h != "w1"]
    s.rig.partition(["w1"], others, label="watcher minority: w1 | everyone else")
    s.sleep(5.0)
    s.rig.heal()
    s.sleep(2.0)
    s.rig.partition(["w1", "r1"], ["w2", "w3"], label="watcher majority: w2,w3 | w1,r1 (r2,r3,c1 see all)")
    s.sleep(7.0)


def one_way(s: Session) -> None:
    """The primary stops hearing two watchers and the replicas (they still hear it: one-way).
    TCP needs both directions, so those links fail while w1 and the writer keep the primary."""
    primary = s.primary()
    s.rig.one_way([primary], ["w2", "w3", *(r for r in REDIS_HOSTS if r != primary)])
    s.sleep(PARTITION_S)


def bridge(s: Session) -> None:
    """{r1, c1, w1} and {r2, r3, w3} cannot talk; w2 sees both sides (Jepsen's bridge)."""
    s.rig.partition(
        ["r1", "c1", "w1"], ["r2", "r3", "w3"], label="bridge: r1,c1,w1 | r2,r3,w3 (w2 sees both)"
    )
    s.sleep(PARTITION_S)


def kill_leader_mid_failover(s: Session) -> None:
    """kill -9 the primary, then kill -9 the watcher that wins the election the moment its log
    says so (a failover takes ~50 ms from election to switch, so this lands in the middle of it
    most of the time; the note says which phase it hit). The survivors must still agree on one
    primary: a new epoch, a new leader."""
    tails = {w: _LogTail(s.rig.hosts[w].log_path) for w in WATCHER_HOSTS}
    old = s.primary()
    s.rig.kill(old)
    leader = None
    deadline = time.monotonic() + 8.0
    while leader is None and time.monotonic() < deadline:
        for w, tail in tails.items():
            if any("+elected-leader" in line for line in tail.new_lines()):
                leader = w
                break
        else:
            time.sleep(0.003)
    s.expect(leader is not None, "no watcher was elected within 8 s of the primary's kill")
    if leader is None:
        return
    s.rig.kill(leader)
    done = "+failover-end" in s.rig.hosts[leader].log_text()
    s.result.notes.append(f"leader {leader} killed {'after' if done else 'before'} its +failover-end")
    s.sleep(5.0)
    s.rig.event(f"start watcher {leader} again")
    s.rig.spawn_watcher(leader)
    s.sleep(3.0)


class _LogTail:
    """The lines appended to a file since the last call (cheap enough to poll every few ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in lines]


def pause_primary_short(s: Session) -> None:
    """SIGSTOP the primary for half of down_after: nobody may fail over."""
    primary = s.primary()
    s.rig.pause(primary)
    s.sleep(0.5)
    s.rig.resume(primary)
    s.sleep(4.0)
    s.expect(not leader_claims(s.rig), "a failover after a pause shorter than down_after")


def pause_primary_long(s: Session) -> None:
    """SIGSTOP the primary for 4 s (4 x down_after): a failover, and the old primary is demoted
    when it comes back."""
    primary = s.primary()
    s.rig.pause(primary)
    s.sleep(4.0)
    s.rig.resume(primary)
    s.sleep(5.0)
    s.expect(bool(leader_claims(s.rig)), "no failover during a pause 4x longer than down_after")


def flapping(s: Session) -> None:
    """The 2013 cut comes and goes 10 times at random 0.3-1.5 s intervals (seeded)."""
    rng = random.Random(7)
    for i in range(10):
        s.rig.partition(["r1", "c1", "w1"], ["r2", "r3", "w2", "w3"], label=f"flap {i + 1} down")
        s.sleep(rng.uniform(0.3, 1.5))
        s.rig.set_blocked((), f"flap {i + 1} up")
        s.sleep(rng.uniform(0.3, 1.5))


def repeated_failovers(s: Session) -> None:
    """Three times: kill -9 the primary, wait for a new one, restart the dead node (empty, as a
    replica of the new primary) and let it sync."""
    for round_no in range(3):
        old = s.primary()
        s.rig.kill(old)
        new = _wait_for_new_primary(s, old, timeout=10.0)
        s.expect(new is not None, f"round {round_no + 1}: no new primary within 10 s of killing {old}")
        s.restart_redis(old)
        # It must hold the data again before the next round (a full sync waits Redis's
        # repl-diskless-sync-delay, 5 s), and min_failover_interval_ms must have passed.
        s.expect(_wait_in_sync(s, old, timeout=20.0), f"round {round_no + 1}: {old} did not sync again")
        s.sleep(1.0)
    s.expect(len({c.epoch for c in leader_claims(s.rig)}) >= 3, "fewer than 3 failovers in 3 rounds")


def _wait_in_sync(s: Session, node: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        primary = s.rig.current_primary_guess()
        try:
            if primary is not None and s.rig.role(node) == ("slave", s.rig.hosts[primary].ip):
                return True
        except Exception:
            pass  # not answering yet
        time.sleep(0.2)
    return False


def _wait_for_new_primary(s: Session, old: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        guess = s.rig.current_primary_guess()
        if guess is not None and guess != old:
            return guess
        time.sleep(0.1)
    return None


def primary_restart_empty(s: Session) -> None:
    """kill -9 the primary and start it again at once, empty and as a primary (persistence off,
    auto-restart on). Redis's replicas would resync from it and drop everything; haredis must
    not let that happen: every write wait-acked before the kill must still be on every node."""
    s.sleep(1.0)
    primary = s.primary()
    before = time.time()
    s.rig.kill(primary)
    s.rig.restart_redis(primary, follow=None)
    s.sleep(8.0)
    s.after_converge.append(lambda: _no_node_wiped(s, before))


def _no_node_wiped(s: Session, before: float) -> None:
    acked_before = _wait_acked_before(s, before)
    for node in REDIS_HOSTS:
        try:
            keys = final_keys(s.rig, node)
        except Exception as exc:
            s.result.notes.append(f"cannot read {node}: {exc}")
            continue
        missing = len(acked_before - keys)
        s.expect(missing == 0, f"{node} lost {missing} of the {len(acked_before)} writes wait-acked before "
                 "the primary restarted empty")  # fmt: skip


def _wait_acked_before(s: Session, before: float) -> set[int]:
    import json

    acked: set[int] = set()
    for line in s.writes_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("wait") is not None and rec["wait"] >= 1 and rec["ack"] < before:
            acked.add(int(rec["seq"]))
    return acked


SCENARIOS: dict[str, Callable[[Session], None]] = {
    "jepsen_2013": jepsen_2013,
    "watcher_split": watcher_split,
    "one_way": one_way,
    "bridge": bridge,
    "kill_leader_mid_failover": kill_leader_mid_failover,
    "pause_primary_short": pause_primary_short,
    "pause_primary_long": pause_primary_long,
    "flapping": flapping,
    "repeated_failovers": repeated_failovers,
    "primary_restart_empty": primary_restart_empty,
}

assert set(WATCHER_HOSTS) == {"w1", "w2", "w3"}  # the scenarios name these hosts
