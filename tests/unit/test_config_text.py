"""Control characters (0x00-0x1F, 0x7F) in config values are refused, for every string key.

The bug class: Sentinel (redis#14970, Valkey#3847) wrote a CR/LF-carrying `auth-pass` into its
config file, which then gained a `notification-script` line: code execution on restart. haredis
never writes its config, but the same strings reach logs, hook arguments, webhook payloads,
state files and Redis commands, so every string is checked where it is read. The error names
the key and never prints the raw character (nor, for a secret, the value).

tests/unit/test_config.py already covers watcher.name, primaries[].username, primaries[].address,
watcher.peers[] and watcher.data_dir (REJECTIONS) and a secret file with two lines; this file
covers every other string key, the content of every kind of secret file, and keeps the list
complete: a new string key without a case here fails `test_every_string_key_is_covered`.
"""

from __future__ import annotations

import copy
import dataclasses
import re
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
    PrimaryConfig,
    WatcherConfig,
    WebhookConfig,
    parse_config,
)

from .test_config import REJECTIONS

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A spread of the forbidden range: NUL, a C0 control, TAB, LF, CR, CR LF, ESC, US and DEL.
BAD_CHARS = ["\x00", "\x01", "\t", "\n", "\r", "\r\n", "\x1b", "\x1f", "\x7f"]


def base(directory: Path) -> dict[str, Any]:
    for name in ("secret", "client.pass", "redis.pass", "hook.key"):
        (directory / name).write_text(f"{name}-value\n")
    script = directory / "notify.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return {
        "watcher": {
            "name": "w1",
            "bind": "127.0.0.1",
            "data_dir": "data",
            "peers": ["10.0.0.2:26379", "10.0.0.3:26379"],
            "secret_file": "secret",
            "client_password_file": "client.pass",
        },
        "primaries": [
            {
                "name": "mymaster",
                "address": "10.0.0.10:6379",
                "quorum": 2,
                "username": "haredis",
                "password_file": "redis.pass",
            }
        ],
        "hooks": {
            "notification_script": str(script),
            "client_reconfig_script": str(script),
            "webhooks": [{"url": "https://hooks.example.com/x", "secret_file": "hook.key"}],
        },
    }


