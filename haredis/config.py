"""Configuration: one TOML file -> frozen dataclasses.

Every value is checked where it is read, so an error names the file, the key path and what was
expected, and the daemon refuses to start. Times in the file are integer milliseconds (keys end
in ``_ms``); ``Config.to_core()`` converts them to the float seconds the core works in.

Relative paths are resolved against the directory of the config file, so a file installed as
``/etc/haredis/haredis.toml`` can say ``secret_file = "secret"``. A path starting with
``${CREDENTIALS_DIRECTORY}/`` is resolved in systemd's credentials directory (``LoadCredential=``).
Secrets are read at load time and kept in ``Secret`` wrappers that never print their value.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from haredis.core.model import Address, PrimarySettings, WatcherSettings

__all__ = [
    "EVENTS",
    "HOOKS_KEYS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "PRIMARY_KEYS",
    "WARNING_EVENTS",
    "WATCHER_KEYS",
    "WEBHOOK_KEYS",
    "Config",
    "ConfigError",
    "HooksConfig",
    "PrimaryConfig",
    "Secret",
    "WatcherConfig",
    "WebhookConfig",
    "load_config",
    "parse_config",
]

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("logfmt", "json")

# The allowed keys, in the order an "unknown key" error lists them.
WATCHER_KEYS: Final = (
    "name",
    "bind",
    "port",
    "announce",
    "metrics_port",
    "peers",
    "data_dir",
    "secret_file",
    "client_password_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
    "tick_interval_ms",
    "gossip_period_ms",
    "opinion_ttl_ms",
    "election_timeout_ms",
    "retry_backoff_ms",
    "hold_trigger_ms",
    "hold_duration_ms",
    "max_clients",
    "client_idle_timeout_ms",
    "log_level",
    "log_format",
)
PRIMARY_KEYS: Final = (
    "name",
    "address",
    "quorum",
    "down_after_ms",
    "crash_detect_ms",
    "failover_timeout_ms",
    "parallel_syncs",
    "max_lag_bytes",
    "lag_wait_ms",
    "min_failover_interval_ms",
    "info_period_ms",
    "convert_after_ms",
    "fencing",
    "fencing_min_replicas",
    "fencing_max_lag_s",
    "username",
    "password_file",
    "tls",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
)

HOOKS_KEYS: Final = (
    "notification_script",
    "client_reconfig_script",
    "script_timeout_ms",
    "script_max_retries",
    "script_retry_delay_ms",
    "webhooks",
)
WEBHOOK_KEYS: Final = (
    "url",
    "secret_file",
    "events",
    "timeout_ms",
    "max_retries",
    "retry_delay_ms",
    "queue_size",
)

# Sentinel's pub/sub events by level (the channel is the event name), plus haredis's own
# (+maintenance / -maintenance, -failover-abort-superseded, +failover-summary). WARNING events
# are what the notification script and, by default, webhooks receive.
WARNING_EVENTS: Final = frozenset(
    {
        "+monitor",
        "-monitor",
        "+reset-master",
        "+set",
        "+sdown",
        "-sdown",
        "+odown",
        "-odown",
        "+new-epoch",
        "+vote-for-leader",
        "+try-failover",
        "+elected-leader",
        "-failover-abort-not-elected",
        "+failover-state-select-slave",
        "+selected-slave",
        "-failover-abort-no-good-slave",
        "-failover-abort-slave-timeout",
        "-failover-abort-superseded",
        "+promoted-slave",
        "+failover-state-reconf-slaves",
        "+failover-end",
        "+failover-end-for-timeout",
        "+config-update-from",
        "+switch-master",
        "+tilt",
        "-tilt",
        "-script-error",
        "-script-timeout",
        "+maintenance",
        "-maintenance",
    }
)
_OTHER_EVENTS: Final = frozenset(
    {
        # NOTICE
        "+slave",
        "+sentinel",
        "+reboot",
        "+convert-to-slave",
        "+fix-slave-config",
        "+failover-state-send-slaveof-noone",
        "+failover-state-wait-promotion",
        "+slave-reconf-sent",
        "+slave-reconf-inprog",
        "+slave-reconf-done",
        "-slave-reconf-sent-timeout",
        "+slave-reconf-sent-be",
        "+sentinel-address-switch",
        "+sentinel-invalid-addr",
        "+sentinel-address-update",
        # VERBOSE
        "+role-change",
        "-role-change",
        # haredis: one key=value line per failover this watcher led, when it ends
        "+failover-summary",
    }
)
# Every event name a webhook's `events` list may name ("*" means every event).
EVENTS: Final = WARNING_EVENTS | _OTHER_EVENTS

# Optional millisecond keys and their minimum. The common upper bound (one day) catches a value
# written in the wrong unit (microseconds, or seconds with three zeros too many) early.
_WATCHER_MS: Final = {
    "tick_interval_ms": 1,
    "gossip_period_ms": 1,
    "opinion_ttl_ms": 1,
    "election_timeout_ms": 1,
    "retry_backoff_ms": 0,
    "hold_trigger_ms": 1,
    "hold_duration_ms": 0,
    "client_idle_timeout_ms": 0,
}
_PRIMARY_MS: Final = {
    "down_after_ms": 10,
    "crash_detect_ms": 0,
    "failover_timeout_ms": 1,
    "lag_wait_ms": 0,
    "min_failover_interval_ms": 0,
    "info_period_ms": 1,
    "convert_after_ms": 0,
}
_MAX_MS: Final = 86_400_000
_MAX_RETRIES: Final = 100
_MAX_QUEUE: Final = 1_000_000
_MAX_SECRET_BYTES: Final = 65_536  # a secret file is one line; never slurp /dev/zero

_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME_EXPECTED: Final = "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -"
_HOSTNAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_CREDENTIALS_PREFIX: Final = "${CREDENTIALS_DIRECTORY}/"


def _redact_url(value: str) -> str:
    """``scheme://host[:port]/…``: a URL as an error message may show it (no user:password,
    no path, no query: those hold tokens)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return "<not a URL>"
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    hidden = len(netloc) < len(rest) or "@" in rest.split("/", 1)[0]
    return f"{scheme[:16]}://{netloc[:255]}" + ("/…" if hidden else "")


