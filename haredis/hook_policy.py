"""What the hooks do for an event, as pure functions: which events run a script and with
which arguments (as Sentinel builds them), when a script or webhook is retried and after how
long, the environment a script gets, and a webhook's body and signature. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Final

from haredis.config import WARNING_EVENTS, Secret

__all__ = [
    "NO_INSTANCE_EVENTS",
    "is_warning",
    "master_of",
    "notification_argv",
    "reconfig_argv",
    "retry_delay",
    "script_env",
    "script_should_retry",
    "sign",
    "webhook_body",
    "webhook_should_retry",
]

# WARNING events published without an instance: Sentinel runs no script for them.
NO_INSTANCE_EVENTS: Final = frozenset({"+tilt", "-tilt", "-script-error", "-script-timeout"})

_MAX_DELAY: Final = 86_400.0  # no backoff longer than a day, whatever the retry count
_ENV_KEEP: Final = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


def is_warning(event: str) -> bool:
    """A WARNING-level event (Sentinel's levels, plus haredis's own abort and maintenance)."""
    return event in WARNING_EVENTS or event.startswith("-failover-abort-")


def master_of(event: str, message: str) -> str | None:
    """The master an event is about, from its message: ``+switch-master <name> …`` (and
    ``+failover-summary <name> …``), an
    instance description ``master <name> <ip> <port>``, or ``… @ <master> …`` for a replica or
    a watcher. None for events about no master (``+tilt``, ``+new-epoch``…)."""
    words = message.split()
    if event in ("+switch-master", "+failover-summary"):
        return words[0] if words else None
    if "@" in words:
        index = words.index("@")
        return words[index + 1] if index + 1 < len(words) else None
    if len(words) >= 2 and words[0] == "master":
        return words[1]
    return None


def _clean(text: str) -> str:
    # execve cannot pass a NUL byte; everything else goes through as is (no shell to escape).
    return text.replace("\x00", "")


def notification_argv(script: str | os.PathLike[str], event: str, message: str) -> tuple[str, ...] | None:
    """Sentinel's notification script call, or None when this event runs no script."""
    if not is_warning(event) or event in NO_INSTANCE_EVENTS:
        return None
    return (os.fspath(script), _clean(event), _clean(message))


def reconfig_argv(script: str | os.PathLike[str], message: str, *, leader: bool) -> tuple[str, ...] | None:
    """Sentinel's client-reconfig script call for ``+switch-master <name> <oldip> <oldport>
    <newip> <newport>``: ``<master> <leader|observer> start <from-ip> <from-port> <to-ip>
    <to-port>``. None when the message does not have that shape."""
    words = message.split()
    if len(words) != 5:
        return None
    name, old_ip, old_port, new_ip, new_port = (_clean(w) for w in words)
    role = "leader" if leader else "observer"
    return (os.fspath(script), name, role, "start", old_ip, old_port, new_ip, new_port)


def script_should_retry(returncode: int | None) -> bool:
    """Exit 1 or killed by a signal: retry later (Sentinel). Exit 0 or >= 2, or a script that
    could not be started (None): do not."""
    return returncode is not None and (returncode == 1 or returncode < 0)


def retry_delay(base: float, retry_num: int) -> float:
    """The wait before retry number ``retry_num`` (1, 2, …): base, 2 base, 4 base…"""
    if retry_num < 1 or base <= 0:
        return max(0.0, base)
    exponent = min(retry_num - 1, 64)
    return min(base * (2.0**exponent), _MAX_DELAY)


def webhook_should_retry(status: int | None) -> bool:
    """None (no answer: connection error, timeout, garbage) or 5xx: retry. Anything else:
    delivered (2xx) or refused for good (3xx, 4xx)."""
    return status is None or status >= 500


def script_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment scripts run with: locale, time zone, PATH and who we are; nothing
    else (no NOTIFY_SOCKET, no CREDENTIALS_DIRECTORY, no secrets)."""
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items() if key in _ENV_KEEP or key.startswith("LC_")}
    env.setdefault("PATH", _DEFAULT_PATH)
    return env


def webhook_body(
    *,
    event: str,
    message: str,
    master: str | None,
    watcher: str,
    epoch: int | None,
    timestamp: float,
    delivery_id: str,
) -> bytes:
    """The exact bytes POSTed (and signed)."""
    document = {
        "event": event,
        "message": message,
        "master": master,
        "watcher": watcher,
        "epoch": epoch,
        "timestamp": timestamp,
        "id": delivery_id,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def sign(secret: Secret, body: bytes) -> str:
    """``X-Haredis-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    digest = hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
