"""haredis.state: round trips, atomic replacement, strict loading."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from haredis.core.model import Address, DurableState, PrimaryDurable
from haredis.state import StateError, load_state, save_state

STATE = DurableState(
    primaries={
        "mymaster": PrimaryDurable(
            current_epoch=7, voted_epoch=7, voted_for="w2", config_epoch=6, address=Address("10.0.0.11", 6379)
        ),
        "v6": PrimaryDurable(
            current_epoch=2,
            voted_epoch=1,
            voted_for="w1",
            address=Address("2001:db8::1", 6380),
            known=(Address("2001:db8::1", 6380), Address("2001:db8::2", 6380)),
            replid="a" * 40,
            replid2="b" * 40,
            fork=12345,
        ),
        "fresh": PrimaryDurable(),
    }
)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    # With umask 0 a careless open() would create a 0666 file; the mode must not be umask luck.
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    loaded = load_state(path)
    assert loaded == STATE
    assert loaded.get("v6").address == Address("2001:db8::1", 6380)
    assert loaded.get("fresh").address is None
    assert loaded.get("unknown") == PrimaryDurable()


def test_the_file_is_versioned_json(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert document["primaries"]["mymaster"] == {
        "current_epoch": 7,
        "voted_epoch": 7,
        "voted_for": "w2",
        "config_epoch": 6,
        "address": {"host": "10.0.0.11", "port": 6379},
        "known": [],
        "replid": "",
        "replid2": "",
        "fork": -1,
    }
    assert document["primaries"]["fresh"]["address"] is None


def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert load_state(tmp_path / "state.json") == DurableState()


def test_empty_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, DurableState())
    assert load_state(path) == DurableState()


@pytest.mark.usefixtures("umask_zero")
def test_file_mode_is_0600_and_no_temp_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    save_state(path, DurableState())  # replacing keeps the mode too
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_replaces_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    newer = DurableState(
        primaries={"mymaster": PrimaryDurable(current_epoch=8, voted_epoch=8, voted_for="w3")}
    )
    save_state(path, newer)
    assert load_state(path) == newer


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        save_state(path, DurableState())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_fsync_never_replaces_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        save_state(path, DurableState())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_file_and_then_the_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            synced.append("dir" if info.st_ino == tmp_path.stat().st_ino else "other dir")
        else:
            # The data must already be in the file when it is synced, i.e. before the rename.
            synced.append("file" if os.pread(fd, 1, 0) == b"{" and not path.exists() else "file?")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_state(path, STATE)
    assert synced == ["file", "dir"]


def test_save_into_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        save_state(tmp_path / "nope" / "state.json", STATE)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def _doc(**entry: object) -> str:
    fields: dict[str, object] = {
        "current_epoch": 1,
        "voted_epoch": 1,
        "voted_for": "w1",
        "config_epoch": 1,
        "address": None,
        "known": [],
        "replid": "",
        "replid2": "",
        "fork": -1,
    }
    fields.update(entry)
    return json.dumps({"version": 1, "primaries": {"m": fields}})


CORRUPT: list[tuple[str, str | bytes, str]] = [
    ("empty", b"", "not JSON"),
    ("truncated", '{"version": 1, "primaries": {', "not JSON"),
    ("binary", b"\x00\xff\x10", "not JSON"),
    ("array", "[]", "top level: expected an object, got an array"),
    ("no-version", '{"primaries": {}}', "version: expected an integer, got None"),
    ("future-version", '{"version": 2, "primaries": {}}', "version: expected 1, got 2"),
    ("bool-version", '{"version": true, "primaries": {}}', "version: expected an integer, got True"),
    ("extra-top-key", '{"version": 1, "primaries": {}, "x": 1}', "expected the keys primaries and version"),
    ("primaries-list", '{"version": 1, "primaries": []}', "primaries: expected an object, got an array"),
    ("entry-string", '{"version": 1, "primaries": {"m": "x"}}', "primaries.m: expected an object"),
    ("bool-epoch", _doc(current_epoch=True), "primaries.m.current_epoch: expected an integer >= 0, got True"),
    ("negative-epoch", _doc(voted_epoch=-1), "primaries.m.voted_epoch: expected an integer >= 0, got -1"),
    ("float-epoch", _doc(config_epoch=1.5), "primaries.m.config_epoch: expected an integer >= 0, got 1.5"),
    ("voted-for-null", _doc(voted_for=None), "primaries.m.voted_for: expected a string, got None"),
    ("address-string", _doc(address="10.0.0.1:6379"), "primaries.m.address: expected null or an object"),
    ("address-port", _doc(address={"host": "h", "port": "6379"}), "primaries.m.address.port: expected an"),
    ("address-port-0", _doc(address={"host": "h", "port": 0}), "primaries.m.address.port: expected an"),
    ("address-host", _doc(address={"host": "", "port": 1}), "primaries.m.address.host: expected a non-empty"),
    (
        "missing-key",
        json.dumps({"version": 1, "primaries": {"m": {"current_epoch": 1}}}),
        "expected the keys",
    ),
    ("unknown-key", _doc(leader="w1"), "primaries.m: expected the keys"),
    ("known-not-list", _doc(known={"host": "h", "port": 1}), "primaries.m.known: expected a list"),
    ("known-null-item", _doc(known=[None]), "primaries.m.known[0]: expected an object with host and port"),
    ("fork-too-low", _doc(fork=-2), "primaries.m.fork: expected an integer >= -1, got -2"),
    ("replid-not-string", _doc(replid=5), "primaries.m.replid: expected a replication id string"),
    ("known-bad-port", _doc(known=[{"host": "h", "port": -1}]), "primaries.m.known[0].port: expected an"),
    ("duplicate", '{"version": 1, "version": 1, "primaries": {}}', "duplicate key 'version'"),
]


@pytest.mark.parametrize(("content", "fragment"), [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_a_corrupt_file_raises_state_error_naming_file_and_fault(
    tmp_path: Path, content: str | bytes, fragment: str
) -> None:
    path = _write(tmp_path / "state.json", content)
    with pytest.raises(StateError) as info:
        load_state(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_a_valid_hand_written_file_loads(tmp_path: Path) -> None:
    known = [{"host": "h", "port": 6379}, {"host": "r", "port": 6380}]
    path = _write(tmp_path / "state.json", _doc(address={"host": "h", "port": 6379}, known=known))
    assert load_state(path) == DurableState(
        primaries={
            "m": PrimaryDurable(1, 1, "w1", 1, Address("h", 6379), (Address("h", 6379), Address("r", 6380)))
        }
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file regardless of its mode")
def test_an_unreadable_file_is_an_error_not_an_empty_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(path, STATE)
    path.chmod(0)
    with pytest.raises(StateError, match="cannot read the state file"):
        load_state(path)


def test_a_directory_in_place_of_the_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").mkdir()
    with pytest.raises(StateError, match="cannot read the state file"):
        load_state(tmp_path / "state.json")