class ConfigError(Exception):
    """A config file is unusable. ``str()`` is ``"<file>: <key path>: <what is wrong>"``."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


class Secret:
    """A password or key read from a file. Prints as ``******`` so it never reaches a log."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "******"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class PrimaryConfig:
    """One ``[[primaries]]`` table. Times in milliseconds, as in the file."""

    name: str
    address: Address
    quorum: int
    down_after_ms: int = 5000
    crash_detect_ms: int = 250
    failover_timeout_ms: int = 60000
    parallel_syncs: int = 1
    max_lag_bytes: int | None = None
    lag_wait_ms: int = 2000
    min_failover_interval_ms: int = 15000
    info_period_ms: int = 1000
    convert_after_ms: int = 2000
    fencing: bool = False
    fencing_min_replicas: int = 1
    fencing_max_lag_s: int = 2
    username: str | None = None
    password_file: Path | None = None
    password: Secret | None = None
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def to_core(self) -> PrimarySettings:
        return PrimarySettings(
            name=self.name,
            address=self.address,
            quorum=self.quorum,
            down_after=self.down_after_ms / 1000,
            crash_detect=self.crash_detect_ms / 1000,
            failover_timeout=self.failover_timeout_ms / 1000,
            parallel_syncs=self.parallel_syncs,
            max_lag_bytes=self.max_lag_bytes,
            lag_wait=self.lag_wait_ms / 1000,
            min_failover_interval=self.min_failover_interval_ms / 1000,
            info_period=self.info_period_ms / 1000,
            convert_after=self.convert_after_ms / 1000,
            fencing=self.fencing,
            fence_min_replicas=self.fencing_min_replicas,
            fence_max_lag=self.fencing_max_lag_s,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WatcherConfig:
    """The ``[watcher]`` table. Times in milliseconds, as in the file."""

    name: str
    bind: str = "127.0.0.1"
    port: int = 26379
    announce: Address | None = None
    metrics_port: int = 9479  # 0: no HTTP endpoint
    peers: tuple[Address, ...] = ()
    data_dir: Path
    secret_file: Path | None = None
    secret: Secret | None = None
    client_password_file: Path | None = None
    client_password: Secret | None = None
    # TLS on the RESP port (clients, CLI and peers); peers are verified against tls_ca_file.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    tick_interval_ms: int = 100
    gossip_period_ms: int = 500
    opinion_ttl_ms: int = 2000
    election_timeout_ms: int = 600
    retry_backoff_ms: int = 400
    hold_trigger_ms: int = 2000
    hold_duration_ms: int = 10000
    # The RESP port: connections beyond max_clients are refused with Redis's error; a client
    # silent for client_idle_timeout_ms is closed (0: never; subscribers never are).
    max_clients: int = 10000
    client_idle_timeout_ms: int = 300000
    log_level: str = "info"
    log_format: str = "logfmt"

    @property
    def electorate(self) -> int:
        """Every configured watcher, this one included."""
        return len(self.peers) + 1

    @property
    def advertised(self) -> Address:
        """The address peers and clients should use for this watcher."""
        return self.announce or Address(self.bind, self.port)

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """One ``[[hooks.webhooks]]`` table. Times in milliseconds, as in the file."""

    url: str
    secret_file: Path | None = None
    secret: Secret | None = None  # HMAC-SHA256 key for X-Haredis-Signature
    events: tuple[str, ...] | None = None  # None: the WARNING events; ("*",): every event
    timeout_ms: int = 5000
    max_retries: int = 5
    retry_delay_ms: int = 1000
    queue_size: int = 1000

    def wants(self, event: str) -> bool:
        if self.events is None:
            return event in WARNING_EVENTS or event.startswith("-failover-abort-")
        return "*" in self.events or event in self.events


@dataclass(frozen=True, slots=True, kw_only=True)
class HooksConfig:
    """The ``[hooks]`` table: scripts and webhooks, set only in this file. Times in ms."""

    notification_script: Path | None = None
    client_reconfig_script: Path | None = None
    script_timeout_ms: int = 60000
    script_max_retries: int = 10
    script_retry_delay_ms: int = 30000
    webhooks: tuple[WebhookConfig, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.notification_script or self.client_reconfig_script or self.webhooks)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    watcher: WatcherConfig
    primaries: tuple[PrimaryConfig, ...]
    source: str
    hooks: HooksConfig = HooksConfig()

    def primary(self, name: str) -> PrimaryConfig | None:
        for primary in self.primaries:
            if primary.name == name:
                return primary
        return None

    def to_core(self) -> WatcherSettings:
        w = self.watcher
        return WatcherSettings(
            name=w.name,
            electorate=w.electorate,
            primaries=tuple(p.to_core() for p in self.primaries),
            tick_interval=w.tick_interval_ms / 1000,
            gossip_period=w.gossip_period_ms / 1000,
            opinion_ttl=w.opinion_ttl_ms / 1000,
            election_timeout=w.election_timeout_ms / 1000,
            retry_backoff=w.retry_backoff_ms / 1000,
            hold_trigger=w.hold_trigger_ms / 1000,
            hold_duration=w.hold_duration_ms / 1000,
        )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check a TOML config file. Raises ConfigError."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not valid UTF-8: {exc.reason}") from None
    return parse_config(data, source, base_dir=Path(source).absolute().parent)


