"""The Sentinel protocol, rendered from the core's snapshot.

Every Sentinel-aware client (redis-py, Jedis, go-redis, …) discovers the primary through
these replies, so field names, field order, the flags string and value types follow Redis
7's sentinel.c exactly: instance maps are flat arrays of bulk strings in RESP2 and maps in
RESP3, and every number in them is a bulk string. Nothing here does I/O: it turns a
Snapshot into resp replies, so the API can never disagree with /metrics or `haredis status`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from haredis.core.model import Address, InstanceView, PeerView, PrimaryView, Role, Snapshot, run_id
from haredis.resp import NULL_ARRAY, OK, Array, Bulk, Error, Integer, Map, Reply, SimpleString, bulk_array


def _ms(now: float, then: float | None) -> str:
    return "0" if then is None else str(max(0, int((now - then) * 1000)))


def _flags(*pairs: tuple[str, bool]) -> str:
    return ",".join(flag for flag, on in pairs if on)


def _fields(pairs: Sequence[tuple[str, str]]) -> Map:
    return Map(tuple((Bulk(k), Bulk(v)) for k, v in pairs))


def _common(now: float, name: str, inst: InstanceView, flags: str) -> list[tuple[str, str]]:
    pending = inst.last_probe_sent is not None and (
        inst.last_ok is None or inst.last_probe_sent > inst.last_ok
    )
    return [
        ("name", name),
        ("ip", inst.address.host),
        ("port", str(inst.address.port)),
        ("runid", inst.run_id),
        ("flags", flags),
        ("link-pending-commands", "0"),
        ("link-refcount", "1"),
        ("last-ping-sent", _ms(now, inst.last_probe_sent) if pending else "0"),
        ("last-ok-ping-reply", _ms(now, inst.last_ok)),
        ("last-ping-reply", _ms(now, inst.last_ok)),
    ]


def _disconnected(inst: InstanceView) -> bool:
    return inst.last_error != "" and not inst.sdown and inst.last_ok is None


def master_map(snapshot: Snapshot, view: PrimaryView) -> Map:
    now = snapshot.now
    inst = view.primary
    flags = _flags(
        ("s_down", view.sdown),
        ("o_down", view.odown),
        ("master", True),
        ("disconnected", _disconnected(inst)),
        ("failover_in_progress", view.failover_state != "none"),
    )
    pairs = _common(now, view.name, inst, flags)
    if view.failover_state != "none":
        pairs.insert(7, ("failover-state", view.failover_state))
    if view.sdown and inst.sdown_since is not None:
        pairs.append(("s-down-time", _ms(now, inst.sdown_since)))
    if view.odown and inst.sdown_since is not None:
        pairs.append(("o-down-time", _ms(now, inst.sdown_since)))
    s = view.settings
    pairs += [
        ("down-after-milliseconds", str(int(s.down_after * 1000))),
        ("info-refresh", _ms(now, None if inst.info_age is None else now - inst.info_age)),
        ("role-reported", inst.role.value if inst.role is not Role.UNKNOWN else "master"),
        ("role-reported-time", _ms(now, None if inst.info_age is None else now - inst.info_age)),
        ("config-epoch", str(view.config_epoch)),
        ("num-slaves", str(len(view.replicas))),
        ("num-other-sentinels", str(len(view.peers))),
        ("quorum", str(view.quorum)),
        ("failover-timeout", str(int(s.failover_timeout * 1000))),
        ("parallel-syncs", str(s.parallel_syncs)),
    ]
    return _fields(pairs)


def replica_map(snapshot: Snapshot, view: PrimaryView, inst: InstanceView) -> Map:
    now = snapshot.now
    addr = inst.address
    flags = _flags(
        ("s_down", inst.sdown),
        ("slave", True),
        ("disconnected", _disconnected(inst)),
    )
    pairs = _common(now, f"{addr.host}:{addr.port}", inst, flags)
    if inst.sdown and inst.sdown_since is not None:
        pairs.append(("s-down-time", _ms(now, inst.sdown_since)))
    master = inst.master or view.address
    info_at = None if inst.info_age is None else now - inst.info_age
    pairs += [
        ("down-after-milliseconds", str(int(view.settings.down_after * 1000))),
        ("info-refresh", _ms(now, info_at)),
        ("role-reported", inst.role.value if inst.role is not Role.UNKNOWN else "slave"),
        ("role-reported-time", _ms(now, info_at)),
        ("master-link-down-time", str(int(inst.link_down_seconds * 1000))),
        ("master-link-status", "ok" if inst.link_up else "err"),
        ("master-host", master.host),
        ("master-port", str(master.port)),
        ("slave-priority", str(inst.priority)),
        ("slave-repl-offset", str(inst.offset)),
        ("replica-announced", "1" if inst.announced else "0"),
    ]
    return _fields(pairs)


def sentinel_map(snapshot: Snapshot, view: PrimaryView, peer: PeerView, address: Address | None) -> Map:
    now = snapshot.now
    stale = peer.last_heard is None or now - peer.last_heard > 5.0
    flags = _flags(("s_down", stale), ("sentinel", True), ("disconnected", peer.last_heard is None))
    rid = run_id(peer.name)
    host = address.host if address is not None else "?"
    port = str(address.port) if address is not None else "0"
    pairs = [
        ("name", rid),
        ("ip", host),
        ("port", port),
        ("runid", rid),
        ("flags", flags),
        ("link-pending-commands", "0"),
        ("link-refcount", "1"),
        ("last-ping-sent", "0"),
        ("last-ok-ping-reply", _ms(now, peer.last_heard)),
        ("last-ping-reply", _ms(now, peer.last_heard)),
        ("down-after-milliseconds", str(int(view.settings.down_after * 1000))),
        ("last-hello-message", _ms(now, peer.last_heard)),
        ("voted-leader", run_id(peer.voted_for) if peer.voted_for else "?"),
        ("voted-leader-epoch", str(peer.voted_epoch)),
    ]
    return _fields(pairs)


@dataclass
class SentinelContext:
    """What the SENTINEL command needs besides the snapshot."""

    snapshot: Callable[[], Snapshot]
    peer_address: Callable[[str], Address | None]
    request_failover: Callable[[str], str | None]  # returns an error text, or None if started
    usable_peers: Callable[[str], int]  # peers currently reachable (for CKQUORUM)
    config_get: Callable[[str], Mapping[str, str]]


def _err(text: str) -> Error:
    return Error(text)


def _view(ctx: SentinelContext, name: bytes) -> tuple[Snapshot, PrimaryView] | Error:
    snap = ctx.snapshot()
    view = snap.primary(name.decode(errors="replace"))
    if view is None:
        return _err("ERR No such master with that name")
    return snap, view


def sentinel_command(ctx: SentinelContext, args: Sequence[bytes]) -> Reply:
    """SENTINEL <subcommand> …: args excludes the word SENTINEL itself."""
    if not args:
        return _err("ERR wrong number of arguments for 'sentinel' command")
    sub = args[0].decode(errors="replace").upper()
    rest = list(args[1:])
    handler = _SUBCOMMANDS.get(sub)
    if handler is None:
        # Redis 7's generic subcommand error (server.c), the text real Sentinel sends.
        return _err(f"ERR unknown subcommand '{args[0].decode(errors='replace')}'. Try SENTINEL HELP.")
    arity, fn = handler
    if (arity >= 0 and len(rest) != arity) or (arity < 0 and len(rest) < -arity - 1):
        return _err(f"ERR wrong number of arguments for 'sentinel|{sub.lower()}' command")
    return fn(ctx, rest)


def _masters(ctx: SentinelContext, _: list[bytes]) -> Reply:
    snap = ctx.snapshot()
    return Array(tuple(master_map(snap, v) for v in snap.primaries))


def _master(ctx: SentinelContext, args: list[bytes]) -> Reply:
    found = _view(ctx, args[0])
    if isinstance(found, Error):
        return found
    return master_map(*found)


def _replicas(ctx: SentinelContext, args: list[bytes]) -> Reply:
    found = _view(ctx, args[0])
    if isinstance(found, Error):
        return found
    snap, view = found
    return Array(tuple(replica_map(snap, view, r) for r in view.replicas if r.announced))


def _sentinels(ctx: SentinelContext, args: list[bytes]) -> Reply:
    found = _view(ctx, args[0])
    if isinstance(found, Error):
        return found
    snap, view = found
    return Array(tuple(sentinel_map(snap, view, p, ctx.peer_address(p.name)) for p in view.peers))


def _get_addr(ctx: SentinelContext, args: list[bytes]) -> Reply:
    view = ctx.snapshot().primary(args[0].decode(errors="replace"))
    if view is None:
        return NULL_ARRAY
    return bulk_array([view.address.host, str(view.address.port)])


def _failover(ctx: SentinelContext, args: list[bytes]) -> Reply:
    error = ctx.request_failover(args[0].decode(errors="replace"))
    return _err(error) if error else OK


def _ckquorum(ctx: SentinelContext, args: list[bytes]) -> Reply:
    found = _view(ctx, args[0])
    if isinstance(found, Error):
        return found
    _, view = found
    usable = 1 + ctx.usable_peers(view.name)
    voters = len(view.peers) + 1
    electorate = max(voters, usable)
    majority = electorate // 2 + 1
    if usable < view.quorum:
        return _err(
            f"NOQUORUM {usable} usable Sentinels. "
            "Not enough available Sentinels to reach the specified quorum for this master"
        )
    if usable < majority:
        return _err(
            f"NOQUORUM {usable} usable Sentinels. "
            "Not enough available Sentinels to reach the majority and authorize a failover"
        )
    # A status reply (+OK …), as sentinel.c sends it, not a bulk string.
    return SimpleString(f"OK {usable} usable Sentinels. Quorum and failover authorization can be reached")


def _myid(ctx: SentinelContext, _: list[bytes]) -> Reply:
    return Bulk(run_id(ctx.snapshot().watcher))


def _reset(ctx: SentinelContext, args: list[bytes]) -> Reply:
    # haredis discovers replicas continuously and keeps no per-sentinel state worth forgetting;
    # RESET answers like Sentinel (the number of matching masters) without dropping anything.
    pattern = args[0].decode(errors="replace")
    return Integer(sum(1 for v in ctx.snapshot().primaries if fnmatch.fnmatchcase(v.name, pattern)))


def _config(ctx: SentinelContext, args: list[bytes]) -> Reply:
    action = args[0].decode(errors="replace").upper()
    if action == "GET" and len(args) == 2:
        values = ctx.config_get(args[1].decode(errors="replace"))
        return Map(tuple((Bulk(k), Bulk(v)) for k, v in values.items()))
    if action == "SET":
        return _err("ERR haredis is configured from its config file only (SIGHUP reloads it)")
    return _err("ERR Unknown sentinel config subcommand or wrong number of arguments")


def _info_cache(ctx: SentinelContext, args: list[bytes]) -> Reply:
    snap = ctx.snapshot()
    names = {a.decode(errors="replace") for a in args}
    out: list[Reply] = []
    for view in snap.primaries:
        if names and view.name not in names:
            continue
        entries: list[Reply] = []
        for inst in (view.primary, *view.replicas):
            age = "0" if inst.info_age is None else str(int(inst.info_age * 1000))
            entries.append(bulk_array([age, f"# Replication\r\nrole:{inst.role.value}\r\n"]))
        out += [Bulk(view.name), Array(tuple(entries))]
    return Array(tuple(out))


def _set(ctx: SentinelContext, args: list[bytes]) -> Reply:
    return _err("ERR haredis is configured from its config file only; SENTINEL SET is refused")


_HELP = [
    "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CKQUORUM <master-name>",
    "    Check if the current Sentinel configuration is able to reach the quorum needed",
    "    to failover a master and the majority needed to authorize the failover.",
    "CONFIG GET <param>",
    "    Get a global Sentinel configuration parameter.",
    "GET-MASTER-ADDR-BY-NAME <master-name>",
    "    Return the ip and port number of the master with that name.",
    "FAILOVER <master-name>",
    "    Manually failover a master node without asking for agreement from other",
    "    Sentinels (haredis still runs an election so no two watchers act at once).",
    "INFO-CACHE <master-name>",
    "    Return last INFO output from masters and slaves of master-name.",
    "MASTER <master-name>",
    "    Show the state and info of the specified master.",
    "MASTERS",
    "    Show a list of monitored masters and their state.",
    "MYID",
    "    Return the ID of the Sentinel instance.",
    "REPLICAS <master-name>",
    "    Show a list of replicas for this master and their state.",
    "RESET <pattern>",
    "    Reset masters for specific master name matching this pattern.",
    "SENTINELS <master-name>",
    "    Show a list of Sentinel instances for this master and their state.",
    "HELP",
    "    Print this help.",
]


def _help(ctx: SentinelContext, _: list[bytes]) -> Reply:
    return Array(tuple(Bulk(line) for line in _HELP))


_Handler = Callable[[SentinelContext, list[bytes]], Reply]
# arity: exact number of arguments after the subcommand, or -(n+1) for "at least n".
_SUBCOMMANDS: dict[str, tuple[int, _Handler]] = {
    "MASTERS": (0, _masters),
    "MASTER": (1, _master),
    "REPLICAS": (1, _replicas),
    "SLAVES": (1, _replicas),
    "SENTINELS": (1, _sentinels),
    "GET-MASTER-ADDR-BY-NAME": (1, _get_addr),
    "GET-PRIMARY-ADDR-BY-NAME": (1, _get_addr),
    "FAILOVER": (1, _failover),
    "CKQUORUM": (1, _ckquorum),
    "MYID": (0, _myid),
    "RESET": (1, _reset),
    "CONFIG": (-2, _config),
    "INFO-CACHE": (-1, _info_cache),
    "SET": (-2, _set),
    "HELP": (0, _help),
}


def info_text(snapshot: Snapshot, version: str, port: int, sections: Sequence[str] = ()) -> str:
    """INFO in Sentinel mode: server, clients, stats and the sentinel section."""
    wanted = {s.lower() for s in sections} or {"server", "sentinel"}
    everything = bool(wanted & {"all", "everything", "default"})
    lines: list[str] = []
    if everything or "server" in wanted:
        lines += [
            "# Server",
            f"redis_version:{version}",
            "redis_mode:sentinel",
            "haredis:1",
            f"run_id:{run_id(snapshot.watcher)}",
            f"tcp_port:{port}",
            "",
        ]
    if everything or "sentinel" in wanted:
        lines += [
            "# Sentinel",
            f"sentinel_masters:{len(snapshot.primaries)}",
            f"sentinel_tilt:{1 if snapshot.in_hold else 0}",
            f"sentinel_tilt_since_seconds:{-1 if not snapshot.in_hold else 0}",
            "sentinel_running_scripts:0",
            "sentinel_scripts_queue_length:0",
            "sentinel_simulate_failure_flags:0",
        ]
        for i, view in enumerate(snapshot.primaries):
            status = "odown" if view.odown else "sdown" if view.sdown else "ok"
            lines.append(
                f"master{i}:name={view.name},status={status},address={view.address},"
                f"slaves={len(view.replicas)},sentinels={len(view.peers) + 1}"
            )
        lines.append("")
    return "\r\n".join(lines)


def role_reply(snapshot: Snapshot) -> Reply:
    return Array((Bulk("sentinel"), bulk_array([v.name for v in snapshot.primaries])))
