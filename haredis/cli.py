"""The `haredis` command line.

Exit codes (stable, documented in the README):
  0  success
  1  aborted by the user, or a generic failure
  2  usage error (click)
  3  the configuration is invalid (the daemon refuses to start)
  4  the watcher could not be reached
  5  the daemon stopped because it could not persist its state
  6  the watcher refused the request (e.g. no eligible replica), or it did not complete
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from haredis import __version__
from haredis.config import ConfigError, load_config
from haredis.core.model import Address

EXIT_CONFIG = 3
EXIT_UNREACHABLE = 4
EXIT_PERSIST = 5


class ConfigInvalid(click.ClickException):
    exit_code = EXIT_CONFIG


@click.group(context_settings={"auto_envvar_prefix": "HAREDIS", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="haredis")
def main() -> None:
    """haredis: a Sentinel-compatible failover daemon for Redis."""


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
def check_config(file: str) -> None:
    """Validate a config file; print a summary, or the error and exit 3."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        raise ConfigInvalid(str(exc)) from None
    w = config.watcher
    click.echo(f"{file}: OK")
    click.echo(f"  watcher {w.name} on {w.bind}:{w.port}, {w.electorate} watchers in the electorate")
    for p in config.primaries:
        click.echo(f"  primary {p.name} at {p.address} quorum={p.quorum} down_after={p.down_after_ms}ms")


@main.command("run")
@click.option(
    "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False), envvar="HAREDIS_CONFIG"
)
def run(config_path: str) -> None:
    """Run a watcher in the foreground (systemd: Type=notify)."""
    from haredis.daemon import Daemon, PersistenceLost

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise ConfigInvalid(str(exc)) from None
    daemon = Daemon(config, config_path)
    try:
        code = asyncio.run(daemon.serve())
    except PersistenceLost as exc:
        click.echo(f"haredis: {exc}", err=True)
        sys.exit(EXIT_PERSIST)
    except ConfigError as exc:
        raise ConfigInvalid(str(exc)) from None
    sys.exit(code)


# ---------------------------------------------------------------------------------------------
# Operations commands: they talk to a running watcher over its RESP port (HAREDIS.* commands),
# so `redis-cli -p 26379 HAREDIS.STATUS` does the same.

EXIT_REFUSED = 6


class Unreachable(click.ClickException):
    exit_code = EXIT_UNREACHABLE


class Refused(click.ClickException):
    exit_code = EXIT_REFUSED


_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `10m`, `2h`, `1d`, `500ms` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"expected a duration like 30s, 10m, 2h or 1d, got {text!r}")
    return float(match["value"]) * _UNITS[match["unit"] or "s"]


@dataclass(frozen=True)
class WatcherTarget:
    address: Address
    password: str | None
    tls: bool = False
    tls_ca_file: str | None = None


def _resolve_target(watcher: str | None, config_path: str | None, password_file: str | None) -> WatcherTarget:
    password: str | None = None
    if watcher is not None:
        try:
            address = Address.parse(watcher)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--watcher") from None
    elif config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise ConfigInvalid(str(exc)) from None
        w = config.watcher
        host = w.announce.host if w.announce else ("127.0.0.1" if w.bind in ("0.0.0.0", "::") else w.bind)
        address = Address(host, w.announce.port if w.announce else w.port)
        password = w.client_password.reveal() if w.client_password else None
    else:
        address = Address("127.0.0.1", 26379)
    if password_file is not None:
        try:
            password = open(password_file, encoding="utf-8").read().rstrip("\n")  # noqa: SIM115
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {password_file}: {exc}", param_hint="--password-file"
            ) from None
    tls, tls_ca_file = click.get_current_context().meta.get("haredis.tls", (False, None))
    if config_path is not None and watcher is None:
        w = load_config(config_path).watcher
        if w.tls_cert_file is not None:
            tls = True
            tls_ca_file = tls_ca_file or (str(w.tls_ca_file) if w.tls_ca_file else None)
    return WatcherTarget(address, password, tls, tls_ca_file)


