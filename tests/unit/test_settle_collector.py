"""Once the daemon is ready it moves what start-up built out of the cyclic collector's way
(haredis.daemon.settle_collector): those objects are no longer scanned, and full
collections become rarer. Both are process-wide settings, restored after the test."""

from __future__ import annotations

import gc

from haredis.daemon import FULL_COLLECTION_EVERY, settle_collector


def test_settle_collector_freezes_what_exists_and_spaces_full_collections() -> None:
    threshold = gc.get_threshold()
    long_lived = [[index] for index in range(1000)]  # containers the collector tracks
    try:
        settle_collector()
        assert gc.get_freeze_count() >= len(long_lived)
        assert gc.get_threshold() == (threshold[0], threshold[1], FULL_COLLECTION_EVERY)
        # Cyclic garbage made afterwards is still found by a collection.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
