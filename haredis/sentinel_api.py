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
from typing import Final

from haredis.core.model import Address, InstanceView, PeerView, PrimaryView, Role, Snapshot, run_id
from haredis.resp import NULL_ARRAY, OK, Array, Bulk, Error, Integer, Map, Reply, SimpleString, bulk_array
from haredis.server import ServerCensus


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
        parameter = args[1].decode(errors="replace") if len(args) > 1 else ""
        if parameter.lower() in _SCRIPT_OPTIONS or parameter.lower() == "deny-scripts-reconfig":
            # Sentinel's own answer for these: they are not settable at runtime there either.
            return _err(f"ERR Invalid argument '{parameter}' to SENTINEL CONFIG SET")
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


# Hook commands are set in the config file only (reference/safety.md section 6: Sentinel once
# let any client point a script at a binary and trigger a failover to run it).
_SCRIPT_OPTIONS: Final = frozenset({"notification-script", "client-reconfig-script"})
_SCRIPTS_DENIED: Final = (
    "ERR Reconfiguration of scripts path is denied for security reasons. Check the "
    "deny-scripts-reconfig configuration directive in your Sentinel configuration"
)


def _set(ctx: SentinelContext, args: list[bytes]) -> Reply:
    # SENTINEL SET <name> <option> <value> [<option> <value> ...], checked in Sentinel's order:
    # the master, then each option. A script option gets Sentinel's own refusal
    # (deny-scripts-reconfig yes, its default); everything else is refused too: the config
    # file is the only source of settings.
    found = _view(ctx, args[0])
    if isinstance(found, Error):
        return found
    for index in range(1, len(args), 2):
        option = args[index].decode(errors="replace")
        if index + 1 == len(args):
            return _err(f"ERR Unknown option or number of arguments for SENTINEL SET '{option}'")
        if option.lower() in _SCRIPT_OPTIONS:
            return _err(_SCRIPTS_DENIED)
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
    "SET": (-4, _set),
    "HELP": (0, _help),
}


# ---------------------------------------------------------------------------------------------
# Events that name another watcher (Sentinel's `%@` form for a Sentinel instance)


def sentinel_subject(peer: str, address: Address | None, primary: str, primary_address: Address) -> str:
    """``sentinel <runid> <ip> <port> @ <master> <mip> <mport>``: how Sentinel's events name
    another Sentinel (sentinel.c, sentinelEvent with ``%@``; a Sentinel's name is its run id).
    An address not learned yet is shown as ``? 0``, as SENTINEL SENTINELS shows it."""
    host, port = (address.host, address.port) if address is not None else ("?", 0)
    return f"sentinel {run_id(peer)} {host} {port} @ {primary} {primary_address.host} {primary_address.port}"


def config_update_from(message: str, peer_address: Callable[[str], Address | None]) -> str:
    """Sentinel's ``+config-update-from`` payload from the core's.

    The core does not know where its peers listen, so it names the watcher whose topology it
    adopts: ``sentinel <peer> @ <master> <mip> <mport>`` (the primary's address before the
    switch, as Sentinel publishes it just before ``+switch-master``). Sentinel's form replaces
    the name by ``<runid> <ip> <port>``. A message of another shape is returned unchanged.
    """
    words = message.split(" ")
    if len(words) != 6 or words[0] != "sentinel" or words[2] != "@" or not words[5].isdigit():
        return message
    primary_address = Address(words[4], int(words[5]))
    return sentinel_subject(words[1], peer_address(words[1]), words[3], primary_address)


# ---------------------------------------------------------------------------------------------
# INFO
#
# Sentinel's INFO has the sections server, clients, stats, cpu and sentinel, always in this
# order whatever the order asked (sentinel.c, sentinelInfoCommand): no argument, ``default``,
# ``all`` and ``everything`` give all five; named sections are matched without regard to case;
# unknown ones are skipped (an empty reply if nothing is left). Each field has Redis's name and
# place. Fields left out, because haredis has nothing they could describe:
#
#   server: redis_git_sha1, redis_git_dirty, redis_build_id (haredis is not built from Redis's
#           tree; redis_version carries haredis's own version), atomicvar_api, gcc_version (C
#           build facts), lru_clock (no keyspace, no LRU);
#   stats:  reply_buffer_shrinks, reply_buffer_expands (no preallocated reply buffers).
#
# Fields whose mechanism haredis does not have (keyspace, expiry, eviction, replication
# syncs, persistence forks, defragmentation, client tracking, I/O threads) are 0, the value a
# real Sentinel shows for the same reason. Added: ``pubsub_clients`` in clients (where Redis
# 7.2+ puts it) and ``haredis:1`` at the end of server.