def _put(data: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def _error(directory: Path, data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, str(directory / "haredis.toml"), base_dir=directory)
    return info.value


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    config = parse_config(base(tmp_path), "t.toml", base_dir=tmp_path)
    assert config.primaries[0].password is not None and config.hooks.webhooks[0].secret is not None


# (where to put it, a valid value to spoil, the key path the error must name), per key class.
STRING_VALUES: list[tuple[str, str, str]] = [
    # hosts and addresses
    ("watcher.bind", "127.0.0.1", "watcher.bind"),
    ("watcher.announce", "203.0.113.5:26379", "watcher.announce"),
    ("watcher.peers.1", "10.0.0.3:26379", "watcher.peers[1]"),
    # names
    ("primaries.0.name", "mymaster", "primaries[0].name"),
    # choices
    ("watcher.log_level", "info", "watcher.log_level"),
    ("watcher.log_format", "json", "watcher.log_format"),
    # paths (the file names, before anything is opened)
    ("watcher.secret_file", "secret", "watcher.secret_file"),
    ("watcher.client_password_file", "client.pass", "watcher.client_password_file"),
    ("watcher.tls_cert_file", "tls/w.crt", "watcher.tls_cert_file"),
    ("watcher.tls_key_file", "tls/w.key", "watcher.tls_key_file"),
    ("watcher.tls_ca_file", "tls/ca.crt", "watcher.tls_ca_file"),
    ("primaries.0.password_file", "redis.pass", "primaries[0].password_file"),
    ("primaries.0.tls_ca_file", "tls/ca.crt", "primaries[0].tls_ca_file"),
    ("primaries.0.tls_cert_file", "tls/h.crt", "primaries[0].tls_cert_file"),
    ("primaries.0.tls_key_file", "tls/h.key", "primaries[0].tls_key_file"),
    ("hooks.webhooks.0.secret_file", "hook.key", "hooks.webhooks[0].secret_file"),
    # hook commands (absolute paths run with execve)
    ("hooks.notification_script", "/usr/local/bin/notify", "hooks.notification_script"),
    ("hooks.client_reconfig_script", "/usr/local/bin/reconf", "hooks.client_reconfig_script"),
    # URLs and event names
    ("hooks.webhooks.0.url", "https://hooks.example.com/x", "hooks.webhooks[0].url"),
    ("hooks.webhooks.0.events.0", "+switch-master", "hooks.webhooks[0].events[0]"),
]


@pytest.mark.parametrize("bad", BAD_CHARS, ids=[f"0x{ord(c[-1]):02x}" for c in BAD_CHARS])
@pytest.mark.parametrize(("where", "valid", "key"), STRING_VALUES, ids=[s[0] for s in STRING_VALUES])
def test_control_characters_are_refused_in_every_string(
    tmp_path: Path, where: str, valid: str, key: str, bad: str
) -> None:
    data = base(tmp_path)
    if where.startswith("hooks.webhooks.0.events"):
        data["hooks"]["webhooks"][0]["events"] = [valid]
    cut = len(valid) // 2
    _put(data, where, valid[:cut] + bad + valid[cut:])
    error = _error(tmp_path, data)
    assert error.key == key
    assert not CONTROL.search(str(error)), f"the raw character reached the message: {error!s}"
    if where not in ("watcher.log_level", "watcher.log_format", "hooks.webhooks.0.events.0"):
        # Free-form strings say why; choices say which values are allowed instead.
        assert "without control characters" in str(error)


# Secret files: the value is the file minus one trailing newline; any other control character
# (a CR or LF inside the value, a NUL, an ESC sequence…) is refused, and never echoed.
SECRET_FILES = [
    ("watcher.secret_file", "secret"),
    ("watcher.client_password_file", "client.pass"),
    ("primaries[0].password_file", "redis.pass"),
    ("hooks.webhooks[0].secret_file", "hook.key"),
]
SECRET_CONTENTS = [
    b"Zq9top\rZq9secret\n",  # CR inside the value (Sentinel's injection vector)
    b"Zq9top\r\nZq9secret\n",  # CR LF inside
    b"Zq9top\nZq9secret",  # LF inside, no final newline
    b"Zq9top\x00secret\n",
    b"\x1b[31mZq9secret\n",
    b"Zq9secret\x7f\n",
    b"Zq9secret\r",  # a lone CR at the end is not a line ending
    b"Zq9secret\n\r\n",
]


@pytest.mark.parametrize("content", SECRET_CONTENTS, ids=range(len(SECRET_CONTENTS)))
@pytest.mark.parametrize(("key", "file_name"), SECRET_FILES, ids=[s[0] for s in SECRET_FILES])
def test_secret_files_with_control_characters_inside_the_value(
    tmp_path: Path, key: str, file_name: str, content: bytes
) -> None:
    data = base(tmp_path)
    (tmp_path / file_name).write_bytes(content)
    error = _error(tmp_path, data)
    assert error.key == key
    assert "without control characters" in str(error)
    assert "Zq9" not in str(error)  # the secret is never echoed
    assert not CONTROL.search(str(error))


@pytest.mark.parametrize(("key", "file_name"), SECRET_FILES, ids=[s[0] for s in SECRET_FILES])
def test_one_trailing_line_ending_is_not_part_of_the_secret(tmp_path: Path, key: str, file_name: str) -> None:
    data = base(tmp_path)
    (tmp_path / file_name).write_bytes(b"pw with spaces and \xc3\xa9\r\n")
    config = parse_config(data, "t.toml", base_dir=tmp_path)
    secrets = {
        "watcher.secret_file": config.watcher.secret,
        "watcher.client_password_file": config.watcher.client_password,
        "primaries[0].password_file": config.primaries[0].password,
        "hooks.webhooks[0].secret_file": config.hooks.webhooks[0].secret,
    }
    secret = secrets[key]
    assert secret is not None and secret.reveal() == "pw with spaces and \u00e9"


@pytest.mark.parametrize("bad", ["\n", "\r", "\x00", "\x1b[2J", "\x7f"])
def test_a_key_name_with_control_characters_is_named_escaped(tmp_path: Path, bad: str) -> None:
    data = base(tmp_path)
    data["watcher"][f"na{bad}me"] = "w1"
    error = _error(tmp_path, data)
    assert error.key.startswith("watcher.na\\x")
    assert "expected one of the keys" in str(error)
    assert not CONTROL.search(str(error))


def _string_keys(table: str, keys: tuple[str, ...], schema: type) -> set[str]:
    """The keys whose dataclass field holds text (str, Path, Address or tuples of them): every
    key is stored under its own name; integers, booleans and nested tables are left out."""
    types = {f.name: str(f.type) for f in dataclasses.fields(schema)}
    return {
        f"{table}.{key}" for key in keys if key != "webhooks" and not re.search(r"\b(int|bool)\b", types[key])
    }


def test_every_string_key_is_covered() -> None:
    string_keys = (
        _string_keys("watcher", WATCHER_KEYS, WatcherConfig)
        | _string_keys("primaries", PRIMARY_KEYS, PrimaryConfig)
        | _string_keys("hooks", HOOKS_KEYS, HooksConfig)
        | _string_keys("webhooks", WEBHOOK_KEYS, WebhookConfig)
    )
    assert {"watcher.bind", "primaries.username", "hooks.notification_script", "webhooks.url"} <= string_keys

    def normalise(path: str) -> str:
        parts = [p for p in re.split(r"[.\[\]]", path) if p and not p.isdigit()]
        if parts[:2] == ["hooks", "webhooks"]:
            parts = parts[1:]
        return ".".join(parts[:2])

    covered = {normalise(key) for _, _, key in STRING_VALUES}
    covered |= {normalise(key) for _, value, key, fragment in REJECTIONS if "control characters" in fragment}
    assert string_keys - covered == set()


def test_a_valid_config_is_not_changed_by_the_checks(tmp_path: Path) -> None:
    data = base(tmp_path)
    before = copy.deepcopy(data)
    parse_config(data, "t.toml", base_dir=tmp_path)
    assert data == before