def parse_config(
    data: Mapping[str, object], source: str, *, base_dir: str | os.PathLike[str] | None = None
) -> Config:
    """Check already-decoded TOML. Relative paths resolve against ``base_dir``, by default the
    directory of ``source``."""
    base = Path(base_dir) if base_dir is not None else Path(source).absolute().parent
    ctx = _Context(source, base)
    for key in data:
        if key not in ("watcher", "primaries", "hooks"):
            # watcher and primaries are the tables every file has; hooks is optional.
            raise ctx.error(
                key, "expected one of the keys watcher, primaries", key, "or hooks, which is optional"
            )
    top = _Table(ctx, "", data, ("watcher", "primaries", "hooks"))
    watcher = _parse_watcher(ctx, top.table("watcher", WATCHER_KEYS))
    items = top.array("primaries", required=True, expected="[[primaries]] tables")
    if not items:
        raise ctx.error("primaries", "expected at least one [[primaries]] table", items)
    primaries: list[PrimaryConfig] = []
    for index, item in enumerate(items):
        key = f"primaries[{index}]"
        if not isinstance(item, Mapping):
            raise ctx.error(key, "expected a table", item)
        primary = _parse_primary(ctx, _Table(ctx, key, item, PRIMARY_KEYS), watcher.electorate)
        for other_index, other in enumerate(primaries):
            if other.name == primary.name:
                raise ctx.error(
                    f"{key}.name", f"expected a name not used by primaries[{other_index}]", primary.name
                )
            if _same(other.address, primary.address):
                raise ctx.error(
                    f"{key}.address",
                    f"expected an address not monitored as primaries[{other_index}] ({other.name})",
                    str(primary.address),
                )
        primaries.append(primary)
    hooks = _parse_hooks(ctx, top.table("hooks", HOOKS_KEYS)) if top.has("hooks") else HooksConfig()
    return Config(watcher=watcher, primaries=tuple(primaries), source=source, hooks=hooks)


