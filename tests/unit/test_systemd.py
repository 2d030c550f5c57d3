"""haredis.systemd: real datagrams on a real socket, path and abstract namespace."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from haredis import systemd


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) >= 108:  # sun_path limit; pytest's tmp_path is normally far shorter
        pytest.skip(f"tmp_path too long for an AF_UNIX socket: {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on sock."""
    out: list[bytes] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096))
    except BlockingIOError:
        return out
    finally:
        sock.settimeout(5)


def test_notify_sends_one_datagram(receiver: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=all good") is True
    assert receiver.recv(4096) == b"READY=1\nSTATUS=all good"
    assert pending(receiver) == []


def test_helpers_send_the_documented_messages(receiver: socket.socket) -> None:
    assert systemd.ready()
    assert systemd.ready("1 primary ok")
    assert systemd.status("cycle 12: mymaster ok")
    assert systemd.watchdog()
    assert systemd.stopping()
    assert pending(receiver) == [
        b"READY=1",
        b"READY=1\nSTATUS=1 primary ok",
        b"STATUS=cycle 12: mymaster ok",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]


def test_reloading_carries_the_monotonic_clock(receiver: socket.socket) -> None:
    before = time.monotonic_ns() // 1000
    assert systemd.reloading()
    after = time.monotonic_ns() // 1000
    first, second = receiver.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_status_text_cannot_inject_another_assignment(receiver: socket.socket) -> None:
    assert systemd.status("redis said: oops\nREADY=1\x00")
    assert receiver.recv(4096) == b"STATUS=redis said: oops READY=1"


def test_notify_refuses_a_line_with_a_newline(receiver: socket.socket) -> None:
    with pytest.raises(ValueError, match="newline"):
        systemd.notify("STATUS=a\nREADY=1")
    assert pending(receiver) == []


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"haredis-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_unset_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert systemd.watchdog() is False


def test_unsupported_address_forms_are_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert systemd.notify("READY=1") is False


def test_send_errors_return_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert systemd.notify("READY=1") is False
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "a-file"))
    assert systemd.notify("READY=1") is False


def test_a_full_receiver_gives_false_instead_of_blocking(receiver: socket.socket) -> None:
    # Nobody reads: the kernel queue fills (net.unix.max_dgram_qlen) and a blocking send would
    # hang the event loop; ours must fail fast instead.
    results = [systemd.watchdog() for _ in range(5000)]
    assert results[0] is True
    assert results[-1] is False


def test_nothing_to_send(receiver: socket.socket) -> None:
    assert systemd.notify() is False
    assert pending(receiver) == []


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("15000000", None, 15.0),
        ("500000", "self", 0.5),
        ("15000000", "other", None),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        ("15000000", "not-a-pid", None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid == "self":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    elif pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert systemd.watchdog_interval() == expected
