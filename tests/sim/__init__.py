"""Deterministic simulation of haredis: watchers, fake Redis nodes and a hostile network on a
virtual clock, driven by one seeded PRNG. See ``tests/sim/README`` in the module docstrings:

- ``scheduler``: the virtual clock and the event heap, ordered by (time, sequence number).
- ``config``: the per-seed world shape (watchers, quorum, replicas, timings, settings).
- ``redis_node``: fake Redis nodes (roles, replication histories, offsets, writer, resyncs).
- ``network``: delays, jitter, drops, duplicates, reordering, symmetric and one-way cuts.
- ``watcher_host``: a watcher process around the pure core (clock offset, pauses, crashes at
  any point of a batch, a disk holding exactly the last executed ``PersistState``).
- ``faults``: the fault schedule generated from the seed, and how each fault is applied.
- ``history``: when each node, watcher, link and the network was disturbed (for invariants).
- ``invariants``: the safety and liveness checks, run on every delivered event.
- ``trace``: the compact trace, its hash, and the human timeline printed with ``--trace``.
- ``world``: composes the above and runs one seed.
- ``runner`` / ``__main__``: ``python -m tests.sim --seeds N [--start S] [--jobs J] [--trace]``.

Nothing here touches a real socket, thread, sleep or wall clock: a seed replays exactly.
"""