# ---------------------------------------------------------------------------------------------


def _parse_watcher(ctx: _Context, t: _Table) -> WatcherConfig:
    kw: dict[str, Any] = {"name": t.string("name", pattern=_NAME_RE, expected=_NAME_EXPECTED)}
    if t.has("bind"):
        kw["bind"] = t.host("bind")
    if t.has("port"):
        kw["port"] = t.integer("port", lo=1, hi=65535)
    if t.has("announce"):
        kw["announce"] = t.address("announce")
    if t.has("metrics_port"):
        kw["metrics_port"] = t.integer("metrics_port", lo=0, hi=65535)
    if t.has("max_clients"):
        kw["max_clients"] = t.integer("max_clients", lo=16, hi=1_000_000)
    kw["data_dir"] = t.path("data_dir")
    for key, lowest in _WATCHER_MS.items():
        if t.has(key):
            kw[key] = t.integer(key, lo=lowest, hi=_MAX_MS)
    if t.has("log_level"):
        kw["log_level"] = t.choice("log_level", LOG_LEVELS)
    if t.has("log_format"):
        kw["log_format"] = t.choice("log_format", LOG_FORMATS)
    if t.has("client_password_file"):
        kw["client_password_file"], kw["client_password"] = t.secret("client_password_file")
    for key in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        if t.has(key):
            path = t.path(key)
            if not path.is_file():
                raise ctx.error(t.path_of(key), "expected an existing file", t.raw(key), str(path))
            kw[key] = path
    if ("tls_cert_file" in kw) != ("tls_key_file" in kw):
        missing = "tls_key_file" if "tls_cert_file" in kw else "tls_cert_file"
        raise ctx.error(
            t.path_of(missing), "expected tls_cert_file and tls_key_file to be set together", _MISSING
        )
    if "tls_ca_file" in kw and "tls_cert_file" not in kw:
        raise ctx.error(
            t.path_of("tls_cert_file"), "expected a certificate when tls_ca_file is set", _MISSING
        )

    own = WatcherConfig(name=kw["name"], data_dir=kw["data_dir"])
    bind, port = kw.get("bind", own.bind), kw.get("port", own.port)
    selves = [Address(bind, port)] + ([kw["announce"]] if "announce" in kw else [])
    peers: list[Address] = []
    for index, item in enumerate(t.array("peers")):
        key = f"{t.path_of('peers')}[{index}]"
        peer = t.parse_address(key, item)
        for other_index, other in enumerate(peers):
            if _same(other, peer):
                raise ctx.error(key, f"expected a peer not already listed as peers[{other_index}]", item)
        for self_address in selves:
            if _same(self_address, peer):
                raise ctx.error(
                    key,
                    f"expected another watcher, not this one ({self_address}; peers lists the others)",
                    item,
                )
        peers.append(peer)
    kw["peers"] = tuple(peers)

    if t.has("secret_file"):
        kw["secret_file"], kw["secret"] = t.secret("secret_file")
    elif peers:
        raise ctx.error(
            t.path_of("secret_file"),
            "expected a file holding the shared peer secret (required when peers is not empty)",
            _MISSING,
        )

    config = WatcherConfig(**kw)
    if config.metrics_port and config.metrics_port == config.port:
        raise ctx.error(
            t.path_of("metrics_port"), f"expected a port other than port ({config.port})", config.metrics_port
        )
    # Opinions must outlive the heartbeat that refreshes them, or peers never agree on anything.
    if config.opinion_ttl_ms <= config.gossip_period_ms:
        raise ctx.error(
            t.path_of("opinion_ttl_ms"),
            f"expected more than gossip_period_ms ({config.gossip_period_ms})",
            config.opinion_ttl_ms,
        )
    # A trigger within one tick would put the watcher in hold on every ordinary tick.
    if config.hold_trigger_ms <= config.tick_interval_ms:
        raise ctx.error(
            t.path_of("hold_trigger_ms"),
            f"expected more than tick_interval_ms ({config.tick_interval_ms})",
            config.hold_trigger_ms,
        )
    return config


