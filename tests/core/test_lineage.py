"""Which history a recorded primary is on, when two leaders' failovers crossed (simulator seed
1014004, a 20,000-seed soak).

Epoch 3's leader promoted one replica and, while repointing the others, demoted epoch 4's
freshly promoted primary to follow its own pick; epoch 4's leader then repointed that pick to
its primary. The two ended up following each other, and Redis refuses to sync from a replica
that has no master link (-NOMASTERLINK), so neither moved: the recorded primary kept its
data, the only copy of its history, as a replica that nothing feeds.

* A watcher that adopted epoch 4 from a peer guessed its primary descended from epoch 3's;
  the leader's record (the history it promoted from and the fork point) replaces the guess.
* A node promoted from the same parent history later than ours (the other leader's pick) is
  a sibling that diverged, not a replica of ours.
* The stranded primary itself is the candidate: re-promoted, it keeps its history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from haredis.core import selection
from haredis.core.events import GossipReceived
from haredis.core.messages import Gossip, PrimaryGossip
from haredis.core.model import Address, InstanceInfo, Role
from tests.core.helpers import NAME, Rig
from tests.core.world import R1, R2, Node, P, World, make_world

PARENT = "history-parent"


def _replica(replid: str, replid2: str, second_repl_offset: int, offset: int) -> InstanceInfo:
    return InstanceInfo(
        role=Role.REPLICA,
        run_id=f"run-{replid}",
        replid=replid,
        replid2=replid2,
        offset=offset,
        second_repl_offset=second_repl_offset,
        master=Address("10.0.0.9", 6379),
        link_up=False,
        link_down_seconds=1.0,
    )


def _verdict(info: InstanceInfo, history: selection.History) -> selection.Verdict:
    candidate = selection.Candidate(
        address=Address("10.0.0.5", 6379), down=False, reachable=True, info=info, info_age=0.1
    )
    (verdict,) = selection.rank(
        [candidate], history=history, primary_offset=None, max_info_age=1.0, max_link_down=60.0
    )
    return verdict


def test_a_sibling_promoted_from_the_same_parent_after_our_fork_is_other_history() -> None:
    # Our primary forked from PARENT at 1000 (its new replid not read yet). The other leader's
    # pick switched at 1500: it holds PARENT's 1000..1499 and writes of its own, none of ours.
    ours = selection.History(replid="", replid2=PARENT, fork=1000)
    sibling = _verdict(_replica("history-sibling", PARENT, 1500, 1600), ours)
    assert not sibling.eligible and sibling.reason.startswith("other history")


def test_a_replica_that_resynced_to_our_primary_at_or_before_the_fork_stays_eligible() -> None:
    ours = selection.History(replid="", replid2=PARENT, fork=1000)
    assert _verdict(_replica("history-ours", PARENT, 1000, 1200), ours).eligible
    assert _verdict(_replica("history-ours", PARENT, 900, 1200), ours).eligible
    # Without a recorded fork point nothing is known to hold it against.
    unknown_fork = selection.History(replid="", replid2=PARENT, fork=-1)
    assert _verdict(_replica("history-sibling", PARENT, 1500, 1600), unknown_fork).eligible


def test_the_leaders_recorded_fork_replaces_a_guess_made_when_adopting_its_topology() -> None:
    rig = Rig.standard()
    rig.run(2.0)  # w1 reads the primary's INFO: its history is history-1
    assert rig.watcher.durable.get(NAME).replid == "history-1"
    # The leader of epoch 4 promoted R1 from PARENT at offset 1000 (not from history-1, whose
    # own leader lost the race): its gossip carries that record.
    view = PrimaryGossip(
        name=NAME,
        says_down=False,
        current_epoch=4,
        config_epoch=4,
        address=R1,
        replid="",
        replid2=PARENT,
        fork=1000,
    )
    gossip = Gossip("w2", False, (view,), sent_ms=int(rig.now * 1000))
    rig.handle(GossipReceived(now=rig.now, gossip=gossip))
    durable = rig.watcher.durable.get(NAME)
    assert (durable.config_epoch, durable.address) == (4, R1)
    assert (durable.replid, durable.replid2, durable.fork) == ("", PARENT, 1000)


@dataclass
class ChainWorld(World):
    """The instant world, with Redis's rule for chains: a replica's link is up only while its
    chain of masters reaches a live primary (a replica with no master link refuses SYNC)."""

    def info(self, node: Node) -> InstanceInfo:
        info = super().info(node)
        if info.role is Role.REPLICA and info.link_up and not self._reaches_primary(node):
            info = replace(info, link_up=False, link_down_seconds=1.0, last_io_seconds=0.0)
        return info

    def _reaches_primary(self, node: Node) -> bool:
        seen: set[Address] = set()
        current: Node | None = node
        while current is not None and current.role is Role.REPLICA and current.address not in seen:
            seen.add(current.address)
            current = self.nodes.get(current.master) if current.master is not None else None
        return current is not None and current.role is Role.PRIMARY and current.alive


def _crossed_world() -> ChainWorld:
    """P fails over to R1 (epoch 1). Then, as in seed 1014004, R1 is demoted to follow R2,
    which another leader had promoted from P's history after R1's fork and then repointed to
    R1: the two follow each other and R2's writes of its own are not on R1's history."""
    base = make_world(offsets=(100, 90))
    world = ChainWorld(nodes=base.nodes, settings=base.settings)
    world.run(2.0)
    world.kill(P)
    world.run(6.0)
    assert [p[2] for p in world.promotions] == [R1]
    r1, r2 = world.nodes[R1], world.nodes[R2]
    assert r1.role is Role.PRIMARY and r2.master == R1
    r2.replid, r2.replid2, r2.second_repl_offset, r2.offset = "history-rival", "history-1", 96, 150
    r1.role, r1.master = Role.REPLICA, R2
    return world


def test_a_primary_stranded_in_a_replication_loop_is_promoted_again() -> None:
    world = _crossed_world()
    r1_history = world.nodes[R1].replid
    world.run(10.0)
    assert [p[2] for p in world.promotions] == [R1, R1]
    assert world.nodes[R1].role is Role.PRIMARY
    assert world.nodes[R1].replid2 == r1_history  # its data, not the rival's, goes on
    assert world.nodes[R2].master == R1
    views = {name: w.snapshot().primary(NAME) for name, w in world.watchers.items()}
    assert {(v.address, v.config_epoch) for v in views.values() if v is not None} == {(R1, 2)}


def test_the_rival_on_a_sibling_history_is_never_promoted() -> None:
    world = _crossed_world()
    world.run(1.0)  # fresh INFO of both, before the primary counts as down
    verdicts = {v.address: v for v in world.watchers["w1"].rank_candidates(NAME)}
    assert verdicts[R2].reason.startswith("other history")
    assert verdicts[R1].eligible  # the stranded primary itself
    world.run(10.0)
    assert R2 not in [p[2] for p in world.promotions]


def test_a_demoted_primary_that_follows_a_live_primary_is_not_stranded() -> None:
    # R1 (our primary) follows R2, which is a primary: data flows (R1 resyncs from it), so R1
    # is no candidate; R2, the node it resynced from, is adopted instead (seed 1405's rule).
    world = _crossed_world()
    r2 = world.nodes[R2]
    r2.role, r2.master = Role.PRIMARY, None
    world.nodes[R1].replid = r2.replid  # the resync from R2
    world.run(10.0)
    assert [p[2] for p in world.promotions] == [R1, R2]
    assert world.nodes[R1].master == R2
