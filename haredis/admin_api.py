"""haredis's own RESP commands for operators (the `haredis` CLI, or redis-cli):

  HAREDIS.STATUS                                   JSON status document (see status_document)
  HAREDIS.FAILOVER <name> [TO <host> <port>] [FORCE] [TIMEOUT <seconds>] [DRYRUN]
  HAREDIS.PAUSE <name> <seconds> [<reason>]        maintenance: no automatic failover
  HAREDIS.RESUME <name>
  HAREDIS.HISTORY [<name>] [<limit>]               JSON list of past failovers

Structured replies are one bulk string of JSON, so any client (redis-cli included) can use
them. The JSON keys are a stable contract, documented in the README. Every argument is
validated here; nothing from a client reaches the core unchecked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from haredis.core.events import Event, FailoverCommand, PauseCommand, SwitchoverCommand
from haredis.core.model import Address, PrimaryView, Snapshot
from haredis.core.selection import Verdict
from haredis.core.watcher import Watcher
from haredis.resp import OK, Bulk, Error, Reply

_REASON_RE = re.compile(r"[^\x00-\x1f\x7f]{0,200}")
MAX_PAUSE_SECONDS = 7 * 24 * 3600


def _seconds_ago(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then), 3)


def primary_document(
    snapshot: Snapshot, view: PrimaryView, peer_address: Callable[[str], Address | None]
) -> dict[str, Any]:
    now = snapshot.now
    primary_offset = view.primary.offset if view.primary.info_age is not None else None
    status = "odown" if view.odown else "sdown" if view.sdown else "ok"
    fresh_peers = [p for p in view.peers if p.last_heard is not None and now - p.last_heard <= 5.0]
    return {
        "name": view.name,
        "address": str(view.address),
        "status": status,
        "config_epoch": view.config_epoch,
        "current_epoch": view.current_epoch,
        "quorum": view.quorum,
        "watchers_reachable": 1 + len(fresh_peers),
        "failover_state": view.failover_state,
        "failover_epoch": view.failover_epoch,
        "leader": view.leader or None,
        "paused": view.paused_until is not None,
        "paused_for_seconds": None if view.paused_until is None else round(view.paused_until - now, 1),
        "pause_reason": view.pause_reason or None,
        "last_failover_seconds_ago": _seconds_ago(now, view.last_failover_at),
        "replicas": [
            {
                "address": str(r.address),
                "status": "sdown" if r.sdown else "ok",
                "role": r.role.value,
                "offset": r.offset,
                "lag_bytes": None if primary_offset is None else max(0, primary_offset - r.offset),
                "link": "up" if r.link_up else "down",
                "priority": r.priority,
            }
            for r in view.replicas
        ],
        "watchers": [
            {
                "name": p.name,
                "address": None if (a := peer_address(p.name)) is None else str(a),
                "last_heard_seconds_ago": _seconds_ago(now, p.last_heard),
                "says_down": p.says_down,
                "in_hold": p.in_hold,
            }
            for p in view.peers
        ],
    }


def status_document(
    snapshot: Snapshot, peer_address: Callable[[str], Address | None], electorate: int
) -> dict[str, Any]:
    primaries = []
    majority = electorate // 2 + 1
    for view in snapshot.primaries:
        doc = primary_document(snapshot, view, peer_address)
        reachable = doc["watchers_reachable"]
        doc["quorum_ok"] = reachable >= view.quorum and reachable >= majority
        primaries.append(doc)
    return {
        "watcher": snapshot.watcher,
        "in_hold": snapshot.in_hold,
        "electorate": electorate,
        "primaries": primaries,
    }


def verdict_document(v: Verdict) -> dict[str, Any]:
    return {
        "address": str(v.address),
        "eligible": v.eligible,
        "reason": v.reason,
        "priority": v.priority,
        "offset": v.offset,
        "lag_bytes": v.lag,
    }


@dataclass
class AdminContext:
    watcher: Callable[[], Watcher]
    snapshot: Callable[[], Snapshot]
    feed: Callable[[Event], None]
    now: Callable[[], float]
    peer_address: Callable[[str], Address | None]
    electorate: int
    history: Callable[[str | None, int], list[dict[str, Any]]]


def _json(value: object) -> Bulk:
    return Bulk(json.dumps(value, sort_keys=True, separators=(",", ":")))


def _text(arg: bytes) -> str:
    return arg.decode("utf-8", errors="replace")


def admin_status(ctx: AdminContext, args: Sequence[bytes]) -> Reply:
    if args:
        return Error("ERR wrong number of arguments for 'haredis.status' command")
    return _json(status_document(ctx.snapshot(), ctx.peer_address, ctx.electorate))


def _positive_seconds(text: str, what: str) -> float | Error:
    try:
        value = float(text)
    except ValueError:
        return Error(f"ERR {what} must be a number of seconds, got {text!r}")
    if not math.isfinite(value) or value <= 0 or value > MAX_PAUSE_SECONDS:
        return Error(f"ERR {what} must be between 0 and {MAX_PAUSE_SECONDS} seconds, got {text!r}")
    return value


def admin_failover(ctx: AdminContext, args: Sequence[bytes]) -> Reply:
    if not args:
        return Error("ERR wrong number of arguments for 'haredis.failover' command")
    name = _text(args[0])
    watcher = ctx.watcher()
    view = ctx.snapshot().primary(name)
    if view is None:
        return Error("ERR No such master with that name")
    target: Address | None = None
    force = dry_run = False
    timeout = 10.0
    rest = [_text(a) for a in args[1:]]
    i = 0
    while i < len(rest):
        word = rest[i].upper()
        if word == "TO" and i + 2 < len(rest):
            try:
                target = Address.parse(f"{rest[i + 1]}:{rest[i + 2]}")
            except ValueError as exc:
                return Error(f"ERR invalid target: {exc}")
            i += 3
        elif word == "FORCE":
            force = True
            i += 1
        elif word == "DRYRUN":
            dry_run = True
            i += 1
        elif word == "TIMEOUT" and i + 1 < len(rest):
            value = _positive_seconds(rest[i + 1], "TIMEOUT")
            if isinstance(value, Error):
                return value
            timeout = value
            i += 2
        else:
            return Error(f"ERR syntax error near {rest[i]!r}")
    # A live primary gets a coordinated switchover (no acknowledged write lost); a dead one
    # a failover through the normal election.
    live = watcher.primary_is_live(name)
    mode = "switchover" if live else "failover"
    refusal = watcher.switchover_refusal(name, target) if live else watcher.failover_refusal(name)
    if not live and target is not None:
        refusal = "NOTREADY the primary is down: a failover picks the best replica itself (no TO)"
    if dry_run:
        verdicts = watcher.rank_candidates(name)
        chosen = next((v for v in verdicts if v.eligible and (target is None or v.address == target)), None)
        return _json(
            {
                "master": name,
                "primary": str(view.address),
                "mode": mode,
                "force": force,
                "timeout_seconds": timeout,
                "target": None if chosen is None else str(chosen.address),
                "refusal": refusal,
                "config_epoch": view.config_epoch,
                "candidates": [verdict_document(v) for v in verdicts],
            }
        )
    if refusal is not None:
        return Error(refusal)
    if live:
        ctx.feed(SwitchoverCommand(now=ctx.now(), primary=name, target=target, timeout=timeout, force=force))
    else:
        ctx.feed(FailoverCommand(now=ctx.now(), primary=name))
    return _json({"master": name, "mode": mode, "config_epoch": view.config_epoch})


def admin_pause(ctx: AdminContext, args: Sequence[bytes]) -> Reply:
    if len(args) not in (2, 3):
        return Error("ERR wrong number of arguments for 'haredis.pause' command")
    name = _text(args[0])
    if ctx.snapshot().primary(name) is None:
        return Error("ERR No such master with that name")
    ttl = _positive_seconds(_text(args[1]), "the pause duration")
    if isinstance(ttl, Error):
        return ttl
    reason = _text(args[2]) if len(args) == 3 else ""
    if not _REASON_RE.fullmatch(reason):
        return Error("ERR the reason must be at most 200 characters without control characters")
    ctx.feed(PauseCommand(now=ctx.now(), primary=name, ttl=ttl, reason=reason))
    return OK


def admin_resume(ctx: AdminContext, args: Sequence[bytes]) -> Reply:
    if len(args) != 1:
        return Error("ERR wrong number of arguments for 'haredis.resume' command")
    name = _text(args[0])
    if ctx.snapshot().primary(name) is None:
        return Error("ERR No such master with that name")
    ctx.feed(PauseCommand(now=ctx.now(), primary=name, ttl=0.0))
    return OK


def admin_history(ctx: AdminContext, args: Sequence[bytes]) -> Reply:
    if len(args) > 2:
        return Error("ERR wrong number of arguments for 'haredis.history' command")
    name = _text(args[0]) if args else None
    limit = 100
    if len(args) == 2:
        try:
            limit = int(args[1])
        except ValueError:
            return Error("ERR the limit must be an integer")
        if not 0 < limit <= 10000:
            return Error("ERR the limit must be between 1 and 10000")
    return _json(ctx.history(name, limit))
