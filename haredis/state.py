"""Durable epochs and votes: the one file a watcher must never lose or half-write.

``save_state`` writes a temp file in the same directory, fsyncs it, renames it over the old
file and fsyncs the directory, so after a crash the file holds either the old or the new
state, never a mix. The caller must not let anyone see a vote before ``save_state`` returned.

``load_state`` is strict on purpose: a file it cannot fully understand raises ``StateError``
and the daemon refuses to start, because starting empty could mean voting twice in an epoch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from haredis.core.model import Address, DurableState, PrimaryDurable

__all__ = ["VERSION", "StateError", "load_state", "save_state"]

VERSION: Final = 1
_INT_FIELDS: Final = ("current_epoch", "voted_epoch", "config_epoch")
_FIELDS: Final = frozenset((*_INT_FIELDS, "voted_for", "address", "known", "replid", "replid2", "fork"))


class StateError(Exception):
    """The state file exists but cannot be trusted. The message names the file and the fault."""


def save_state(path: str | os.PathLike[str], state: DurableState) -> None:
    """Atomically replace ``path`` with ``state`` (mode 0600). Raises OSError on failure."""
    target = Path(path)
    payload = _document(state).encode("utf-8")
    directory = target.parent
    # mkstemp creates the file 0600 whatever the umask, so the votes are never world-readable.
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, target)
    except BaseException:
        # Also on cancellation: never leave a half-written temp file behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    # The rename is only durable once the directory entry is on disk.
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _document(state: DurableState) -> str:
    """The file's text: a JSON object with one line per primary, so an operator can still
    read it. Each line comes from json's C encoder; an indented dump would go through its
    pure-Python one, several times slower, and this runs on every vote of every primary."""
    lines = [
        f"    {json.dumps(name)}: {json.dumps(_encode(entry), sort_keys=True)}"
        for name, entry in sorted(state.primaries.items())
    ]
    primaries = "{\n" + ",\n".join(lines) + "\n  }" if lines else "{}"
    return f'{{\n  "primaries": {primaries},\n  "version": {VERSION}\n}}\n'


def load_state(path: str | os.PathLike[str]) -> DurableState:
    """Read ``path``; a missing file is a fresh watcher (empty state). Raises StateError."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return DurableState()
    except OSError as exc:
        raise StateError(f"{name}: cannot read the state file: {exc.strerror or exc}") from None
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        # JSONDecodeError is a ValueError, and so is a duplicate key.
        raise StateError(f"{name}: corrupt state file (not JSON: {exc})") from None
    return _decode(name, document)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads keeps the last of two equal keys; two records for one primary mean corruption.
    result = dict(pairs)
    if len(result) != len(pairs):
        keys = [key for key, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return result


def _encode(entry: PrimaryDurable) -> dict[str, object]:
    address = entry.address
    return {
        "current_epoch": entry.current_epoch,
        "voted_epoch": entry.voted_epoch,
        "voted_for": entry.voted_for,
        "config_epoch": entry.config_epoch,
        # An object, not "host:port": no quoting rules to get wrong for IPv6 hosts.
        "address": None if address is None else {"host": address.host, "port": address.port},
        "known": [{"host": a.host, "port": a.port} for a in entry.known],
        "replid": entry.replid,
        "replid2": entry.replid2,
        "fork": entry.fork,
    }


def _decode(name: str, document: object) -> DurableState:
    def fail(where: str, what: str) -> StateError:
        return _error(name, where, what)

    if not isinstance(document, dict):
        raise fail("top level", f"expected an object, got {_kind(document)}")
    version = document.get("version")
    if type(version) is not int:
        raise fail("version", f"expected an integer, got {version!r}")
    if version != VERSION:
        raise fail("version", f"expected {VERSION}, got {version} (written by another haredis version?)")
    if set(document) != {"version", "primaries"}:
        raise fail("top level", f"expected the keys primaries and version, got {sorted(document)}")
    primaries = document["primaries"]
    if not isinstance(primaries, dict):
        raise fail("primaries", f"expected an object, got {_kind(primaries)}")

    result: dict[str, PrimaryDurable] = {}
    for primary, entry in primaries.items():
        where = f"primaries.{primary}"
        if not isinstance(entry, dict):
            raise fail(where, f"expected an object, got {_kind(entry)}")
        if set(entry) != _FIELDS:
            raise fail(where, f"expected the keys {sorted(_FIELDS)}, got {sorted(entry)}")
        numbers: dict[str, int] = {}
        for key in _INT_FIELDS:
            value = entry[key]
            # bool is an int to Python but never a valid epoch.
            if type(value) is not int or value < 0:
                raise fail(f"{where}.{key}", f"expected an integer >= 0, got {value!r}")
            numbers[key] = value
        voted_for = entry["voted_for"]
        if not isinstance(voted_for, str):
            raise fail(f"{where}.voted_for", f"expected a string, got {voted_for!r}")
        known_raw = entry["known"]
        if not isinstance(known_raw, list):
            raise fail(f"{where}.known", f"expected a list, got {_kind(known_raw)}")
        known: list[Address] = []
        for i, item in enumerate(known_raw):
            decoded = _decode_address(name, f"{where}.known[{i}]", item)
            if decoded is None:
                raise fail(f"{where}.known[{i}]", "expected an object with host and port, got null")
            known.append(decoded)
        for key in ("replid", "replid2"):
            if not isinstance(entry[key], str) or len(entry[key]) > 64:
                raise fail(f"{where}.{key}", f"expected a replication id string, got {entry[key]!r}")
        fork = entry["fork"]
        if type(fork) is not int or fork < -1:
            raise fail(f"{where}.fork", f"expected an integer >= -1, got {fork!r}")
        result[primary] = PrimaryDurable(
            current_epoch=numbers["current_epoch"],
            voted_epoch=numbers["voted_epoch"],
            voted_for=voted_for,
            config_epoch=numbers["config_epoch"],
            address=_decode_address(name, f"{where}.address", entry["address"]),
            known=tuple(known),
            replid=entry["replid"],
            replid2=entry["replid2"],
            fork=fork,
        )
    return DurableState(primaries=result)


def _decode_address(name: str, where: str, value: object) -> Address | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"host", "port"}:
        raise _error(name, where, f"expected null or an object with host and port, got {value!r}")
    host, port = value["host"], value["port"]
    if not isinstance(host, str) or not host:
        raise _error(name, f"{where}.host", f"expected a non-empty string, got {host!r}")
    if type(port) is not int or not 0 < port < 65536:
        raise _error(name, f"{where}.port", f"expected an integer in 1..65535, got {port!r}")
    return Address(host, port)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _error(name: str, where: str, what: str) -> StateError:
    return StateError(f"{name}: corrupt state file: {where}: {what}")