def _parse_primary(ctx: _Context, t: _Table, electorate: int) -> PrimaryConfig:
    kw: dict[str, Any] = {
        "name": t.string("name", pattern=_NAME_RE, expected=_NAME_EXPECTED),
        "address": t.address("address"),
        "quorum": t.integer(
            "quorum", lo=1, hi=electorate, why=f" (the number of watchers: peers + 1 = {electorate})"
        ),
    }
    for key, lowest in _PRIMARY_MS.items():
        if t.has(key):
            kw[key] = t.integer(key, lo=lowest, hi=_MAX_MS)
    if t.has("parallel_syncs"):
        kw["parallel_syncs"] = t.integer("parallel_syncs", lo=1, hi=None)
    if t.has("max_lag_bytes"):
        kw["max_lag_bytes"] = t.integer("max_lag_bytes", lo=0, hi=None)
    if t.has("fencing"):
        kw["fencing"] = t.boolean("fencing")
    if t.has("fencing_min_replicas"):
        kw["fencing_min_replicas"] = t.integer("fencing_min_replicas", lo=1, hi=16)
    if t.has("fencing_max_lag_s"):
        # Redis takes whole seconds; the lease waited before a promotion is this + 3 s.
        kw["fencing_max_lag_s"] = t.integer("fencing_max_lag_s", lo=1, hi=60)
    if t.has("username"):
        kw["username"] = t.string("username")
    if t.has("password_file"):
        kw["password_file"], kw["password"] = t.secret("password_file")
    if t.has("tls"):
        kw["tls"] = t.boolean("tls")
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        if t.has(key):
            # Certificates are read by the TLS layer later; check now so check-config catches them.
            path = t.path(key)
            if not kw.get("tls", False):
                raise ctx.error(t.path_of(key), "expected tls = true when a TLS file is set", t.raw(key))
            if not path.is_file():
                raise ctx.error(t.path_of(key), "expected an existing file", t.raw(key), str(path))
            kw[key] = path
    if ("tls_cert_file" in kw) != ("tls_key_file" in kw):
        missing = "tls_key_file" if "tls_cert_file" in kw else "tls_cert_file"
        raise ctx.error(
            t.path_of(missing), "expected tls_cert_file and tls_key_file to be set together", _MISSING
        )
    return PrimaryConfig(**kw)


def _parse_hooks(ctx: _Context, t: _Table) -> HooksConfig:
    kw: dict[str, Any] = {}
    for key in ("notification_script", "client_reconfig_script"):
        if t.has(key):
            kw[key] = t.executable(key)
    if t.has("script_timeout_ms"):
        kw["script_timeout_ms"] = t.integer("script_timeout_ms", lo=1, hi=_MAX_MS)
    if t.has("script_max_retries"):
        kw["script_max_retries"] = t.integer("script_max_retries", lo=0, hi=_MAX_RETRIES)
    if t.has("script_retry_delay_ms"):
        kw["script_retry_delay_ms"] = t.integer("script_retry_delay_ms", lo=0, hi=_MAX_MS)
    webhooks: list[WebhookConfig] = []
    for index, item in enumerate(t.array("webhooks", expected="[[hooks.webhooks]] tables")):
        key = f"{t.path_of('webhooks')}[{index}]"
        if not isinstance(item, Mapping):
            raise ctx.error(key, "expected a table", item)
        webhooks.append(_parse_webhook(ctx, _Table(ctx, key, item, WEBHOOK_KEYS)))
    kw["webhooks"] = tuple(webhooks)
    return HooksConfig(**kw)