INFO_SECTIONS: tuple[str, ...] = ("server", "clients", "stats", "cpu", "sentinel")


def info_sections(args: Sequence[str]) -> tuple[str, ...]:
    """The sections INFO `args` selects, in Sentinel's order."""
    if not args:
        return INFO_SECTIONS
    wanted: set[str] = set()
    for arg in args:
        word = arg.lower()
        wanted |= set(INFO_SECTIONS) if word in ("default", "all", "everything") else {word}
    return tuple(section for section in INFO_SECTIONS if section in wanted)


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """The process-level values of INFO server and cpu, gathered by the daemon."""

    version: str
    os: str  # "<sysname> <release> <machine>", as Redis prints uname
    arch_bits: int
    monotonic_clock: str
    multiplexing_api: str
    process_id: int
    supervised: str  # "systemd" or "no"
    tcp_port: int
    server_time_usec: int
    uptime_seconds: int
    hz: int  # decision cycles per second
    executable: str
    config_file: str
    cpu_sys: float
    cpu_user: float
    cpu_sys_children: float
    cpu_user_children: float
    cpu_main_thread: tuple[float, float] | None  # (sys, user) of the event loop's thread


# Stats that describe mechanisms haredis does not have, in Redis 7.0's order, grouped by
# where they sit in the section (see _stats_section).
_NO_REPLICATION = ("total_net_repl_input_bytes", "total_net_repl_output_bytes")
_NO_REPLICATION_RATES = ("instantaneous_input_repl_kbps", "instantaneous_output_repl_kbps")
_NO_KEYSPACE = (
    "sync_full",
    "sync_partial_ok",
    "sync_partial_err",
    "expired_keys",
    "expired_stale_perc",
    "expired_time_cap_reached_count",
    "expire_cycle_cpu_milliseconds",
    "evicted_keys",
    "evicted_clients",
    "total_eviction_exceeded_time",
    "current_eviction_exceeded_time",
    "keyspace_hits",
    "keyspace_misses",
)
_NO_FORK_DEFRAG_TRACKING = (
    "pubsubshard_channels",
    "latest_fork_usec",
    "total_forks",
    "migrate_cached_sockets",
    "slave_expires_tracked_keys",
    "active_defrag_hits",
    "active_defrag_misses",
    "active_defrag_key_hits",
    "active_defrag_key_misses",
    "total_active_defrag_time",
    "current_active_defrag_time",
    "tracking_total_keys",
    "tracking_total_items",
    "tracking_total_prefixes",
    "unexpected_error_replies",
)
_PERCENT_FIELDS = frozenset({"expired_stale_perc"})


def _zeros(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(name, "0.00" if name in _PERCENT_FIELDS or name.endswith("_kbps") else "0") for name in names]


