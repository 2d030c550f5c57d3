"""Unit tests for haredis.info against INFO texts captured from Debian's redis-server 7.0.15.

The captures (``redis-cli info server replication``, CRLF line ends as on the wire) come from
one primary started with ``--min-replicas-to-write 1`` and two replicas, one with
``--replica-priority 50`` and one with ``--replica-announced no``:

* PRIMARY_SYNCING: both replicas still waiting for the diskless sync (``state=wait_bgsave``);
* PRIMARY / REPLICA_UP / REPLICA_UNANNOUNCED: after three writes, links up;
* REPLICA_NEVER_UP: a replica before its first sync (``master_link_down_since_seconds:-1``);
* REPLICA_DOWN: the priority-50 replica two seconds after the primary was SIGKILLed;
* PROMOTED: the same replica after ``REPLICAOF NO ONE`` (the old replid moved to replid2).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from haredis.core.model import Address, InstanceInfo, ReplicaLink, Role
from haredis.info import instance_info, parse_info, parse_replica_line


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


PRIMARY = _crlf(
    """\
# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v595 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:4854
process_supervised:no
run_id:e5300aa2f0593eeeb203383fa599e38dc036bb0a
tcp_port:7101
server_time_usec:1795676541140064
uptime_in_seconds:8
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:514429
executable:/tmp/cap/redis-server
config_file:
io_threads_active:0

# Replication
role:master
connected_slaves:2
min_slaves_good_slaves:2
slave0:ip=127.0.0.1,port=7102,state=online,offset=110,lag=0
slave1:ip=127.0.0.1,port=7103,state=online,offset=110,lag=0
master_failover_state:no-failover
master_replid:db57416932241c13e917decf184f703753b1138f
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:110
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:110
"""
)

PRIMARY_SYNCING = _crlf(
    """\
# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v595 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:4854
process_supervised:no
run_id:e5300aa2f0593eeeb203383fa599e38dc036bb0a
tcp_port:7101
server_time_usec:1795676534582045
uptime_in_seconds:1
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:514422
executable:/tmp/cap/redis-server
config_file:
io_threads_active:0

# Replication
role:master
connected_slaves:2
min_slaves_good_slaves:0
slave0:ip=127.0.0.1,port=7102,state=wait_bgsave,offset=0,lag=0
slave1:ip=127.0.0.1,port=7103,state=wait_bgsave,offset=0,lag=0
master_failover_state:no-failover
master_replid:db57416932241c13e917decf184f703753b1138f
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:0
"""
)

REPLICA_UP = _crlf(
    """\
# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v595 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:4860
process_supervised:no
run_id:3c0d27d42e6bba2141d511080a90f704bc971a5c
tcp_port:7102
server_time_usec:1795676541147767
uptime_in_seconds:8
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:514429
executable:/tmp/cap/redis-server
config_file:
io_threads_active:0

# Replication
role:slave
master_host:127.0.0.1
master_port:7101
master_link_status:up
master_last_io_seconds_ago:2
master_sync_in_progress:0
slave_read_repl_offset:110
slave_repl_offset:110
slave_priority:50
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:db57416932241c13e917decf184f703753b1138f
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:110
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:110
"""
)

REPLICA_NEVER_UP = _crlf(
    """\
# Replication
role:slave
master_host:127.0.0.1
master_port:7101
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:0
slave_read_repl_offset:1
slave_repl_offset:1
master_link_down_since_seconds:-1
slave_priority:50
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:8af965b7a422baf30c39cfa13d6b0f816c176c14
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:0
second_repl_offset:-1
repl_backlog_active:0
repl_backlog_size:1048576
repl_backlog_first_byte_offset:0
repl_backlog_histlen:0
"""
)

REPLICA_DOWN = _crlf(
    """\
# Server
redis_version:7.0.15
redis_git_sha1:00000000
redis_git_dirty:0
redis_build_id:ae4d7c971a948f0
redis_mode:standalone
os:Linux 6.18.44-fc-v595 x86_64
arch_bits:64
monotonic_clock:POSIX clock_gettime
multiplexing_api:epoll
atomicvar_api:c11-builtin
gcc_version:12.2.0
process_id:4860
process_supervised:no
run_id:3c0d27d42e6bba2141d511080a90f704bc971a5c
tcp_port:7102
server_time_usec:1795676543368365
uptime_in_seconds:10
uptime_in_days:0
hz:10
configured_hz:10
lru_clock:514431
executable:/tmp/cap/redis-server
config_file:
io_threads_active:0

# Replication
role:slave
master_host:127.0.0.1
master_port:7101
master_link_status:down
master_last_io_seconds_ago:-1
master_sync_in_progress:0
slave_read_repl_offset:110
slave_repl_offset:110
master_link_down_since_seconds:2
slave_priority:50
slave_read_only:1
replica_announced:1
connected_slaves:0
master_failover_state:no-failover
master_replid:db57416932241c13e917decf184f703753b1138f
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:110
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:110
"""
)

REPLICA_UNANNOUNCED = _crlf(
    """\