def _parse_webhook(ctx: _Context, t: _Table) -> WebhookConfig:
    kw: dict[str, Any] = {"url": t.url("url")}
    if t.has("secret_file"):
        kw["secret_file"], kw["secret"] = t.secret("secret_file")
    if t.has("events"):
        names: list[str] = []
        for index, item in enumerate(t.array("events", expected="an array of event names")):
            key = f"{t.path_of('events')}[{index}]"
            if item != "*" and item not in EVENTS:
                raise ctx.error(key, 'expected a Sentinel event name such as "+switch-master", or "*"', item)
            assert isinstance(item, str)
            if item not in names:
                names.append(item)
        if not names:
            raise ctx.error(t.path_of("events"), "expected at least one event name", t.raw("events"))
        kw["events"] = tuple(names)
    if t.has("timeout_ms"):
        kw["timeout_ms"] = t.integer("timeout_ms", lo=1, hi=_MAX_MS)
    if t.has("max_retries"):
        kw["max_retries"] = t.integer("max_retries", lo=0, hi=_MAX_RETRIES)
    if t.has("retry_delay_ms"):
        kw["retry_delay_ms"] = t.integer("retry_delay_ms", lo=0, hi=_MAX_MS)
    if t.has("queue_size"):
        kw["queue_size"] = t.integer("queue_size", lo=1, hi=_MAX_QUEUE)
    return WebhookConfig(**kw)


def _same(a: Address, b: Address) -> bool:
    return a.port == b.port and _canonical_host(a.host) == _canonical_host(b.host)


def _canonical_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


class _Missing(enum.Enum):
    MISSING = enum.auto()

    def __repr__(self) -> str:
        return "nothing (the key is missing)"


_MISSING: Final = _Missing.MISSING


class _Context:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def error(self, key: str, expected: str, value: object, note: str = "") -> ConfigError:
        message = f"{expected}, got {value!r}"
        # A quoted TOML key may hold any character; the message is one printable line.
        key = _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", key)
        return ConfigError(self.source, key, f"{message} ({note})" if note else message)


