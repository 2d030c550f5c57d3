"""Parsing of Redis ``INFO`` text into the core's :class:`~haredis.core.model.InstanceInfo`.

Pure functions: no I/O, no clock. The input comes from a process we do not control (and, in
tests, from hypothesis), so parsing never raises: unknown keys, malformed lines and values
that do not convert are skipped, and a field that cannot be read keeps its default.

Field mapping (Redis 7.0 ``INFO server replication``):

========================  =====================================================================
InstanceInfo              INFO
========================  =====================================================================
role                      ``role:master`` / ``role:slave``; anything else or absent: UNKNOWN
run_id                    ``run_id``
replid, replid2           ``master_replid``, ``master_replid2``
second_repl_offset        ``second_repl_offset`` (-1 when there is no replid2 history)
offset                    primary: ``master_repl_offset``; replica: ``slave_repl_offset``, else
                          ``master_repl_offset``
master                    ``master_host`` + ``master_port``
link_up                   ``master_link_status:up``
link_down_seconds         ``master_link_down_since_seconds``; absent (link up) or -1: 0.0.
                          Redis prints -1 when the link is down and has never been up since
                          the replica started, so -1 does NOT mean "up": read it with link_up.
priority                  ``slave_priority``, else ``replica_priority``
announced                 ``replica_announced`` (absent: True, as Redis defaults)
replicas                  ``slaveN:ip=…,port=…,state=…,offset=…,lag=…``; online iff
                          ``state=online``. Read on any role: a replica lists the replicas
                          chained below it (as after ``FAILOVER``, until they are repointed)
last_io_seconds           ``master_last_io_seconds_ago`` (link up only; -1 or absent: 0.0)
fence_configured          ``min_slaves_good_slaves`` is present: Redis prints it only when both
                          min-replicas-to-write and min-replicas-max-lag are non-zero
keys                      sum of ``dbN:keys=K,…`` when the text has a ``# Keyspace`` section
                          (0 when the section is empty), else -1 (not asked)
========================  =====================================================================
"""

from __future__ import annotations

import re

from haredis.core.model import Address, InstanceInfo, ReplicaLink, Role

__all__ = ["instance_info", "parse_info", "parse_replica_line"]

_REPLICA_KEY = re.compile(r"slave[0-9]+")
_DB_KEY = re.compile(r"db[0-9]+")
_KEYS_FIELD = re.compile(r"(?:^|,)keys=([0-9]+)(?:,|$)")


def parse_info(text: str) -> dict[str, str]:
    """Split INFO text into ``key -> value``; section headers and blank lines are skipped.

    Lines without a colon are ignored. The value is everything after the first colon, so
    values holding colons (``executable``, IPv6 addresses) survive. A repeated key keeps its
    last value.
    """
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or not key:
            continue
        fields[key] = value
    return fields


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value.strip())
    except ValueError:
        return default


def _float(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        result = float(value.strip())
    except ValueError:
        return default
    # float() accepts "nan" and "inf"; neither is a meaningful INFO value.
    if result != result or result in (float("inf"), float("-inf")):
        return default
    return result


def _port(value: str | None) -> int | None:
    port = _int(value, 0)
    return port if 0 < port < 65536 else None


def parse_replica_line(value: str) -> ReplicaLink | None:
    """Parse the value of a ``slaveN`` field: ``ip=…,port=…,state=…,offset=…,lag=…``.

    Returns None when the ip or a valid port is missing.
    """
    attrs: dict[str, str] = {}
    for part in value.split(","):
        key, sep, item = part.partition("=")
        if sep:
            attrs[key.strip()] = item.strip()
    host = attrs.get("ip", "")
    port = _port(attrs.get("port"))
    if not host or port is None:
        return None
    return ReplicaLink(
        address=Address(host, port),
        offset=_int(attrs.get("offset"), 0),
        online=attrs.get("state") == "online",
    )


def _replicas(fields: dict[str, str]) -> tuple[ReplicaLink, ...]:
    indexed: list[tuple[int, ReplicaLink]] = []
    for key, value in fields.items():
        if not _REPLICA_KEY.fullmatch(key):
            continue
        link = parse_replica_line(value)
        if link is not None:
            indexed.append((int(key[len("slave") :]), link))
    indexed.sort(key=lambda item: item[0])
    return tuple(link for _, link in indexed)


def _role(value: str | None) -> Role:
    if value is None:
        return Role.UNKNOWN
    try:
        return Role(value.strip())
    except ValueError:
        return Role.UNKNOWN


def instance_info(text: str) -> InstanceInfo:
    """Build an InstanceInfo from the text of ``INFO server replication`` (or full INFO)."""
    fields = parse_info(text)
    role = _role(fields.get("role"))
    primary_offset = _int(fields.get("master_repl_offset"), 0)

    master: Address | None = None
    link_up = False
    link_down_seconds = 0.0
    last_io_seconds = 0.0
    offset = primary_offset
    if role is Role.REPLICA:
        offset = _int(fields.get("slave_repl_offset"), primary_offset)
        host = fields.get("master_host", "").strip()
        port = _port(fields.get("master_port"))
        if host and port is not None:
            master = Address(host, port)
        link_up = fields.get("master_link_status", "").strip() == "up"
        if not link_up:
            link_down_seconds = max(0.0, _float(fields.get("master_link_down_since_seconds"), 0.0))
        else:
            last_io_seconds = max(0.0, _float(fields.get("master_last_io_seconds_ago"), 0.0))

    priority_text = fields.get("slave_priority")
    if priority_text is None:
        priority_text = fields.get("replica_priority")
    announced_text = fields.get("replica_announced", "1").strip()

    return InstanceInfo(
        role=role,
        run_id=fields.get("run_id", "").strip(),
        replid=fields.get("master_replid", "").strip(),
        replid2=fields.get("master_replid2", "").strip(),
        offset=offset,
        second_repl_offset=_int(fields.get("second_repl_offset", "-1").strip(), -1),
        master=master,
        link_up=link_up,
        link_down_seconds=link_down_seconds,
        priority=_int(priority_text, 100),
        announced=announced_text != "0",
        replicas=_replicas(fields),
        last_io_seconds=last_io_seconds,
        fence_configured="min_slaves_good_slaves" in fields,
        keys=_keys(text, fields),
    )


def _keys(text: str, fields: dict[str, str]) -> int:
    if "# Keyspace" not in text:
        return -1
    total = 0
    for key, value in fields.items():
        if _DB_KEY.fullmatch(key):
            match = _KEYS_FIELD.search(value)
            if match:
                total += int(match.group(1))
    return total