# Replication
role:slave
master_host:127.0.0.1
master_port:7101
master_link_status:up
master_last_io_seconds_ago:2
master_sync_in_progress:0
slave_read_repl_offset:110
slave_repl_offset:110
slave_priority:100
slave_read_only:1
replica_announced:0
connected_slaves:0
master_failover_state:no-failover
master_replid:db57416932241c13e917decf184f703753b1138f
master_replid2:0000000000000000000000000000000000000000
master_repl_offset:110
second_repl_offset:-1
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:110
"""
)

PROMOTED = _crlf(
    """\
# Replication
role:master
connected_slaves:0
master_failover_state:no-failover
master_replid:b6f2f720ef2dff7ca93b3cf0a4a17b84388a7ca7
master_replid2:db57416932241c13e917decf184f703753b1138f
master_repl_offset:110
second_repl_offset:111
repl_backlog_active:1
repl_backlog_size:1048576
repl_backlog_first_byte_offset:1
repl_backlog_histlen:110
"""
)


PRIMARY_REPLID = "db57416932241c13e917decf184f703753b1138f"


def test_parse_info_skips_headers_and_blank_lines() -> None:
    fields = parse_info(PRIMARY)
    assert fields["redis_version"] == "7.0.15"
    assert fields["role"] == "master"
    assert not any(key.startswith("#") for key in fields)
    assert "" not in fields
    # Values keep everything after the first colon (and CR is not part of a value).
    assert fields["executable"] == "/tmp/cap/redis-server"
    assert fields["config_file"] == ""
    assert parse_info("a:b:c\r\n\r\n# X\r\nnocolon\r\n:novalue\r\n") == {"a": "b:c"}


def test_primary_with_online_replicas() -> None:
    info = instance_info(PRIMARY)
    assert info == InstanceInfo(
        role=Role.PRIMARY,
        run_id="e5300aa2f0593eeeb203383fa599e38dc036bb0a",
        replid=PRIMARY_REPLID,
        replid2="0" * 40,
        offset=110,
        master=None,
        link_up=False,
        link_down_seconds=0.0,
        priority=100,
        announced=True,
        replicas=(
            ReplicaLink(Address("127.0.0.1", 7102), offset=110, online=True),
            ReplicaLink(Address("127.0.0.1", 7103), offset=110, online=True),
        ),
        last_io_seconds=0.0,
        fence_configured=True,  # the fixture has min_slaves_good_slaves
    )


def test_primary_with_syncing_replicas() -> None:
    info = instance_info(PRIMARY_SYNCING)
    assert info.role is Role.PRIMARY
    assert info.offset == 0
    assert [(r.address.port, r.online, r.offset) for r in info.replicas] == [
        (7102, False, 0),
        (7103, False, 0),
    ]


def test_replica_with_link_up() -> None:
    info = instance_info(REPLICA_UP)
    assert info.role is Role.REPLICA
    assert info.run_id == "3c0d27d42e6bba2141d511080a90f704bc971a5c"
    assert info.master == Address("127.0.0.1", 7101)
    assert info.link_up is True
    assert info.link_down_seconds == 0.0
    assert info.priority == 50
    assert info.announced is True
    # Same replication history and offset as the primary it follows.
    assert info.replid == PRIMARY_REPLID == instance_info(PRIMARY).replid
    assert info.offset == 110
    assert info.replicas == ()


def test_replica_with_link_down() -> None:
    info = instance_info(REPLICA_DOWN)
    assert info.role is Role.REPLICA
    assert info.link_up is False
    assert info.link_down_seconds == 2.0
    assert info.offset == 110
    assert info.master == Address("127.0.0.1", 7101)
    assert info.replid == PRIMARY_REPLID


def test_replica_never_synced_maps_minus_one_to_zero() -> None:
    info = instance_info(REPLICA_NEVER_UP)
    assert info.role is Role.REPLICA
    assert info.link_up is False
    assert info.link_down_seconds == 0.0  # -1: down, and never up since the replica started
    assert info.offset == 1  # slave_repl_offset wins over master_repl_offset (0)


def test_unannounced_replica() -> None:
    info = instance_info(REPLICA_UNANNOUNCED)
    assert info.announced is False
    assert info.priority == 100


def test_promoted_replica_keeps_old_history_in_replid2() -> None:
    info = instance_info(PROMOTED)
    assert info.role is Role.PRIMARY
    assert info.replid2 == PRIMARY_REPLID
    assert info.replid != PRIMARY_REPLID
    assert info.offset == 110
    assert info.master is None
    assert info.link_up is False


def test_fallbacks() -> None:
    # A replica without slave_repl_offset uses master_repl_offset; replica_priority is read
    # when slave_priority is absent.
    text = (
        "role:slave\nmaster_host:db-1.example\nmaster_port:6380\nmaster_repl_offset:77\nreplica_priority:7\n"
    )
    info = instance_info(text)
    assert info.offset == 77
    assert info.priority == 7
    assert info.master == Address("db-1.example", 6380)
    assert info.link_up is False


def test_missing_or_unknown_role_is_unknown() -> None:
    assert instance_info("").role is Role.UNKNOWN
    assert instance_info("").replicas == ()
    assert instance_info("run_id:abc\r\n").role is Role.UNKNOWN
    assert instance_info("role:sentinel\r\n").role is Role.UNKNOWN


def test_malformed_lines_are_ignored() -> None:
    text = _crlf(
        "role:slave\n"
        "garbage line\n"
        "master_host:\n"
        "master_port:notaport\n"
        "master_link_status:up\n"
        "slave_repl_offset:12x\n"
        "master_repl_offset:5\n"
        "slave_priority:high\n"
        "master_link_down_since_seconds:nan\n"
        "slave0:ip=,port=1,state=online\n"
        "slave1:ip=10.0.0.1,port=99999,state=online\n"
        "slave2:ip=10.0.0.2,port=6379,state=online,offset=zz\n"
        "slave3:junk\n"
        "slavex:ip=10.0.0.3,port=6379\n"
    )
    info = instance_info(text)
    assert info.role is Role.REPLICA
    assert info.master is None
    assert info.link_up is True
    assert info.offset == 5
    assert info.priority == 100
    assert info.link_down_seconds == 0.0
    assert info.replicas == (ReplicaLink(Address("10.0.0.2", 6379), offset=0, online=True),)


def test_replica_lines_sorted_by_index_and_ipv6() -> None:
    text = (
        "role:master\n"
        "slave10:ip=10.0.0.10,port=6379,state=online,offset=3,lag=0\n"
        "slave2:ip=::1,port=6380,state=send_bulk,offset=2,lag=1\n"
    )
    assert [r.address for r in instance_info(text).replicas] == [
        Address("::1", 6380),
        Address("10.0.0.10", 6379),
    ]
    assert parse_replica_line("ip=a,port=1") == ReplicaLink(Address("a", 1), offset=0, online=False)


_KEYS = st.sampled_from(
    [
        "role",
        "run_id",
        "master_replid",
        "master_replid2",
        "master_repl_offset",
        "slave_repl_offset",
        "master_host",
        "master_port",
        "master_link_status",
        "master_link_down_since_seconds",
        "slave_priority",
        "replica_priority",
        "replica_announced",
        "slave0",
        "slave1",
        "slave12",
    ]
)
_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["master", "slave", "up", "down", "-1", "ip=1.2.3.4,port=6379,state=online,offset=9"]),
)


@given(st.text())
def test_random_text_never_raises(text: str) -> None:
    info = instance_info(text)
    assert isinstance(info.role, Role)
    assert isinstance(parse_info(text), dict)


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=20), st.sampled_from(["\n", "\r\n"]))
def test_random_known_fields_never_raise(pairs: list[tuple[str, str]], newline: str) -> None:
    text = newline.join(f"{key}:{value}" for key, value in pairs)
    info = instance_info(text)
    assert info.link_down_seconds >= 0.0
    assert all(0 < r.address.port < 65536 for r in info.replicas)
    if info.master is not None:
        assert 0 < info.master.port < 65536


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True), st.from_regex(r"[ -~]{0,30}", fullmatch=True)
    )
)
def test_parse_info_round_trip(fields: dict[str, str]) -> None:
    text = "# Section\r\n" + "".join(f"{key}:{value}\r\n" for key, value in fields.items())
    assert parse_info(text) == {key: value.rstrip() for key, value in fields.items()}


def test_fence_marker_and_last_io_are_read() -> None:
    text = (
        "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\n"
        "master_link_status:up\r\nmaster_last_io_seconds_ago:3\r\nslave_repl_offset:42\r\n"
        "min_slaves_good_slaves:0\r\n"
    )
    info = instance_info(text)
    assert info.link_up and info.last_io_seconds == 3.0
    assert info.fence_configured
    # Without the marker (min-replicas-to-write off) and with a down link: no last-io reading.
    down = text.replace("min_slaves_good_slaves:0\r\n", "").replace(
        "master_link_status:up", "master_link_status:down"
    )
    info = instance_info(down)
    assert not info.fence_configured
    assert not info.link_up and info.last_io_seconds == 0.0


def test_keyspace_is_summed_and_absent_when_not_asked() -> None:
    base = "# Replication\r\nrole:master\r\nmaster_repl_offset:7\r\n"
    assert instance_info(base).keys == -1
    assert instance_info(base + "\r\n# Keyspace\r\n").keys == 0
    text = base + "\r\n# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\ndb3:keys=5,expires=0,avg_ttl=0\r\n"
    assert instance_info(text).keys == 17