def watcher_options(command: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(command)
    def wrapper(*args: Any, tls: bool, tls_ca_file: str | None, **kwargs: Any) -> None:
        # The TLS options travel in the click context to _client, not through every command.
        click.get_current_context().meta["haredis.tls"] = (tls or tls_ca_file is not None, tls_ca_file)
        command(*args, **kwargs)

    f = click.option(
        "--tls-ca-file",
        envvar="HAREDIS_TLS_CA_FILE",
        type=click.Path(dir_okay=False),
        help="Connect with TLS, trusting this CA (implies --tls).",
    )(wrapper)
    f = click.option("--tls", is_flag=True, envvar="HAREDIS_TLS", help="Connect to the watcher with TLS.")(f)
    f = click.option(
        "--password-file",
        envvar="HAREDIS_PASSWORD_FILE",
        type=click.Path(dir_okay=False),
        help="File holding the watcher's client password (client_password_file).",
    )(f)
    f = click.option(
        "-c",
        "--config",
        "config_path",
        envvar="HAREDIS_CONFIG",
        type=click.Path(dir_okay=False),
        help="Reach the watcher configured in this file.",
    )(f)
    f = click.option(
        "--watcher",
        envvar="HAREDIS_WATCHER",
        show_envvar=True,
        help="HOST:PORT of a watcher's RESP port (default 127.0.0.1:26379).",
    )(f)
    return f


class _Client:
    """A tiny synchronous RESP client for HAREDIS.* commands (redis-py underneath)."""

    def __init__(self, target: WatcherTarget, timeout: float = 3.0) -> None:
        import redis

        self.target = target
        tls: dict[str, Any] = {}
        if target.tls:
            # A private CA signs watchers' certificates; they are dialled by IP: no hostname check.
            tls = {"ssl": True, "ssl_ca_certs": target.tls_ca_file, "ssl_check_hostname": False}
        self._redis = redis.Redis(
            host=target.address.host,
            port=target.address.port,
            password=target.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            protocol=2,
            **tls,
        )
        self._errors: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._response_error: type[Exception] = redis.ResponseError

    def call(self, *args: str) -> Any:
        try:
            return self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
        except self._errors as exc:
            raise Unreachable(f"cannot reach the watcher at {self.target.address}: {exc}") from None
        except self._response_error as exc:
            raise Refused(str(exc)) from None

    def json(self, *args: str) -> Any:
        return json.loads(self.call(*args))

    def close(self) -> None:
        self._redis.close()


def _client(watcher: str | None, config_path: str | None, password_file: str | None) -> _Client:
    return _Client(_resolve_target(watcher, config_path, password_file))


def _print_status(doc: dict[str, Any]) -> None:
    hold = "  HOLD (observing only)" if doc["in_hold"] else ""
    click.echo(f"watcher {doc['watcher']} ({doc['electorate']} watchers){hold}")
    for p in doc["primaries"]:
        flags = [p["status"]]
        if p["failover_state"] != "none":
            flags.append(
                f"failing over epoch {p['failover_epoch']} ({p['failover_state']}, leader {p['leader']})"
            )
        if p["paused"]:
            flags.append(f"paused {p['paused_for_seconds']:.0f}s: {p['pause_reason'] or 'no reason given'}")
        if not p["quorum_ok"]:
            flags.append("QUORUM NOT REACHABLE")
        click.echo(
            f"{p['name']}: primary {p['address']} [{', '.join(flags)}] config epoch {p['config_epoch']},"
            f" quorum {p['quorum']}, {p['watchers_reachable']} watchers reachable"
        )
        if p["last_failover_seconds_ago"] is not None:
            click.echo(f"  last failover {p['last_failover_seconds_ago']:.0f}s ago")
        for r in p["replicas"]:
            lag = "?" if r["lag_bytes"] is None else f"{r['lag_bytes']}B"
            click.echo(
                f"  replica {r['address']:<22} {r['status']:<6} role={r['role']:<7} link={r['link']:<4}"
                f" offset={r['offset']} lag={lag} priority={r['priority']}"
            )
        for w in p["watchers"]:
            heard = (
                "never" if w["last_heard_seconds_ago"] is None else f"{w['last_heard_seconds_ago']:.1f}s ago"
            )
            note = " (in hold)" if w["in_hold"] else ""
            click.echo(
                f"  watcher {w['name']:<12} {w['address'] or '?':<22} heard {heard}"
                f" says_down={w['says_down']}{note}"
            )


@main.command("status")
@watcher_options
@click.option("--json", "as_json", is_flag=True, help="Print the JSON status document (a stable contract).")
def status(watcher: str | None, config_path: str | None, password_file: str | None, as_json: bool) -> None:
    """Show every primary, its replicas with lag, the watchers and their health."""
    client = _client(watcher, config_path, password_file)
    try:
        doc = client.json("HAREDIS.STATUS")
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        _print_status(doc)


def _print_plan(plan: dict[str, Any]) -> None:
    what = (
        "switchover (FAILOVER TO: no acknowledged write lost)"
        if plan["mode"] == "switchover"
        else ("failover of a primary that is down (election, then promotion)")
    )
    if plan["mode"] == "switchover" and plan["force"]:
        what = "FORCED switchover (FAILOVER TO … FORCE: acknowledged writes may be lost)"
    click.echo(f"{plan['master']}: {what}")
    click.echo(f"  current primary {plan['primary']} (config epoch {plan['config_epoch']})")
    click.echo(f"  target {plan['target'] or 'none'}")
    for c in plan["candidates"]:
        lag = "?" if c["lag_bytes"] is None else f"{c['lag_bytes']}B"
        mark = "*" if c["address"] == plan["target"] else " "
        click.echo(
            f"  {mark} {c['address']:<22} {'eligible' if c['eligible'] else 'excluded':<9} {c['reason']:<34}"
            f" priority={c['priority']} offset={c['offset']} lag={lag}"
        )
    if plan["refusal"]:
        click.echo(f"  refused: {plan['refusal']}")


@main.command("failover")
@watcher_options
@click.argument("name")
@click.option("--to", "to", metavar="HOST:PORT", help="The replica to promote (switchover only).")
@click.option("--force", is_flag=True, help="FAILOVER … FORCE: switch even if the target has not caught up.")
@click.option("--dry-run", is_flag=True, help="Print every candidate with its verdict; change nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--timeout", default=10.0, show_default=True, type=float, help="Seconds to wait for the switch."
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan / result as JSON.")
def failover(
    watcher: str | None,
    config_path: str | None,
    password_file: str | None,
    name: str,
    to: str | None,
    force: bool,
    dry_run: bool,
    yes: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Switch NAME to a replica: a zero-loss switchover while the primary is alive, a failover
    through the normal election when it is down."""
    args = ["HAREDIS.FAILOVER", name]
    if to is not None:
        try:
            target = Address.parse(to)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--to") from None
        args += ["TO", target.host, str(target.port)]
    if force:
        args.append("FORCE")
    args += ["TIMEOUT", str(timeout)]
    client = _client(watcher, config_path, password_file)
    try:
        plan = client.json(*args, "DRYRUN")
        if dry_run:
            click.echo(json.dumps(plan, indent=2, sort_keys=True)) if as_json else _print_plan(plan)
            return
        if plan["refusal"]:
            raise Refused(plan["refusal"])
        if not yes:
            _print_plan(plan)
            click.confirm("Proceed?", abort=True)
        started = time.monotonic()
        client.json(*args)
        deadline = started + timeout + 10.0
        while True:
            doc = client.json("HAREDIS.STATUS")
            p = next(x for x in doc["primaries"] if x["name"] == name)
            if p["config_epoch"] > plan["config_epoch"] and p["failover_state"] == "none":
                break
            if time.monotonic() > deadline:
                raise Refused(f"no new primary after {timeout + 10:.0f}s (state {p['failover_state']})")
            time.sleep(0.05)
    finally:
        client.close()
    result = {
        "master": name,
        "mode": plan["mode"],
        "old": plan["primary"],
        "new": p["address"],
        "config_epoch": p["config_epoch"],
        "seconds": round(time.monotonic() - started, 3),
    }
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(
            f"{name}: {result['old']} -> {result['new']} in {result['seconds']:.2f}s "
            f"({plan['mode']}, config epoch {result['config_epoch']})"
        )


@main.command("pause")
@watcher_options
@click.argument("name")
@click.option("--ttl", default="1h", show_default=True, help="How long: 30s, 10m, 2h, 1d.")
@click.option("--reason", default="", help="Shown in status (no control characters).")
def pause(
    watcher: str | None, config_path: str | None, password_file: str | None, name: str, ttl: str, reason: str
) -> None:
    """Maintenance: watchers keep observing NAME but do not fail it over until resumed or expired."""
    seconds = parse_duration(ttl)
    client = _client(watcher, config_path, password_file)
    try:
        client.call("HAREDIS.PAUSE", name, str(seconds), reason)
    finally:
        client.close()
    click.echo(f"{name}: paused for {seconds:.0f}s on every watcher")


@main.command("resume")
@watcher_options
@click.argument("name")
def resume(watcher: str | None, config_path: str | None, password_file: str | None, name: str) -> None:
    """End maintenance mode of NAME on every watcher."""
    client = _client(watcher, config_path, password_file)
    try:
        client.call("HAREDIS.RESUME", name)
    finally:
        client.close()
    click.echo(f"{name}: resumed")


@main.command("history")
@watcher_options
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def history(
    watcher: str | None,
    config_path: str | None,
    password_file: str | None,
    name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Past failovers (durable across restarts): epoch, old and new primary, phases, loss."""
    client = _client(watcher, config_path, password_file)
    try:
        args = ["HAREDIS.HISTORY"] + ([name, str(limit)] if name else [])
        entries = client.json(*args)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(entries, indent=2, sort_keys=True))
        return
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("time", 0)))
        line = f"{when} {e.get('master')} epoch {e.get('epoch')} {e.get('old')} -> {e.get('new')}"
        line += f" ({e.get('role')})"
        if e.get("role") == "leader":

            def secs(key: str, entry: dict[str, Any] = e) -> str:
                value = entry.get(key)
                return "-" if value is None else f"{value}s"

            line += (
                f" reason={e.get('reason')} total={secs('total')} detect={secs('detect')}"
                f" elect={secs('elect')} promote={secs('promote')} lost_bytes={e.get('lost_bytes')}"
            )
        click.echo(line)


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(haredis completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "haredis", "_HAREDIS_COMPLETE").source())
