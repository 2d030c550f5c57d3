"""What a schedule broke, from what was recorded while it ran.

Inputs: the writer's log (every write and its acknowledgement), the keys on the final primary,
the write probers' timelines (which node accepted writes when), the epoch samples of every
watcher, the watchers' logs and ``history.jsonl``, and the rig's network timeline.

Figures:

* ``lost_wait_acked``: writes whose SET returned OK *and* whose ``WAIT 1`` returned >= 1, but
  that are not on the final primary.
* ``lost_plain``: other acknowledged writes (no WAIT, or a WAIT that returned 0 or failed) that
  are not on the final primary.
* ``split_brain_s``: the longest stretch during which two or more nodes accepted a write.

Violations (broken invariants, each a line of text):

* two leaders in one epoch (two watchers elected, promoting or summarising the same epoch) or
  two different new primaries published under one config epoch;
* an epoch going backwards in a watcher's samples (``current_epoch`` or ``config_epoch``);
* a failover from a minority: a watcher won an election while, for the whole preceding
  ``ELECTION_GRACE_S``, the network let it talk to fewer than a majority of the watchers;
* not exactly one primary after healing: ROLE of every node and every watcher's answer must
  name the same single primary (checked by the runner, passed in as ``final_primary``).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .observers import PROBE_INTERVAL
from .rig import WATCHER_HOSTS, Rig

# A vote granted just before a partition may still count for a win shortly after it.
ELECTION_GRACE_S = 1.5
_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass
class WriteLog:
    total: int = 0
    acked: set[int] = field(default_factory=set)
    wait_acked: set[int] = field(default_factory=set)
    errors: int = 0
    wait_acked_at: dict[int, float] = field(default_factory=dict)  # seq -> when the SET was acked

    @classmethod
    def read(cls, path: Path) -> WriteLog:
        log = cls()
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return log
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            log.total += 1
            if rec.get("err"):
                log.errors += 1
            if rec.get("ack") is not None:
                log.acked.add(int(rec["seq"]))
                if rec.get("wait") is not None and int(rec["wait"]) >= 1:
                    log.wait_acked.add(int(rec["seq"]))
                    log.wait_acked_at[int(rec["seq"])] = float(rec["ack"])
        return log


@dataclass
class Result:
    name: str
    violations: list[str] = field(default_factory=list)
    lost_wait_acked: int = 0
    # Of those, writes acked before two different nodes were restarted empty (kill -9, no
    # persistence): WAIT 1 keeps a write on two nodes, and the schedule may have wiped both,
    # which no failover can undo. Counted apart from the rule, never hidden.
    lost_wait_acked_destroyed: int = 0
    lost_plain: int = 0
    split_brain_s: float = 0.0
    writes: int = 0
    acked: int = 0
    wait_acked: int = 0
    failovers: int = 0
    # Promotions whose leader could not read every replica at selection (`seen=K/N`, K < N
    # in its +failover-summary): the rule (no WAIT-confirmed write lost) is stated
    # for promotions that saw every replica, so losses are reported apart for those runs.
    blind_promotions: int = 0
    final_primary: str | None = None
    seconds: float = 0.0
    replay: str = ""
    events: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_logfmt(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in _KV.findall(line):
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[key] = value
    return fields


def _ts(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class LeaderClaim:
    watcher: str
    epoch: int
    at: float | None
    how: str


def leader_claims(rig: Rig) -> list[LeaderClaim]:
    """Who claimed leadership of which epoch, from the logs and the history files."""
    claims: list[LeaderClaim] = []
    for name in WATCHER_HOSTS:
        last_new_epoch: int | None = None
        campaign: int | None = None
        for line in rig.hosts[name].log_text().splitlines():
            f = parse_logfmt(line)
            msg = f.get("msg", "")
            at = _ts(f.get("ts", ""))
            if msg.startswith("+new-epoch "):
                last_new_epoch = int(msg.split()[1])
            elif msg.startswith("+try-failover"):
                campaign = last_new_epoch
            elif msg.startswith("+elected-leader") and campaign is not None:
                claims.append(LeaderClaim(name, campaign, at, "elected"))
            elif msg == "promote" and f.get("epoch", "").isdigit():
                claims.append(LeaderClaim(name, int(f["epoch"]), at, "promote"))
        for entry in rig.history(name):
            if entry.get("role") == "leader" and isinstance(entry.get("epoch"), int):
                claims.append(LeaderClaim(name, entry["epoch"], entry.get("time"), "summary"))
    return claims


def blind_promotions(rig: Rig) -> int:
    """Promotions (from the leaders' history files) made without every replica's answer."""
    blind = 0
    for name in WATCHER_HOSTS:
        for entry in rig.history(name):
            seen, sep, known = str(entry.get("seen", "")).partition("/")
            if entry.get("role") == "leader" and sep and seen.isdigit() and known.isdigit():
                blind += int(seen) < int(known)
    return blind


def check_leaders(rig: Rig, claims: list[LeaderClaim]) -> list[str]:
    violations = []
    by_epoch: dict[int, set[str]] = defaultdict(set)
    for c in claims:
        by_epoch[c.epoch].add(c.watcher)
    for epoch, who in sorted(by_epoch.items()):
        if len(who) > 1:
            violations.append(f"two leaders in epoch {epoch}: {sorted(who)}")
    published: dict[int, set[str]] = defaultdict(set)
    for name in WATCHER_HOSTS:
        for entry in rig.history(name):
            if isinstance(entry.get("epoch"), int) and entry.get("new"):
                published[entry["epoch"]].add(str(entry["new"]))
    for epoch, new in sorted(published.items()):
        if len(new) > 1:
            violations.append(f"two topologies under config epoch {epoch}: {sorted(new)}")
    return violations


def check_minority(rig: Rig, claims: list[LeaderClaim]) -> list[str]:
    majority = len(WATCHER_HOSTS) // 2 + 1
    violations = []
    for c in claims:
        if c.how != "elected" or c.at is None:
            continue
        moments = [c.at - ELECTION_GRACE_S] + [
            t for t, _ in rig.net_timeline if c.at - ELECTION_GRACE_S < t <= c.at
        ]
        best = max(sum(1 for w in WATCHER_HOSTS if rig.can_talk(c.watcher, w, t)) for t in moments)
        if best < majority:
            violations.append(
                f"failover from a minority: {c.watcher} elected in epoch {c.epoch} while it could reach "
                f"only {best} of {len(WATCHER_HOSTS)} watchers"
            )
    return violations


def check_epochs(samples: dict[str, list[tuple[float, int, int]]]) -> list[str]:
    violations = []
    for name, rows in samples.items():
        for (_, cur0, cfg0), (t1, cur1, cfg1) in itertools.pairwise(rows):
            if cur1 < cur0 or cfg1 < cfg0:
                violations.append(
                    f"epoch went back on {name}: current {cur0}->{cur1}, config {cfg0}->{cfg1} at {t1:.3f}"
                )
                break
    return violations


def accepting_intervals(samples: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """A node accepted from one successful probe to the next one (if that succeeded too), or
    for one probe interval when the next probe failed or never came."""
    intervals: list[tuple[float, float]] = []
    for i, (t, ok) in enumerate(samples):
        if not ok:
            continue
        nxt = samples[i + 1] if i + 1 < len(samples) else None
        end = nxt[0] if nxt is not None and nxt[1] else t + PROBE_INTERVAL
        if intervals and t <= intervals[-1][1]:
            intervals[-1] = (intervals[-1][0], max(intervals[-1][1], end))  # one stretch
        else:
            intervals.append((t, end))
    return intervals


def longest_split_brain(per_node: dict[str, list[tuple[float, bool]]]) -> float:
    """The longest contiguous stretch during which at least two nodes were accepting."""
    edges: list[tuple[float, int]] = []
    for samples in per_node.values():
        for start, end in accepting_intervals(samples):
            edges.append((start, +1))
            edges.append((end, -1))
    edges.sort(key=lambda e: (e[0], e[1]))  # closings first at equal times
    count = 0
    began: float | None = None
    longest = 0.0
    for t, delta in edges:
        count += delta
        if count >= 2 and began is None:
            began = t
        elif count < 2 and began is not None:
            longest = max(longest, t - began)
            began = None
    return longest


_EMPTY_RESTART = re.compile(r"^start redis (\S+) empty\b")


def empty_restarts(events: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """(when, node) of every redis node the rig restarted without its data."""
    found = []
    for at, text in events:
        match = _EMPTY_RESTART.match(text)
        if match:
            found.append((at, match.group(1)))
    return found


def check_writes(
    result: Result,
    log: WriteLog,
    final_keys: set[int] | None,
    restarts: list[tuple[float, str]] | None = None,
) -> None:
    result.writes = log.total
    result.acked = len(log.acked)
    result.wait_acked = len(log.wait_acked)
    if final_keys is None:
        result.notes.append("final primary unreadable: lost writes not counted")
        return
    lost = log.acked - final_keys
    lost_wait_acked = lost & log.wait_acked
    result.lost_wait_acked = len(lost_wait_acked)
    result.lost_plain = len(lost - log.wait_acked)
    restarts = restarts or []
    result.lost_wait_acked_destroyed = sum(
        1
        for seq in lost_wait_acked
        if len({node for at, node in restarts if at > log.wait_acked_at.get(seq, float("inf"))}) >= 2
    )


def final_keys(rig: Rig, node: str) -> set[int]:
    def read(client: Any) -> set[int]:
        return {int(k[2:]) for k in client.scan_iter("w:*", count=1000)}

    return rig.on_redis(node, read, timeout=5.0)