def _server_section(snapshot: Snapshot, facts: ProcessFacts) -> list[tuple[str, str]]:
    return [
        ("redis_version", facts.version),
        ("redis_mode", "sentinel"),
        ("os", facts.os),
        ("arch_bits", str(facts.arch_bits)),
        ("monotonic_clock", facts.monotonic_clock),
        ("multiplexing_api", facts.multiplexing_api),
        ("process_id", str(facts.process_id)),
        ("process_supervised", facts.supervised),
        ("run_id", run_id(snapshot.watcher)),
        ("tcp_port", str(facts.tcp_port)),
        ("server_time_usec", str(facts.server_time_usec)),
        ("uptime_in_seconds", str(facts.uptime_seconds)),
        ("uptime_in_days", str(facts.uptime_seconds // 86400)),
        ("hz", str(facts.hz)),
        ("configured_hz", str(facts.hz)),
        ("executable", facts.executable),
        ("config_file", facts.config_file),
        ("io_threads_active", "0"),
        ("haredis", "1"),
    ]


def _clients_section(census: ServerCensus) -> list[tuple[str, str]]:
    return [
        ("connected_clients", str(census.connected_clients)),
        ("cluster_connections", "0"),
        ("maxclients", str(census.max_clients)),
        ("client_recent_max_input_buffer", str(census.recent_max_input_buffer)),
        ("client_recent_max_output_buffer", str(census.recent_max_output_buffer)),
        ("blocked_clients", "0"),  # no blocking commands
        ("tracking_clients", "0"),  # no CLIENT TRACKING
        ("pubsub_clients", str(census.pubsub_clients)),
        ("clients_in_timeout_table", "0"),  # nobody blocked, so no timeouts pending
    ]


def _stats_section(census: ServerCensus) -> list[tuple[str, str]]:
    st = census.stats
    return [
        ("total_connections_received", str(st.connections_received)),
        ("total_commands_processed", str(st.commands_processed)),
        ("instantaneous_ops_per_sec", str(round(census.ops_per_sec))),
        ("total_net_input_bytes", str(st.net_input_bytes)),
        ("total_net_output_bytes", str(st.net_output_bytes)),
        *_zeros(_NO_REPLICATION),
        ("instantaneous_input_kbps", f"{census.input_kbps:.2f}"),
        ("instantaneous_output_kbps", f"{census.output_kbps:.2f}"),
        *_zeros(_NO_REPLICATION_RATES),
        ("rejected_connections", str(st.rejected_connections)),
        *_zeros(_NO_KEYSPACE),
        ("pubsub_channels", str(census.pubsub_channels)),
        ("pubsub_patterns", str(census.pubsub_patterns)),
        *_zeros(_NO_FORK_DEFRAG_TRACKING),
        ("total_error_replies", str(st.error_replies)),
        ("dump_payload_sanitizations", "0"),
        ("total_reads_processed", str(st.reads_processed)),
        ("total_writes_processed", str(st.writes_processed)),
        ("io_threaded_reads_processed", "0"),
        ("io_threaded_writes_processed", "0"),
    ]


def _cpu_section(facts: ProcessFacts) -> list[tuple[str, str]]:
    pairs = [
        ("used_cpu_sys", f"{facts.cpu_sys:.6f}"),
        ("used_cpu_user", f"{facts.cpu_user:.6f}"),
        ("used_cpu_sys_children", f"{facts.cpu_sys_children:.6f}"),
        ("used_cpu_user_children", f"{facts.cpu_user_children:.6f}"),
    ]
    if facts.cpu_main_thread is not None:  # Redis prints these only where RUSAGE_THREAD exists
        sys_time, user_time = facts.cpu_main_thread
        pairs += [
            ("used_cpu_sys_main_thread", f"{sys_time:.6f}"),
            ("used_cpu_user_main_thread", f"{user_time:.6f}"),
        ]
    return pairs


def _sentinel_section(snapshot: Snapshot) -> list[tuple[str, str]]:
    pairs = [
        ("sentinel_masters", str(len(snapshot.primaries))),
        ("sentinel_tilt", "1" if snapshot.in_hold else "0"),
        ("sentinel_tilt_since_seconds", "0" if snapshot.in_hold else "-1"),
        ("sentinel_running_scripts", "0"),
        ("sentinel_scripts_queue_length", "0"),
        ("sentinel_simulate_failure_flags", "0"),
    ]
    for i, view in enumerate(snapshot.primaries):
        status = "odown" if view.odown else "sdown" if view.sdown else "ok"
        pairs.append(
            (
                f"master{i}",
                f"name={view.name},status={status},address={view.address},"
                f"slaves={len(view.replicas)},sentinels={len(view.peers) + 1}",
            )
        )
    return pairs


def info_text(snapshot: Snapshot, facts: ProcessFacts, census: ServerCensus, args: Sequence[str] = ()) -> str:
    """INFO in Sentinel mode: ``# Section`` headers, ``field:value`` lines ending in CRLF, and
    one empty line between sections, byte for byte as Redis lays it out."""
    render: dict[str, Callable[[], list[tuple[str, str]]]] = {
        "server": lambda: _server_section(snapshot, facts),
        "clients": lambda: _clients_section(census),
        "stats": lambda: _stats_section(census),
        "cpu": lambda: _cpu_section(facts),
        "sentinel": lambda: _sentinel_section(snapshot),
    }
    titles = {"cpu": "CPU"}
    blocks = []
    for section in info_sections(args):
        title = titles.get(section, section.capitalize())
        lines = [f"# {title}", *(f"{key}:{value}" for key, value in render[section]())]
        blocks.append("".join(line + "\r\n" for line in lines))
    return "\r\n".join(blocks)


def role_reply(snapshot: Snapshot) -> Reply:
    return Array((Bulk("sentinel"), bulk_array([v.name for v in snapshot.primaries])))
