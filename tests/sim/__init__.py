"""Deterministic simulation of haredis: watchers running the real pure core, fake Redis nodes
and a hostile network on a virtual clock, driven by one ``random.Random(seed)``. Nothing here
touches a real socket, thread, sleep or wall clock, so a seed replays exactly.

Run it::

    python -m tests.sim --seeds 2000 [--start 0] [--jobs 2]      # last line: seeds=… trace_hash=…
    python -m tests.sim --seeds 1 --start 42 --trace              # a readable timeline of one seed
    pytest tests/sim --sim-seeds=500                              # what `make test` runs

Modules (one job each):

- ``scheduler``: the virtual clock and the event heap, ordered by (time, sequence number).
- ``config``: the per-seed world (watchers, quorum, replicas, priorities, timings, settings).
- ``redis_node``: fake Redis nodes (roles, replid/replid2, offsets, the writer, PSYNC/full
  resync, kill/pause/restart/EMPTY restart, min-replicas-to-write with per-replica acks and
  whole-second clocks, CLIENT PAUSE WRITE (a paused replica reads but does not apply), the
  selection's freeze (REPLICAOF 127.0.0.1:0 between two INFOs), WAIT acknowledgements) and
  ``Lineage``, the ground truth of histories.
- ``fencing``: the executor's side of write fencing (``Fence``; a ``Promote`` that pauses,
  then demotes and unpauses the old primary), each step on the simulated network.
- ``network``: delay + jitter, drop, duplicate, reorder; symmetric and one-way cuts.
- ``watcher_host``: one watcher process around the core (clock offset and jumps, pauses,
  crashes between any two actions of a batch, a disk holding the last executed PersistState).
- ``faults``: the fault schedule drawn from the seed, how each fault applies, the final heal.
- ``history``: when each node, watcher, link and the network was disturbed.
- ``invariants``: the checks (see its docstring), run on the step that could break each;
  ``write_fence`` measures split brains (nodes accepting writes at once) for invariant 13;
  ``wait_acks`` keeps the WAIT-confirmed writes and judges invariant 14 (none lost by a
  promotion made while the leader could see every replica).
- ``trace``: compact records of every event and action, the trace hash, the human timeline.
- ``world``: composes the above and runs one seed; ``runner``/``__main__``: many seeds.
- ``toy_watcher``: a tiny contract-following watcher with switchable bugs, used only to prove
  that each checker catches the bug it is meant to catch.

What the simulator does NOT model (so the checks cannot speak for it):

- The runtime (asyncio driver, redis_link, peers, state.py): the core is driven directly, as
  the runtime would drive it. No serialisation, signing or authentication of peer messages.
  A failed disk write (the executor would stop the watcher) is not injected.
- Redis details: one logical replication stream per node (no RDB/AOF timing: a restart
  either keeps everything or is EMPTY; a persistent restart keeps its replid and offset),
  no replica-serve-stale-data
  (never MASTERDOWN), no BUSY/NOAUTH replies, no replica-announced=no, no memory limits.
  Every node that accepts writes gets them at the same rate (clients that stick to a stale
  primary); plain acknowledged-write loss is therefore not measured, only where data went,
  how long two nodes accepted writes at once, and which WAIT-confirmed writes were lost:
  every offset a replica applies while linked to a primary counts as acknowledged at once
  (WAIT 1 with no timeout, so a late ack confirms too: stricter than a client's WAIT 1 500).
  A replica's last_io is refreshed on every replication tick while its master is reachable
  (real Redis: on data, or the 1 s ping when fenced); a SIGSTOPped primary reads acks
  buffered during the stop as fresh on SIGCONT.
- Networks: delays are independent per message (no bandwidth, no per-connection FIFO beyond
  one request/reply), Redis links never duplicate; reachability is decided when a message is
  sent. Replication follows the cuts between nodes, not watcher-to-node cuts.
- Clocks: a jump shifts the watcher's monotonic clock (which a real monotonic clock would
  not do backwards); timeouts of in-flight requests run on true time.
- Configuration: one monitored primary, fixed membership, no SENTINEL SET/RESET, no
  operator commands other than an occasional SENTINEL FAILOVER, no switchover.
- Sentinel clients (redis-py discovery) and hooks are not simulated.
"""
