"""What one watcher knows about one monitored primary ("group") and each of its instances.

Plain state, owned and changed only by the Watcher (watcher.py); kept apart so that the
decision logic, the tick scheduler (tick_schedule.py) and the read-only views (views.py) share
one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from haredis.core.detector import Detector
from haredis.core.failover import Failover
from haredis.core.messages import PrimaryGossip
from haredis.core.model import Address, InstanceInfo, PrimaryDurable, PrimarySettings, Role


@dataclass(slots=True)
class Instance:
    address: Address
    detector: Detector
    info: InstanceInfo | None = None
    info_at: float | None = None
    info_failed_at: float | None = None
    info_asked_at: float | None = None
    contradicting_since: float | None = None
    contradiction: tuple[Role, Address | None] | None = None  # what it reported then
    convert_sent_at: float | None = None
    # The last probe was refused: nothing listens on that port, so nothing takes writes.
    refused: bool = False
    fence_sent_at: float | None = None


class Group:
    """Everything one watcher knows and decides about one monitored primary."""

    def __init__(self, settings: PrimarySettings, durable: PrimaryDurable, now: float) -> None:
        self.settings = settings
        # Fixed: a reload keys groups by name and only ever gives a group settings of its own
        # name. An attribute, not a property of settings: the core reads it on every event.
        self.name = settings.name
        self.durable = durable
        self.instances: dict[Address, Instance] = {}
        self.failover: Failover | None = None
        self.next_attempt_at = now
        self.lost_attempts = 0  # failover attempts aborted in a row (widens the retry window)
        self.last_failover_at: float | None = None
        self.odown = False
        self.odown_votes = 0
        self.primary_down = False
        self.role_mismatch_since: float | None = None
        # The primary came back with no data and a new history while replicas still hold the
        # old one: it must not become their source (a full sync would wipe them).
        self.restarted_empty = False
        self.primary_offset: int | None = None
        self.last_gossip: PrimaryGossip | None = None
        # Maintenance mode (haredis pause): ordered by a sequence number gossiped with it.
        self.maintenance_seq = 0
        self.paused_until: float | None = None
        self.pause_reason = ""
        self._replicas_key: tuple[int, Address] | None = None
        self._replicas: list[Instance] = []
        self.instance(self.address, now)
        for address in durable.known:
            self.instance(address, now)

    @property
    def address(self) -> Address:
        return self.durable.address or self.settings.address

    def instance(self, address: Address, now: float) -> Instance:
        inst = self.instances.get(address)
        if inst is None:
            inst = self.instances[address] = Instance(address, Detector(watched_since=now))
        return inst

    def replicas(self) -> list[Instance]:
        """The instances other than the primary, by address. Read on every tick and snapshot,
        so kept sorted: instances are only ever added, so their count and the primary's
        address tell when to sort again. Callers must not modify the list."""
        key = (len(self.instances), self.address)
        if key != self._replicas_key:
            self._replicas_key = key
            self._replicas = [inst for addr, inst in sorted(self.instances.items()) if addr != key[1]]
        return self._replicas


def describe(group: Group, address: Address) -> str:
    """Sentinel's `%@` instance description for event messages."""
    primary = group.address
    if address == primary:
        return f"master {group.name} {address.host} {address.port}"
    return (
        f"slave {address.host}:{address.port} {address.host} {address.port}"
        f" @ {group.name} {primary.host} {primary.port}"
    )
