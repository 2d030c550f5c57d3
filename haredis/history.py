"""Failover history, durable across restarts: `data_dir/history.jsonl`, one JSON object a line.

The leader of a failover records the core's `+failover-summary` (phases, reason, offset lost);
every other watcher records the `+switch-master` it learned, as an observer. The file is
appended and flushed per entry and trimmed to the newest `keep` entries when it grows past
twice that, so it stays small. A corrupt line is skipped on read, never fatal: history is
for people, not for decisions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("haredis.history")


def parse_summary(message: str) -> dict[str, Any]:
    """`mymaster epoch=3 old=h:p new=h:p reason=odown detect=0.123 … lost_bytes=12` -> dict."""
    name, _, rest = message.partition(" ")
    entry: dict[str, Any] = {"master": name}
    for pair in rest.split():
        key, sep, value = pair.partition("=")
        if not sep:
            continue
        if value == "-":
            entry[key] = None
        elif key in ("epoch", "lost_bytes"):
            entry[key] = int(value) if value.lstrip("-").isdigit() else None
        elif key in ("detect", "agree", "elect", "promote", "reconfigure", "total"):
            try:
                entry[key] = float(value)
            except ValueError:
                entry[key] = None
        else:
            entry[key] = value
    return entry


class History:
    def __init__(self, path: Path, watcher: str, *, keep: int = 1000) -> None:
        self.path = path
        self.watcher = watcher
        self.keep = keep

    def observe(self, channel: str, message: str, *, config_epoch: int | None = None) -> None:
        """Feed every published event; records the ones that belong in the history."""
        if channel == "+failover-summary":
            entry = parse_summary(message)
            entry["role"] = "leader"
        elif channel == "+switch-master":
            parts = message.split()
            if len(parts) != 5:
                return
            entry = {
                "master": parts[0],
                "epoch": config_epoch,
                "old": f"{parts[1]}:{parts[2]}",
                "new": f"{parts[3]}:{parts[4]}",
                "role": "observer",
            }
        else:
            return
        entry["watcher"] = self.watcher
        entry["time"] = round(time.time(), 3)
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n"
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._trim()
        except OSError as exc:
            log.warning(
                "cannot write the failover history", extra={"error": str(exc), "file": str(self.path)}
            )

    def _trim(self) -> None:
        entries = self.read()
        if len(entries) <= 2 * self.keep:
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for entry in entries[-self.keep :]:
                f.write(json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def read(self, master: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read the failover history", extra={"error": str(exc)})
            return []
        entries: list[dict[str, Any]] = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (master is None or entry.get("master") == master):
                entries.append(entry)
        return entries[-limit:] if limit else entries
