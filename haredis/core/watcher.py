"""Placeholder: the Watcher is being written. API contract:

    Watcher(settings: WatcherSettings, durable: DurableState, now: float)
    Watcher.handle(event: Event) -> list[Action]
    Watcher.snapshot() -> Snapshot
    Watcher.durable -> DurableState
"""
