"""`make demo`: a live failover on this machine, in under a minute.

Starts, on loopback in a temp dir, Debian's redis-server as 1 primary + 2 replicas and three
haredis watchers; shows `haredis status`; runs a writer through redis-py's Sentinel client;
does a planned switchover with `haredis failover --yes` (no acknowledged write lost); then
kills the new primary with SIGKILL and prints the events as the watchers publish them, the
new topology and `haredis history`; then cleans everything up.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import redis
from redis.sentinel import Sentinel

from haredis.core.model import Address

from .integration.haredis_procs import HaredisCluster, wait_until
from .integration.redis_procs import RedisBackend, RedisCluster

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.2f}s] {text}", flush=True)


def haredis_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "haredis", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"haredis {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout.rstrip()


def show_topology(cluster: HaredisCluster) -> None:
    client = cluster.watchers[0].client()
    master = cluster.watchers[0].master_info()
    say(
        f"primary mymaster at {master['ip']}:{master['port']} flags={master['flags']} "
        f"config-epoch={master['config-epoch']} peers={master['num-other-sentinels']}"
    )
    for replica in client.execute_command("SENTINEL", "REPLICAS", "mymaster"):
        fields = dict(zip(replica[::2], replica[1::2], strict=True))
        say(
            f"  replica {fields['name']:<16} flags={fields['flags']:<8} link={fields['master-link-status']}"
            f" offset={fields['slave-repl-offset']} priority={fields['slave-priority']}"
        )


class Events(threading.Thread):
    """Prints every event one watcher publishes (PSUBSCRIBE *), as a client would see them."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis("127.0.0.1", port, decode_responses=True, socket_timeout=0.2, protocol=2)
        self.pubsub = self.client.pubsub()
        self.pubsub.psubscribe("*")
        self.stop = threading.Event()

    def run(self) -> None:
        interesting = (
            "+sdown",
            "+odown",
            "+try-failover",
            "+elected-leader",
            "+selected-slave",
            "+promoted-slave",
            "+switch-master",
            "+slave-reconf-done",
            "+failover-end",
            "+convert-to-slave",
            "-failover-abort",
        )
        while not self.stop.is_set():
            with contextlib.suppress(redis.TimeoutError, redis.ConnectionError):
                msg = self.pubsub.get_message(timeout=0.2)
                if msg and msg["type"] == "pmessage" and str(msg["channel"]).startswith(interesting):
                    say(f"  event {msg['channel']} {msg['data']}")

    def close(self) -> None:
        self.stop.set()
        self.join(2)
        self.pubsub.close()
        self.client.close()


class Writer(threading.Thread):
    """Writes through redis-py's Sentinel client, the way an application would."""

    def __init__(self, ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=0.2)
        self.stop = threading.Event()
        self.acked = 0
        self.acked_keys: list[str] = []
        self.errors = 0
        self.last_error_at: float | None = None
        self.first_error_at: float | None = None

    def run(self) -> None:
        master = self.sentinel.master_for("mymaster", socket_timeout=0.2)
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                master.set(f"demo:{i}", i)
                self.acked += 1
                self.acked_keys.append(f"demo:{i}")
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.ResponseError):
                now = time.monotonic()
                self.errors += 1
                self.first_error_at = self.first_error_at or now
                self.last_error_at = now
                time.sleep(0.02)
            time.sleep(0.005)

    def close(self) -> None:
        self.stop.set()
        self.join(2)


@contextlib.contextmanager
def started(thread: Events | Writer) -> Iterator[None]:
    thread.start()
    try:
        yield
    finally:
        thread.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--down-after-ms", type=int, default=1000)
    args = parser.parse_args()
    say("starting 1 primary + 2 replicas (redis-server) on 127.0.0.1")
    with RedisCluster(2, backend=RedisBackend("binary")) as rcluster:
        say(f"primary {rcluster.primary.address}, replicas {[str(r.address) for r in rcluster.replicas]}")
        say(f"starting 3 haredis watchers (quorum 2, down_after {args.down_after_ms} ms)")
        with HaredisCluster(rcluster.primary.address, down_after_ms=args.down_after_ms) as hcluster:
            hcluster.wait_agree(rcluster.primary.address)
            watcher = f"127.0.0.1:{hcluster.watchers[0].port}"
            say(f"watchers on ports {[w.port for w in hcluster.watchers]}; `haredis status`:")
            print(haredis_cli("status", "--watcher", watcher), flush=True)
            writer = Writer([w.port for w in hcluster.watchers])
            events = Events(hcluster.watchers[0].port)
            with started(events), started(writer):
                wait_until(lambda: writer.acked > 50, 10, "the writer to get going")
                say(f"writer running through redis-py's Sentinel client ({writer.acked} writes acked)")

                say(
                    "planned switchover: `haredis failover mymaster --yes` (Redis FAILOVER TO, writes paused)"
                )
                print(haredis_cli("failover", "mymaster", "--yes", "--watcher", watcher), flush=True)
                switched_to = wait_until(
                    lambda: (a := hcluster.watchers[0].master_addr()) != rcluster.primary.address and a,
                    15,
                    "the switchover",
                )
                hcluster.wait_agree(switched_to)
                acked_before = writer.acked
                wait_until(lambda: writer.acked > acked_before + 20, 10, "writes to resume")
                new_proc = next(p for p in rcluster.all if p.address == switched_to)
                keys = list(writer.acked_keys)
                values = new_proc.client().mget(keys)
                lost = sum(v is None for v in values)
                say(f"switchover done: {len(keys)} writes acknowledged so far, {lost} missing afterwards")
                # The demo cluster uses min_failover_interval_ms = 2000 (anti-flapping): a second
                # automatic failover right after the switchover would wait for it.
                time.sleep(2.0)

                killed_at = time.monotonic()
                say(f"kill -9 the primary {switched_to}")
                new_proc.kill()
                new = wait_until(
                    lambda: (a := hcluster.watchers[0].master_addr()) != switched_to and a,
                    15,
                    "a failover",
                )
                switched = time.monotonic() - killed_at
                hcluster.wait_agree(new)
                acked_before = writer.acked
                wait_until(lambda: writer.acked > acked_before + 20, 10, "writes to resume")
                time.sleep(1.0)
            say(f"every watcher now answers {new}: switched {switched:.2f}s after the kill")
            if writer.last_error_at is not None and writer.last_error_at > killed_at:
                say(f"writer: writes resumed {writer.last_error_at - killed_at:.2f}s after the kill")
            say(f"writer: {writer.acked} writes acknowledged in total")
            show_topology(hcluster)
            say("`haredis history`:")
            print(haredis_cli("history", "--watcher", watcher), flush=True)
            assert isinstance(new, Address)
    say("cleaned up: all processes stopped, temp dirs removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