class _Table:
    """One TOML table with typed readers; every error names ``<prefix>.<key>``."""

    def __init__(
        self, ctx: _Context, prefix: str, data: Mapping[str, object], allowed: tuple[str, ...]
    ) -> None:
        self.ctx = ctx
        self.prefix = prefix
        self.data = data
        # Unknown keys first: a misspelt key would otherwise surface as a confusing "missing".
        for key in data:
            if key not in allowed:
                raise ctx.error(self.path_of(key), f"expected one of the keys {', '.join(allowed)}", key)

    def path_of(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> object:
        return self.data.get(key, _MISSING)

    def _fail(self, key: str, expected: str, note: str = "") -> ConfigError:
        return self.ctx.error(self.path_of(key), expected, self.raw(key), note)

    def table(self, key: str, allowed: tuple[str, ...]) -> _Table:
        value = self.raw(key)
        if not isinstance(value, Mapping):
            raise self._fail(key, f"expected a [{key}] table")
        return _Table(self.ctx, self.path_of(key), value, allowed)

    def array(self, key: str, *, required: bool = False, expected: str = "an array") -> list[object]:
        value = self.raw(key)
        if value is _MISSING and not required:
            return []
        if not isinstance(value, list):
            raise self._fail(key, f"expected {expected}")
        return value

    def string(
        self, key: str, *, pattern: re.Pattern[str] | None = None, expected: str = "a non-empty string"
    ) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, f"expected {expected}")
        _check_text(self.ctx, self.path_of(key), value)
        if pattern is not None and not pattern.fullmatch(value):
            raise self._fail(key, f"expected {expected}")
        return value

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key)
        if value not in choices:
            raise self._fail(key, f"expected one of {', '.join(choices)}")
        assert isinstance(value, str)
        return value

    def integer(self, key: str, *, lo: int, hi: int | None, why: str = "") -> int:
        value = self.raw(key)
        expected = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
        # bool is a subclass of int: `quorum = true` must not become 1.
        if type(value) is not int or value < lo or (hi is not None and value > hi):
            raise self._fail(key, f"expected {expected}{why}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self._fail(key, "expected true or false")
        return value

    def host(self, key: str) -> str:
        value = self.string(key)
        if not _valid_host(value):
            raise self._fail(key, "expected an IP address or a hostname")
        return value

    def address(self, key: str) -> Address:
        return self.parse_address(self.path_of(key), self.raw(key))

    def parse_address(self, key: str, value: object) -> Address:
        expected = "expected host:port ([v6]:port for IPv6)"
        if not isinstance(value, str):
            raise self.ctx.error(key, expected, value)
        _check_text(self.ctx, key, value)
        try:
            address = Address.parse(value)
        except ValueError as exc:
            raise self.ctx.error(key, expected, value, str(exc)) from None
        # An unbracketed v6 address is ambiguous ("::1:6379"); demand the brackets.
        if ":" in address.host and not value.startswith("["):
            raise self.ctx.error(key, expected, value)
        if not _valid_host(address.host):
            raise self.ctx.error(key, expected, value, f"{address.host!r} is not an IP address or hostname")
        return address

    def path(self, key: str) -> Path:
        raw = self.string(key, expected="a non-empty path")
        if raw.startswith(_CREDENTIALS_PREFIX):
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise self._fail(key, "expected a path", "$CREDENTIALS_DIRECTORY is not set")
            return Path(directory) / raw[len(_CREDENTIALS_PREFIX) :]
        path = Path(raw)
        return path if path.is_absolute() else self.ctx.base_dir / path

    def executable(self, key: str) -> Path:
        """An absolute path to an existing executable file (hooks: never relative, never a
        command line; it is run with execve, no shell)."""
        raw = self.string(key, expected="an absolute path to an executable file")
        path = Path(raw)
        if not path.is_absolute():
            raise self._fail(key, "expected an absolute path to an executable file")
        if not path.is_file():
            raise self._fail(key, "expected an existing executable file", "no such file")
        if not os.access(path, os.X_OK):
            raise self._fail(key, "expected an executable file", "not executable by this user")
        return path

    def url(self, key: str) -> str:
        expected = "expected an http:// or https:// URL"
        value = self.string(key, expected="an http:// or https:// URL")

        def fail(what: str, note: str = "") -> ConfigError:
            # The path and query often carry a token: an error (logged on a rejected
            # reload) shows the scheme and host only.
            return self.ctx.error(self.path_of(key), what, _redact_url(value), note)

        try:
            parts = urllib.parse.urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise fail(expected, str(exc)) from None
        if parts.scheme.lower() not in ("http", "https"):
            raise fail(expected)
        if parts.username is not None or parts.password is not None:
            raise fail("expected a URL without user:password@ (use secret_file to sign)")
        host = parts.hostname or ""
        if not host or not _valid_host(host):
            raise fail(expected, "no valid host")
        if port == 0:
            raise fail(expected, "port 0")
        if parts.fragment:
            raise fail("expected a URL without a #fragment")
        if " " in value or not value.isascii():
            raise fail("expected a URL of printable ASCII without spaces (percent-encode the rest)")
        return value

    def secret(self, key: str) -> tuple[Path, Secret]:
        path = self.path(key)
        try:
            with open(path, "rb") as file:
                data = file.read(_MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise self._fail(key, "expected a readable file", f"{exc.strerror or exc}: {path}") from None
        if len(data) > _MAX_SECRET_BYTES:
            raise self._fail(key, f"expected a file of at most {_MAX_SECRET_BYTES} bytes", str(path))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(key, "expected a file of UTF-8 text", str(path)) from None
        # Editors add a final newline; the secret is the line before it.
        text = text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text
        if not text:
            raise self._fail(key, "expected a non-empty file", str(path))
        if _CONTROL_RE.search(text):
            # Never echo the content: it is the secret.
            raise self._fail(key, "expected a file holding one line without control characters", str(path))
        return path, Secret(text)


def _check_text(ctx: _Context, key: str, value: str) -> None:
    if _CONTROL_RE.search(value):
        raise ctx.error(key, "expected a string without control characters", value)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME_RE.fullmatch(host)) and ":" not in host
    return True
