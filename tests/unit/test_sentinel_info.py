"""INFO in Sentinel mode and the events that name another watcher, as pure functions.

The layout rules come from sentinel.c (sentinelInfoCommand) and server.c (genInfoSectionDict,
genRedisInfoString) of Redis 7.0; tests/integration/test_sentinel_compat.py compares the
result with a real redis-sentinel.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from haredis.core.model import Address, Snapshot, run_id
from haredis.sentinel_api import (
    INFO_SECTIONS,
    ProcessFacts,
    config_update_from,
    info_sections,
    info_text,
    sentinel_subject,
)
from haredis.server import ServerCensus, ServerStats

SNAPSHOT = Snapshot(watcher="w1", now=100.0, in_hold=False, hold_until=None, primaries=())
FACTS = ProcessFacts(
    version="0.1.0",
    os="Linux 6.1.0 x86_64",
    arch_bits=64,
    monotonic_clock="POSIX clock_gettime",
    multiplexing_api="epoll",
    process_id=4242,
    supervised="no",
    tcp_port=26379,
    server_time_usec=1_700_000_000_000_000,
    uptime_seconds=3 * 86400 + 5,
    hz=10,
    executable="/usr/bin/haredis",
    config_file="/etc/haredis/haredis.toml",
    cpu_sys=1.5,
    cpu_user=0.25,
    cpu_sys_children=0.0,
    cpu_user_children=0.125,
    cpu_main_thread=(1.25, 0.2),
)
CENSUS = ServerCensus(
    connected_clients=7,
    max_clients=10000,
    pubsub_clients=2,
    pubsub_channels=1,
    pubsub_patterns=1,
    recent_max_input_buffer=512,
    recent_max_output_buffer=64,
    ops_per_sec=12.6,
    input_kbps=1.234,
    output_kbps=0.5,
    stats=ServerStats(
        connections_received=30,
        rejected_connections=1,
        commands_processed=900,
        net_input_bytes=4096,
        net_output_bytes=8192,
        reads_processed=800,
        writes_processed=850,
        error_replies=3,
    ),
)


def fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.split("\r\n") if line and not line.startswith("#"))


def headers(text: str) -> list[str]:
    return [line for line in text.split("\r\n") if line.startswith("# ")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), INFO_SECTIONS),
        (("default",), INFO_SECTIONS),
        (("ALL",), INFO_SECTIONS),
        (("everything",), INFO_SECTIONS),
        (("sentinel", "SERVER"), ("server", "sentinel")),  # Sentinel's order, not the caller's
        (("cpu", "cpu"), ("cpu",)),
        (("memory",), ()),  # a Redis section Sentinel does not have
        (("bogus", "stats"), ("stats",)),
    ],
)
def test_section_selection_follows_sentinel(args: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert info_sections(args) == expected


def test_layout_is_byte_for_byte_redis() -> None:
    text = info_text(SNAPSHOT, FACTS, CENSUS, ["cpu", "server"])
    # Every line ends in CRLF, one empty line between sections, none after the last.
    assert text.startswith("# Server\r\nredis_version:0.1.0\r\nredis_mode:sentinel\r\n")
    assert "\r\nharedis:1\r\n\r\n# CPU\r\nused_cpu_sys:1.500000\r\n" in text
    assert text.endswith("used_cpu_user_main_thread:0.200000\r\n")
    assert "\n" not in text.replace("\r\n", "")
    assert headers(info_text(SNAPSHOT, FACTS, CENSUS)) == [
        "# Server",
        "# Clients",
        "# Stats",
        "# CPU",
        "# Sentinel",
    ]
    assert info_text(SNAPSHOT, FACTS, CENSUS, ["memory"]) == ""


def test_values_come_from_the_facts_and_the_census() -> None:
    got = fields(info_text(SNAPSHOT, FACTS, CENSUS))
    assert got["run_id"] == run_id("w1") and got["process_id"] == "4242" and got["tcp_port"] == "26379"
    assert (got["uptime_in_seconds"], got["uptime_in_days"]) == ("259205", "3")
    assert got["hz"] == got["configured_hz"] == "10"
    assert got["connected_clients"] == "7" and got["pubsub_clients"] == "2" and got["maxclients"] == "10000"
    assert got["client_recent_max_input_buffer"] == "512" and got["client_recent_max_output_buffer"] == "64"
    assert got["total_connections_received"] == "30" and got["rejected_connections"] == "1"
    assert got["total_commands_processed"] == "900" and got["instantaneous_ops_per_sec"] == "13"
    assert got["instantaneous_input_kbps"] == "1.23" and got["instantaneous_output_kbps"] == "0.50"
    assert got["total_net_input_bytes"] == "4096" and got["total_net_output_bytes"] == "8192"
    assert got["pubsub_channels"] == "1" and got["pubsub_patterns"] == "1"
    assert got["total_error_replies"] == "3"
    assert got["total_reads_processed"] == "800" and got["total_writes_processed"] == "850"
    assert got["used_cpu_user_children"] == "0.125000" and got["used_cpu_sys_main_thread"] == "1.250000"
    assert got["sentinel_masters"] == "0" and got["sentinel_tilt_since_seconds"] == "-1"
    # What haredis does not have is 0, in the format Redis uses for that field.
    assert got["expired_stale_perc"] == "0.00" and got["instantaneous_input_repl_kbps"] == "0.00"
    assert got["keyspace_hits"] == "0" and got["total_forks"] == "0" and got["blocked_clients"] == "0"


def test_main_thread_cpu_only_where_the_platform_measures_it() -> None:
    got = fields(info_text(SNAPSHOT, replace(FACTS, cpu_main_thread=None), CENSUS, ["cpu"]))
    assert list(got) == ["used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"]


# ------------------------------------------------------------------------------- events

PRIMARY = Address("10.0.0.10", 6379)


def test_sentinel_subject_is_sentinels_percent_at_form() -> None:
    text = sentinel_subject("w2", Address("10.0.0.2", 26379), "mymaster", PRIMARY)
    assert text == f"sentinel {run_id('w2')} 10.0.0.2 26379 @ mymaster 10.0.0.10 6379"
    assert re.fullmatch(r"sentinel [0-9a-f]{40} \S+ \d+ @ \S+ \S+ \d+", text)
    # An address not learned yet renders as SENTINEL SENTINELS shows it.
    assert sentinel_subject("w2", None, "mymaster", PRIMARY).startswith(f"sentinel {run_id('w2')} ? 0 @ ")


def test_config_update_from_names_the_peer_by_run_id_and_address() -> None:
    routes = {"w2": Address("10.0.0.2", 26379)}
    core = "sentinel w2 @ mymaster 10.0.0.10 6379"  # what the core publishes
    assert config_update_from(core, routes.get) == (
        f"sentinel {run_id('w2')} 10.0.0.2 26379 @ mymaster 10.0.0.10 6379"
    )
    assert config_update_from("sentinel w3 @ mymaster 10.0.0.10 6379", routes.get) == (
        f"sentinel {run_id('w3')} ? 0 @ mymaster 10.0.0.10 6379"
    )
    for other in ("sentinel w2 @ mymaster 7", "", "master mymaster 10.0.0.10 6379"):
        assert config_update_from(other, routes.get) == other
