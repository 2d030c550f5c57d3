"""The `haredis` command line.

Exit codes (stable, documented in the README):
  0  success
  1  aborted by the user, or a generic failure
  2  usage error (click)
  3  the configuration is invalid (the daemon refuses to start)
  4  the watcher could not be reached
  5  the daemon stopped because it could not persist its state
"""

from __future__ import annotations

import asyncio
import sys

import click

from haredis import __version__
from haredis.config import ConfigError, load_config

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
