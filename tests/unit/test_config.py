"""haredis.config: the schema, every rejection, and the message that names file and key."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from haredis.config import (
    HOOKS_KEYS,
    PRIMARY_KEYS,
    WATCHER_KEYS,
    WEBHOOK_KEYS,
    ConfigError,
    HooksConfig,
    Secret,
    WebhookConfig,
    load_config,
    parse_config,
)
from haredis.core.model import Address, PrimarySettings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "haredis.toml"


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML for these tests: tables, arrays of tables, scalars and string arrays."""

    def scalar(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
        if isinstance(value, list):
            return "[" + ", ".join(scalar(item) for item in value) + "]"
        return repr(value)

    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {scalar(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {scalar(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{key} = {scalar(value)}")
    return "\n".join(lines) + "\n"


def base() -> dict[str, Any]:
    return {
        "watcher": {
            "name": "w1",
            "data_dir": "data",
            "peers": ["10.0.0.2:26379", "10.0.0.3:26379"],
            "secret_file": "secret",
        },
        "primaries": [{"name": "mymaster", "address": "10.0.0.10:6379", "quorum": 2}],
    }


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    (tmp_path / "secret").write_text("s3cret-value\n")
    return tmp_path


def write(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "haredis.toml"
    path.write_text(to_toml(data))
    return path


def error_for(directory: Path, data: dict[str, Any]) -> ConfigError:
    path = write(directory, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# --- accepted configurations ------------------------------------------------------------------


def test_minimal_config_takes_the_documented_defaults(conf_dir: Path) -> None:
    data = base()
    data["watcher"] = {"name": "solo", "data_dir": "/var/lib/haredis"}
    data["primaries"][0]["quorum"] = 1
    config = load_config(write(conf_dir, data))
    w = config.watcher
    assert (w.bind, w.port, w.metrics_port, w.announce, w.peers) == ("127.0.0.1", 26379, 9479, None, ())
    assert (w.secret, w.client_password, w.log_level, w.log_format) == (None, None, "info", "logfmt")
    assert w.data_dir == Path("/var/lib/haredis")
    assert w.state_file == Path("/var/lib/haredis/state.json")
    p = config.primaries[0]
    assert (p.down_after_ms, p.crash_detect_ms, p.failover_timeout_ms) == (5000, 250, 60000)
    assert (p.parallel_syncs, p.max_lag_bytes, p.lag_wait_ms) == (1, None, 2000)
    assert (p.min_failover_interval_ms, p.info_period_ms, p.convert_after_ms) == (15000, 1000, 2000)
    assert (p.username, p.password, p.tls) == (None, None, False)
    assert config.source == str(conf_dir / "haredis.toml")


def test_to_core_converts_milliseconds_to_seconds_and_counts_the_electorate(conf_dir: Path) -> None:
    data = base()
    data["watcher"].update(tick_interval_ms=50, gossip_period_ms=250, opinion_ttl_ms=1500)
    data["watcher"].update(election_timeout_ms=700, retry_backoff_ms=300)
    data["watcher"].update(hold_trigger_ms=3000, hold_duration_ms=8000)
    data["primaries"][0].update(down_after_ms=1500, crash_detect_ms=0, failover_timeout_ms=30000)
    data["primaries"][0].update(parallel_syncs=2, max_lag_bytes=0, lag_wait_ms=500)
    data["primaries"][0].update(min_failover_interval_ms=5000, info_period_ms=250, convert_after_ms=1000)
    core = load_config(write(conf_dir, data)).to_core()
    assert core.name == "w1"
    assert core.electorate == 3
    assert core.majority == 2
    assert (core.tick_interval, core.gossip_period, core.opinion_ttl) == (0.05, 0.25, 1.5)
    assert (core.election_timeout, core.retry_backoff) == (0.7, 0.3)
    assert (core.hold_trigger, core.hold_duration) == (3.0, 8.0)
    assert core.primaries == (
        PrimarySettings(
            name="mymaster",
            address=Address("10.0.0.10", 6379),
            quorum=2,
            down_after=1.5,
            crash_detect=0.0,
            failover_timeout=30.0,
            parallel_syncs=2,
            max_lag_bytes=0,
            lag_wait=0.5,
            min_failover_interval=5.0,
            info_period=0.25,
            convert_after=1.0,
        ),
    )


def test_default_core_settings_match_the_core_defaults(conf_dir: Path) -> None:
    # The file's defaults and the core's defaults are written in two places; keep them equal.
    core = load_config(write(conf_dir, base())).to_core()
    assert core.primaries[0] == PrimarySettings(name="mymaster", address=Address("10.0.0.10", 6379), quorum=2)
    for field in dataclasses.fields(core):
        if field.default is not dataclasses.MISSING:
            assert getattr(core, field.name) == field.default, field.name


def test_every_key_can_be_set(conf_dir: Path) -> None:
    (conf_dir / "client.pass").write_text("client-pw")
    (conf_dir / "redis.pass").write_text("redis-pw\n")
    (conf_dir / "ca.crt").write_text("x")
    (conf_dir / "c.crt").write_text("x")
    (conf_dir / "c.key").write_text("x")
    data = base()
    data["watcher"].update(
        bind="0.0.0.0",
        port=26400,
        announce="203.0.113.5:26400",
        metrics_port=0,
        client_password_file="client.pass",
        log_level="debug",
        log_format="json",
    )
    data["primaries"][0].update(
        username="haredis",
        password_file="redis.pass",
        tls=True,
        tls_ca_file="ca.crt",
        tls_cert_file="c.crt",
        tls_key_file=str(conf_dir / "c.key"),
    )
    config = load_config(write(conf_dir, data))
    w, p = config.watcher, config.primaries[0]
    assert w.announce == Address("203.0.113.5", 26400)
    assert w.advertised == Address("203.0.113.5", 26400)
    assert w.peers == (Address("10.0.0.2", 26379), Address("10.0.0.3", 26379))
    assert w.client_password is not None and w.client_password.reveal() == "client-pw"
    assert w.secret is not None and w.secret.reveal() == "s3cret-value"
    assert (w.metrics_port, w.log_level, w.log_format) == (0, "debug", "json")
    assert p.username == "haredis"
    assert p.password is not None and p.password.reveal() == "redis-pw"
    assert (p.tls_ca_file, p.tls_cert_file, p.tls_key_file) == (
        conf_dir / "ca.crt",
        conf_dir / "c.crt",
        conf_dir / "c.key",
    )


def test_ipv6_addresses_in_brackets(conf_dir: Path) -> None:
    data = base()
    data["watcher"]["peers"] = ["[2001:db8::2]:26379", "[2001:db8::3]:26379"]
    data["primaries"][0]["address"] = "[2001:db8::10]:6379"
    config = load_config(write(conf_dir, data))
    assert config.primaries[0].address == Address("2001:db8::10", 6379)
    assert config.watcher.peers[0] == Address("2001:db8::2", 26379)


def test_relative_paths_resolve_against_the_config_directory(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = conf_dir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    config = load_config(write(conf_dir, base()))
    assert config.watcher.data_dir == conf_dir / "data"
    assert config.watcher.secret_file == conf_dir / "secret"


def test_credentials_directory_prefix(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = conf_dir / "creds"
    creds.mkdir()
    (creds / "peer-secret").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    data = base()
    data["watcher"]["secret_file"] = "${CREDENTIALS_DIRECTORY}/peer-secret"
    secret = load_config(write(conf_dir, data)).watcher.secret
    assert secret is not None and secret.reveal() == "from-systemd"

    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    error = error_for(conf_dir, data)
    assert error.key == "watcher.secret_file"
    assert "CREDENTIALS_DIRECTORY is not set" in str(error)


def test_a_solo_watcher_needs_no_secret(conf_dir: Path) -> None:
    data = base()
    data["watcher"] = {"name": "solo", "data_dir": "d"}
    data["primaries"][0]["quorum"] = 1
    assert load_config(write(conf_dir, data)).watcher.secret is None


def test_config_is_frozen(conf_dir: Path) -> None:
    config = load_config(write(conf_dir, base()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.watcher.port = 1  # type: ignore[misc]


def test_parse_config_takes_a_dict_and_a_source_name(conf_dir: Path) -> None:
    config = parse_config(base(), "inline.toml", base_dir=conf_dir)
    assert config.source == "inline.toml"
    assert config.primary("mymaster") is config.primaries[0]
    assert config.primary("other") is None
    data = base()
    del data["primaries"][0]["quorum"]
    with pytest.raises(ConfigError, match=r"^inline\.toml: primaries\[0\]\.quorum: "):
        parse_config(data, "inline.toml", base_dir=conf_dir)


# --- secrets --------------------------------------------------------------------------------------


def test_secrets_never_print(conf_dir: Path) -> None:
    (conf_dir / "redis.pass").write_text("hunter2\n")
    data = base()
    data["primaries"][0]["password_file"] = "redis.pass"
    config = load_config(write(conf_dir, data))
    password = config.primaries[0].password
    assert password is not None
    assert password.reveal() == "hunter2"
    assert str(password) == repr(password) == f"{password}" == "******"
    for text in (repr(config), str(config), repr(dataclasses.asdict(config))):
        assert "hunter2" not in text
        assert "s3cret-value" not in text
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"pw\n", "pw"), (b"pw", "pw"), (b"pw\r\n", "pw"), (b" pw with spaces \n", " pw with spaces ")],
)
def test_secret_file_strips_one_trailing_newline(conf_dir: Path, content: bytes, expected: str) -> None:
    (conf_dir / "secret").write_bytes(content)
    secret = load_config(write(conf_dir, base())).watcher.secret
    assert secret is not None and secret.reveal() == expected


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "expected a non-empty file"),
        (b"\n", "expected a non-empty file"),
        (b"pw\n\n", "without control characters"),
        (b"Zq9sec\nZq9more\n", "without control characters"),
        (b"\xff\xfe", "UTF-8"),
        (b"x" * 70_000, "at most"),
    ],
    ids=["empty", "newline", "two-newlines", "two-lines", "not-utf8", "huge"],
)
def test_bad_secret_files(conf_dir: Path, content: bytes, fragment: str) -> None:
    (conf_dir / "secret").write_bytes(content)
    error = error_for(conf_dir, base())
    assert error.key == "watcher.secret_file"
    assert fragment in str(error)
    assert "Zq9" not in str(error)  # never echo the content


def test_missing_secret_file_names_the_key_and_the_file(conf_dir: Path) -> None:
    (conf_dir / "secret").unlink()
    error = error_for(conf_dir, base())
    assert str(error).startswith(
        f"{conf_dir / 'haredis.toml'}: watcher.secret_file: expected a readable file"
    )
    assert "'secret'" in str(error)
    assert str(conf_dir / "secret") in str(error)


def test_missing_password_file_names_the_primary_key(conf_dir: Path) -> None:
    data = base()
    data["primaries"][0]["password_file"] = "nope.pass"
    error = error_for(conf_dir, data)
    assert error.key == "primaries[0].password_file"


def test_secret_file_that_is_a_directory(conf_dir: Path) -> None:
    (conf_dir / "secret").unlink()
    (conf_dir / "secret").mkdir()
    assert error_for(conf_dir, base()).key == "watcher.secret_file"


# --- rejections: every message is "<file>: <key path>: <expected>, got <value>" -------------------


def _set(data: dict[str, Any], path: str, value: object) -> None:
    """Set (or, with value _DEL, delete) a dotted path like "primaries.0.quorum"."""
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DEL:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


_DEL = object()

# (what to change, value, key path in the message, a fragment of the message)
REJECTIONS: list[tuple[str, object, str, str]] = [
    # missing required keys
    ("watcher.name", _DEL, "watcher.name", "got nothing (the key is missing)"),
    ("watcher.data_dir", _DEL, "watcher.data_dir", "got nothing"),
    ("primaries.0.name", _DEL, "primaries[0].name", "got nothing"),
    ("primaries.0.address", _DEL, "primaries[0].address", "got nothing"),
    ("primaries.0.quorum", _DEL, "primaries[0].quorum", "got nothing"),
    ("watcher.secret_file", _DEL, "watcher.secret_file", "required when peers is not empty"),
    ("watcher", _DEL, "watcher", "expected a [watcher] table, got nothing"),
    ("primaries", _DEL, "primaries", "expected [[primaries]] tables, got nothing"),
    # wrong types
    ("watcher.port", "26379", "watcher.port", "expected an integer in 1..65535, got '26379'"),
    ("watcher.name", 7, "watcher.name", "got 7"),
    ("watcher.peers", "10.0.0.2:26379", "watcher.peers", "expected an array"),
    ("watcher.peers.1", 26379, "watcher.peers[1]", "expected host:port"),
    ("primaries.0.down_after_ms", 5000.0, "primaries[0].down_after_ms", "got 5000.0"),
    ("primaries.0.tls", "yes", "primaries[0].tls", "expected true or false, got 'yes'"),
    ("primaries.0.username", "", "primaries[0].username", "expected a non-empty string, got ''"),
    ("watcher.data_dir", ["a"], "watcher.data_dir", "expected a non-empty path"),
    ("watcher", "w1", "watcher", "expected a [watcher] table, got 'w1'"),
    ("primaries", "mymaster", "primaries", "expected [[primaries]] tables, got 'mymaster'"),
    # bool is not an int
    ("primaries.0.quorum", True, "primaries[0].quorum", "got True"),
    ("watcher.port", False, "watcher.port", "got False"),
    ("primaries.0.parallel_syncs", True, "primaries[0].parallel_syncs", "got True"),
    ("primaries.0.max_lag_bytes", False, "primaries[0].max_lag_bytes", "got False"),
    # out of range
    ("watcher.port", 0, "watcher.port", "expected an integer in 1..65535, got 0"),
    ("watcher.port", 65536, "watcher.port", "got 65536"),
    ("watcher.metrics_port", -1, "watcher.metrics_port", "expected an integer in 0..65535"),
    ("watcher.metrics_port", 26379, "watcher.metrics_port", "expected a port other than port (26379)"),
    ("primaries.0.down_after_ms", 5, "primaries[0].down_after_ms", "expected an integer in 10..86400000"),
    ("primaries.0.crash_detect_ms", -1, "primaries[0].crash_detect_ms", "got -1"),
    ("primaries.0.failover_timeout_ms", 10**9, "primaries[0].failover_timeout_ms", "got 1000000000"),
    ("primaries.0.parallel_syncs", 0, "primaries[0].parallel_syncs", "expected an integer >= 1, got 0"),
    ("primaries.0.max_lag_bytes", -1, "primaries[0].max_lag_bytes", "expected an integer >= 0"),
    ("primaries.0.quorum", 0, "primaries[0].quorum", "got 0"),
    ("primaries.0.quorum", 4, "primaries[0].quorum", "expected an integer in 1..3 (the number of watchers"),
    ("watcher.tick_interval_ms", 0, "watcher.tick_interval_ms", "got 0"),
    ("watcher.opinion_ttl_ms", 500, "watcher.opinion_ttl_ms", "expected more than gossip_period_ms (500)"),
    ("watcher.hold_trigger_ms", 100, "watcher.hold_trigger_ms", "expected more than tick_interval_ms"),
    ("watcher.log_level", "verbose", "watcher.log_level", "expected one of debug, info, warning, error"),
    ("watcher.log_format", "text", "watcher.log_format", "expected one of logfmt, json, got 'text'"),
    # names
    ("watcher.name", "w 1", "watcher.name", "expected a name of 1 to 64 characters"),
    ("primaries.0.name", "x" * 65, "primaries[0].name", "expected a name of 1 to 64"),
    ("primaries.0.name", "", "primaries[0].name", "got ''"),
    # control characters, wherever a string is
    ("watcher.name", "w\n1", "watcher.name", "without control characters, got 'w\\n1'"),
    ("primaries.0.username", "ha\x00redis", "primaries[0].username", "without control characters"),
    ("primaries.0.address", "10.0.0.10:6379\x7f", "primaries[0].address", "without control characters"),
    ("watcher.peers.0", "10.0.0.2:26379\t", "watcher.peers[0]", "without control characters"),
    ("watcher.data_dir", "/var/lib/\x1bharedis", "watcher.data_dir", "without control characters"),
    # addresses
    ("primaries.0.address", "10.0.0.10", "primaries[0].address", "expected host:port"),
    ("primaries.0.address", "10.0.0.10:99999", "primaries[0].address", "port out of range"),
    ("primaries.0.address", "10.0.0.10:redis", "primaries[0].address", "numeric port"),
    ("primaries.0.address", "::1:6379", "primaries[0].address", "[v6]:port"),
    ("primaries.0.address", "bad host:6379", "primaries[0].address", "not an IP address or hostname"),
    ("primaries.0.address", ":6379", "primaries[0].address", "got ':6379'"),
    ("watcher.announce", "203.0.113.5", "watcher.announce", "expected host:port"),
    ("watcher.bind", "not a host", "watcher.bind", "expected an IP address or a hostname"),
    # peers
    ("watcher.peers.1", "10.0.0.2:26379", "watcher.peers[1]", "not already listed as peers[0]"),
    ("watcher.peers.1", "127.0.0.1:26379", "watcher.peers[1]", "expected another watcher, not this one"),
    # unknown keys
    ("watcher.nmae", "w1", "watcher.nmae", "expected one of the keys name, bind, port,"),
    ("primaries.0.qourum", 2, "primaries[0].qourum", "got 'qourum'"),
    ("sentinel", {"x": 1}, "sentinel", "expected one of the keys watcher, primaries, got 'sentinel'"),
    # TLS
    ("primaries.0.tls_ca_file", "ca.crt", "primaries[0].tls_ca_file", "expected tls = true"),
]


@pytest.mark.parametrize(("where", "value", "key", "fragment"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_name_the_file_and_the_key(
    conf_dir: Path, where: str, value: object, key: str, fragment: str
) -> None:
    data = base()
    _set(data, where, value)
    error = error_for(conf_dir, data)
    assert error.source == str(conf_dir / "haredis.toml")
    assert error.key == key
    assert str(error).startswith(f"{conf_dir / 'haredis.toml'}: {key}: expected ")
    assert fragment in str(error)
    assert ", got " in str(error)


def test_unknown_key_lists_every_allowed_key(conf_dir: Path) -> None:
    data = base()
    data["primaries"][0]["down_after_milliseconds"] = 5000
    message = str(error_for(conf_dir, data))
    assert "primaries[0].down_after_milliseconds" in message
    assert all(key in message for key in PRIMARY_KEYS)


def test_unknown_key_is_reported_before_a_missing_one(conf_dir: Path) -> None:
    data = base()
    data["watcher"]["nmae"] = data["watcher"].pop("name")
    assert error_for(conf_dir, data).key == "watcher.nmae"


def test_duplicate_primary_names(conf_dir: Path) -> None:
    data = base()
    data["primaries"].append({"name": "other", "address": "10.0.0.20:6379", "quorum": 2})
    data["primaries"].append({"name": "mymaster", "address": "10.0.0.30:6379", "quorum": 2})
    error = error_for(conf_dir, data)
    assert error.key == "primaries[2].name"
    assert "expected a name not used by primaries[0], got 'mymaster'" in str(error)


def test_duplicate_primary_addresses(conf_dir: Path) -> None:
    data = base()
    data["primaries"].append({"name": "alias", "address": "10.0.0.10:6379", "quorum": 2})
    error = error_for(conf_dir, data)
    assert error.key == "primaries[1].address"
    assert "(mymaster)" in str(error)


def test_second_primary_errors_carry_its_index(conf_dir: Path) -> None:
    data = base()
    data["primaries"].append({"name": "other", "address": "10.0.0.20:6379", "quorum": 9})
    assert error_for(conf_dir, data).key == "primaries[1].quorum"


def test_empty_primaries(conf_dir: Path) -> None:
    path = conf_dir / "haredis.toml"
    path.write_text("primaries = []\n" + to_toml({"watcher": base()["watcher"]}))
    with pytest.raises(
        ConfigError, match=r": primaries: expected at least one \[\[primaries\]\] table, got \[\]"
    ):
        load_config(path)


def test_primaries_must_be_tables(conf_dir: Path) -> None:
    path = conf_dir / "haredis.toml"
    path.write_text('primaries = ["mymaster"]\n' + to_toml({"watcher": base()["watcher"]}))
    with pytest.raises(ConfigError, match=r": primaries\[0\]: expected a table, got 'mymaster'"):
        load_config(path)


def test_duplicate_peers_after_normalisation(conf_dir: Path) -> None:
    data = base()
    data["watcher"]["peers"] = ["[2001:db8::2]:26379", "[2001:0db8:0::2]:26379"]
    assert error_for(conf_dir, data).key == "watcher.peers[1]"
    data["watcher"]["peers"] = ["Node-B.example:26379", "node-b.example:26379"]
    assert error_for(conf_dir, data).key == "watcher.peers[1]"
    data["watcher"]["peers"] = ["node-b.example:26379", "node-b.example.:26379"]  # FQDN dot
    assert error_for(conf_dir, data).key == "watcher.peers[1]"


def test_a_peer_equal_to_the_announced_address(conf_dir: Path) -> None:
    data = base()
    data["watcher"]["announce"] = "203.0.113.5:26379"
    data["watcher"]["peers"] = ["10.0.0.2:26379", "203.0.113.5:26379"]
    error = error_for(conf_dir, data)
    assert error.key == "watcher.peers[1]"
    assert "203.0.113.5:26379" in str(error)


def test_a_peer_equal_to_bind_and_port(conf_dir: Path) -> None:
    data = base()
    data["watcher"].update(bind="10.0.0.1", port=26400, peers=["10.0.0.1:26400"])
    assert error_for(conf_dir, data).key == "watcher.peers[0]"
    # Same host, other port: another watcher on the same machine is fine.
    data["watcher"]["peers"] = ["10.0.0.1:26401"]
    data["primaries"][0]["quorum"] = 1
    assert load_config(write(conf_dir, data)).watcher.peers == (Address("10.0.0.1", 26401),)


def test_tls_file_must_exist_and_cert_needs_key(conf_dir: Path) -> None:
    data = base()
    data["primaries"][0].update(tls=True, tls_ca_file="missing.crt")
    error = error_for(conf_dir, data)
    assert error.key == "primaries[0].tls_ca_file"
    assert "expected an existing file" in str(error)
    (conf_dir / "c.crt").write_text("x")
    data["primaries"][0] = {**base()["primaries"][0], "tls": True, "tls_cert_file": "c.crt"}
    assert error_for(conf_dir, data).key == "primaries[0].tls_key_file"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read the file: No such file"):
        load_config(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[watcher]\nname = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML: .*line 2"):
        load_config(broken)
    twice = tmp_path / "twice.toml"
    twice.write_text('[watcher]\nname = "a"\nname = "b"\n')
    with pytest.raises(ConfigError, match=r"twice\.toml: not valid TOML"):
        load_config(twice)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[watcher]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: not valid UTF-8"):
        load_config(latin1)


# --- the shipped example --------------------------------------------------------------------------


def test_the_example_config_loads(tmp_path: Path) -> None:
    copy_path = tmp_path / "haredis.toml"
    shutil.copy(EXAMPLE, copy_path)
    (tmp_path / "secret").write_text("0123456789abcdef\n")
    config = load_config(copy_path)
    assert config.watcher.name == "w1"
    assert config.watcher.electorate == 3
    assert config.watcher.secret is not None
    assert config.primaries[0].name == "mymaster"
    # The example shows the defaults: it must describe exactly what an absent key means.
    data = base()
    data["watcher"]["data_dir"] = "/var/lib/haredis"
    defaults = parse_config(data, "defaults", base_dir=tmp_path)
    assert config.watcher == defaults.watcher
    assert config.primaries == defaults.primaries


def test_the_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#? ?([a-z_]+) = ", text, flags=re.MULTILINE))
    assert set(WATCHER_KEYS) | set(PRIMARY_KEYS) <= documented
    assert documented <= set(WATCHER_KEYS) | set(PRIMARY_KEYS)


def test_the_example_with_every_commented_key_enabled(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    enabled = re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.MULTILINE)
    assert enabled != text
    (tmp_path / "haredis.toml").write_text(enabled)
    for name in ("secret", "client.pass", "redis.pass"):
        (tmp_path / name).write_text("pw\n")
    (tmp_path / "tls").mkdir()
    for name in ("ca.crt", "haredis.crt", "haredis.key"):
        (tmp_path / "tls" / name).write_text("x")
    # tls = false in the example; a TLS file without tls = true is (rightly) an error.
    enabled = enabled.replace("tls = false", "tls = true")
    (tmp_path / "haredis.toml").write_text(enabled)
    config = load_config(tmp_path / "haredis.toml")
    assert config.watcher.announce == Address("203.0.113.5", 26379)
    assert config.primaries[0].max_lag_bytes == 1048576
    assert config.primaries[0].tls_key_file == tmp_path / "tls" / "haredis.key"


# --- [hooks] ----------------------------------------------------------------------------------


@pytest.fixture
def hook_scripts(conf_dir: Path) -> Path:
    """conf_dir with an executable script, a plain (not executable) file and a webhook key."""
    for name, mode in (("notify", 0o755), ("reconf", 0o700), ("plain", 0o644)):
        (conf_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (conf_dir / name).chmod(mode)
    (conf_dir / "hook.key").write_text("hook-k3y\n")
    return conf_dir


def test_no_hooks_by_default(conf_dir: Path) -> None:
    config = load_config(write(conf_dir, base()))
    assert config.hooks == HooksConfig()
    h = config.hooks
    assert (h.notification_script, h.client_reconfig_script, h.webhooks) == (None, None, ())
    assert (h.script_timeout_ms, h.script_max_retries, h.script_retry_delay_ms) == (60000, 10, 30000)
    assert not h.enabled


def test_every_hooks_key_can_be_set(hook_scripts: Path) -> None:
    data = base()
    data["hooks"] = {
        "notification_script": str(hook_scripts / "notify"),
        "client_reconfig_script": str(hook_scripts / "reconf"),
        "script_timeout_ms": 1000,
        "script_max_retries": 0,
        "script_retry_delay_ms": 0,
        "webhooks": [
            {
                "url": "https://hooks.example.com:8443/x?token=t",
                "secret_file": "hook.key",
                "events": ["+switch-master", "+odown", "+switch-master", "*"],
                "timeout_ms": 250,
                "max_retries": 0,
                "retry_delay_ms": 10,
                "queue_size": 1,
            },
            {"url": "http://[::1]:8080/"},
        ],
    }
    config = parse_config(data, "t.toml", base_dir=hook_scripts)
    h = config.hooks
    assert h.enabled
    assert (h.notification_script, h.client_reconfig_script) == (
        hook_scripts / "notify",
        hook_scripts / "reconf",
    )
    assert (h.script_timeout_ms, h.script_max_retries, h.script_retry_delay_ms) == (1000, 0, 0)
    first, second = h.webhooks
    assert first.url == "https://hooks.example.com:8443/x?token=t"
    assert first.secret_file == hook_scripts / "hook.key"
    assert first.secret is not None and first.secret.reveal() == "hook-k3y"
    assert first.events == ("+switch-master", "+odown", "*")  # duplicates folded, order kept
    assert (first.timeout_ms, first.max_retries, first.retry_delay_ms, first.queue_size) == (250, 0, 10, 1)
    assert second == WebhookConfig(url="http://[::1]:8080/")
    assert (second.timeout_ms, second.max_retries, second.retry_delay_ms, second.queue_size) == (
        5000,
        5,
        1000,
        1000,
    )
    assert second.events is None and second.secret is None
    assert "hook-k3y" not in repr(config)
    # What each webhook receives: by default the WARNING events; "*" everything.
    assert second.wants("+switch-master") and second.wants("-failover-abort-superseded")
    assert not second.wants("+slave")
    assert first.wants("+slave")


def test_hooks_in_a_file(hook_scripts: Path) -> None:
    path = write(hook_scripts, base())
    with path.open("a") as file:
        file.write(
            f'[hooks]\nnotification_script = "{hook_scripts / "notify"}"\n'
            '[[hooks.webhooks]]\nurl = "http://127.0.0.1:9000/a"\n'
            '[[hooks.webhooks]]\nurl = "http://127.0.0.1:9000/b"\nevents = ["+sdown"]\n'
        )
    config = load_config(path)
    assert config.hooks.notification_script == hook_scripts / "notify"
    assert [w.url for w in config.hooks.webhooks] == ["http://127.0.0.1:9000/a", "http://127.0.0.1:9000/b"]
    assert config.hooks.webhooks[1].events == ("+sdown",)


HOOK_REJECTIONS = [
    # (hooks table, key, fragment); "{dir}" is the directory holding the test scripts
    ({"notification_script": "notify"}, "hooks.notification_script", "expected an absolute path"),
    ({"notification_script": "{dir}/missing"}, "hooks.notification_script", "no such file"),
    ({"client_reconfig_script": "{dir}/plain"}, "hooks.client_reconfig_script", "not executable"),
    ({"client_reconfig_script": "{dir}"}, "hooks.client_reconfig_script", "expected an existing executable"),
    ({"notification_script": ""}, "hooks.notification_script", "expected an absolute path"),
    ({"notification_script": 5}, "hooks.notification_script", "got 5"),
    ({"notification_script": "{dir}/notify\n"}, "hooks.notification_script", "control characters"),
    ({"script_timeout_ms": "60000"}, "hooks.script_timeout_ms", "expected an integer in 1..86400000"),
    ({"script_timeout_ms": 0}, "hooks.script_timeout_ms", "expected an integer in 1..86400000"),
    ({"script_max_retries": -1}, "hooks.script_max_retries", "expected an integer in 0..100"),
    ({"script_max_retries": True}, "hooks.script_max_retries", "got True"),
    ({"script_retry_delay_ms": 1.5}, "hooks.script_retry_delay_ms", "expected an integer"),
    ({"notification": "/bin/true"}, "hooks.notification", "expected one of the keys notification_script,"),
    ({"webhooks": {"url": "http://h/"}}, "hooks.webhooks", "expected [[hooks.webhooks]] tables"),
    ({"webhooks": ["http://h/"]}, "hooks.webhooks[0]", "expected a table"),
    ({"webhooks": [{}]}, "hooks.webhooks[0].url", "expected an http:// or https:// URL"),
    ({"webhooks": [{"url": "ftp://h/x"}]}, "hooks.webhooks[0].url", "expected an http:// or https:// URL"),
    ({"webhooks": [{"url": "hooks.example.com/x"}]}, "hooks.webhooks[0].url", "http:// or https://"),
    ({"webhooks": [{"url": "http:///x"}]}, "hooks.webhooks[0].url", "no valid host"),
    ({"webhooks": [{"url": "http://h:99999/"}]}, "hooks.webhooks[0].url", "out of range"),
    ({"webhooks": [{"url": "http://h:0/"}]}, "hooks.webhooks[0].url", "port 0"),
    ({"webhooks": [{"url": "https://u:pw@h/"}]}, "hooks.webhooks[0].url", "without user:password@"),
    ({"webhooks": [{"url": "http://h/a#frag"}]}, "hooks.webhooks[0].url", "without a #fragment"),
    ({"webhooks": [{"url": "http://h/a b"}]}, "hooks.webhooks[0].url", "without spaces"),
    ({"webhooks": [{"url": 80}]}, "hooks.webhooks[0].url", "got 80"),
    (
        {"webhooks": [{"url": "http://h/", "uri": "x"}]},
        "hooks.webhooks[0].uri",
        "expected one of the keys url,",
    ),
    (
        {"webhooks": [{"url": "http://h/", "secret_file": "nope"}]},
        "hooks.webhooks[0].secret_file",
        "readable",
    ),
    ({"webhooks": [{"url": "http://h/", "events": "+sdown"}]}, "hooks.webhooks[0].events", "array"),
    ({"webhooks": [{"url": "http://h/", "events": []}]}, "hooks.webhooks[0].events", "at least one"),
    (
        {"webhooks": [{"url": "http://h/", "events": ["+sdonw"]}]},
        "hooks.webhooks[0].events[0]",
        "+switch-master",
    ),
    ({"webhooks": [{"url": "http://h/", "events": ["+sdown", 3]}]}, "hooks.webhooks[0].events[1]", "got 3"),
    ({"webhooks": [{"url": "http://h/", "timeout_ms": 0}]}, "hooks.webhooks[0].timeout_ms", "1..86400000"),
    ({"webhooks": [{"url": "http://h/", "max_retries": 101}]}, "hooks.webhooks[0].max_retries", "0..100"),
    (
        {"webhooks": [{"url": "http://h/", "retry_delay_ms": -1}]},
        "hooks.webhooks[0].retry_delay_ms",
        "0..86400000",
    ),
    ({"webhooks": [{"url": "http://h/", "queue_size": 0}]}, "hooks.webhooks[0].queue_size", "1..1000000"),
    ({"webhooks": [{"url": "http://h/"}, {"url": "gopher://h/"}]}, "hooks.webhooks[1].url", "http://"),
]


@pytest.mark.parametrize(("table", "key", "fragment"), HOOK_REJECTIONS, ids=[r[1] for r in HOOK_REJECTIONS])
def test_hooks_rejections_name_the_key(
    hook_scripts: Path, table: dict[str, Any], key: str, fragment: str
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{dir}", str(hook_scripts))
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    data = base()
    data["hooks"] = fill(table)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "t.toml", base_dir=hook_scripts)
    error = info.value
    assert error.key == key, str(error)
    assert str(error).startswith(f"t.toml: {key}: expected "), str(error)
    assert fragment in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x?token=SEKRIT",
        "https://hooks.example.com:0/SEKRIT",
        "https://user:SEKRIT@hooks.example.com/",
        "https://hooks.example.com/a?token=SEKRIT#frag",
        "https://hooks.example.com/a?token=SEKRIT x",
        "hooks.example.com/SEKRIT",
    ],
)
def test_a_rejected_webhook_url_never_shows_its_token(conf_dir: Path, url: str) -> None:
    # The error is logged when a reload is rejected: the path, query and user part stay out.
    data = base()
    data["hooks"] = {"webhooks": [{"url": url}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "t.toml", base_dir=conf_dir)
    assert info.value.key == "hooks.webhooks[0].url"
    assert "SEKRIT" not in str(info.value), str(info.value)


def test_hooks_must_be_a_table(conf_dir: Path) -> None:
    data = base()
    data["hooks"] = "yes"
    error = error_for(conf_dir, data)
    assert error.key == "hooks" and "expected a [hooks] table" in str(error)


def test_unknown_top_level_key_mentions_hooks(conf_dir: Path) -> None:
    data = base()
    data["hook"] = {"notification_script": "/bin/true"}
    message = str(error_for(conf_dir, data))
    assert "hook: expected one of the keys watcher, primaries, got 'hook'" in message
    assert "hooks" in message


def _hooks_section(text: str) -> str:
    return text[text.index("# [hooks]") :]


def test_the_example_documents_every_hooks_key() -> None:
    section = _hooks_section(EXAMPLE.read_text())
    documented = set(re.findall(r"^#\s+([a-z_]+) = ", section, flags=re.MULTILINE))
    assert documented == (set(HOOKS_KEYS) - {"webhooks"}) | set(WEBHOOK_KEYS)


def test_the_example_hooks_enabled(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    start = text.index("# [hooks]")
    enabled = re.sub(r"^#\s*(\[\[?hooks[.a-z]*\]\]?|[a-z_]+ = )", r"\1", text[start:], flags=re.MULTILINE)
    for name in ("haredis-notify", "haredis-reconfig"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
        enabled = enabled.replace(f"/usr/local/bin/{name}", str(tmp_path / name))
    (tmp_path / "secret").write_text("pw\n")
    (tmp_path / "webhook.secret").write_text("hook-pw\n")
    (tmp_path / "haredis.toml").write_text(text[:start] + enabled)
    hooks = load_config(tmp_path / "haredis.toml").hooks
    assert hooks.notification_script == tmp_path / "haredis-notify"
    assert hooks.client_reconfig_script == tmp_path / "haredis-reconfig"
    (webhook,) = hooks.webhooks
    assert webhook.secret is not None and webhook.secret.reveal() == "hook-pw"
    assert webhook.events == ("+switch-master", "+odown", "-failover-abort-no-good-slave")
    # The example shows the defaults.
    defaults = HooksConfig()
    assert (hooks.script_timeout_ms, hooks.script_max_retries, hooks.script_retry_delay_ms) == (
        defaults.script_timeout_ms,
        defaults.script_max_retries,
        defaults.script_retry_delay_ms,
    )
    plain = WebhookConfig(url=webhook.url)
    assert (webhook.timeout_ms, webhook.max_retries, webhook.retry_delay_ms, webhook.queue_size) == (
        plain.timeout_ms,
        plain.max_retries,
        plain.retry_delay_ms,
        plain.queue_size,
    )
