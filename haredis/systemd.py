"""sd_notify(3) with the standard library: one datagram to ``$NOTIFY_SOCKET``.

Outside systemd every call is a no-op returning False. A send never blocks the event loop (the
socket is non-blocking) and never raises: losing a STATUS= line must not stop the daemon.
When to send what: READY=1 after the first full cycle; WATCHDOG=1 only when the decision loop
has completed a cycle since the last ping; RELOADING=1, then READY=1, around a SIGHUP reload;
STOPPING=1 when shutdown starts.
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Final

__all__ = ["notify", "ready", "reloading", "status", "stopping", "watchdog", "watchdog_interval"]

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]+")


def notify(*lines: str) -> bool:
    """Send ``VAR=value`` lines as one datagram. True if it was sent.

    Raises ValueError for a line containing a newline or NUL: that would smuggle in another
    assignment, and is a bug in the caller (use ``status()`` for arbitrary text).
    """
    for line in lines:
        if "\n" in line or "\0" in line:
            raise ValueError(f"sd_notify line contains a newline or NUL: {line!r}")
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        return False  # unset, or a form we do not speak (vsock:…)
    if not lines:
        return False
    payload = "\n".join(lines).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(payload, address)
    except OSError:
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    return notify("READY=1", *_status_lines(status_text))


def status(text: str) -> bool:
    """Set the one-line status ``systemctl status`` shows; control characters become spaces."""
    return notify(*_status_lines(text))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def reloading() -> bool:
    # systemd matches MONOTONIC_USEC against CLOCK_MONOTONIC, which time.monotonic_ns reads on Linux.
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds (ping at least every half of it), or None when the
    watchdog is off, misconfigured, or meant for another process."""
    usec_text = os.environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = os.environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            if int(pid_text) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        usec = int(usec_text)
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


def _status_lines(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return (f"STATUS={_CONTROL.sub(' ', text).strip()}",)
