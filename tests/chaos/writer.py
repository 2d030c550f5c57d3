"""The client: writes unique keys through the Sentinel protocol and logs every outcome.

Run inside the client's namespace by the rig::

    python -m tests.chaos.writer --sentinel 10.213.0.21:26379 ... --rate 200 --duration 30 --out F

It asks the watchers for the primary with redis-py's ``Sentinel`` (as an application would),
and writes ``SET w:<seq> <seq>`` at a bounded rate (``--rate`` in all) in two streams, each
on its own connection: even ``seq`` plain, odd ``seq`` followed by ``WAIT 1 <wait_ms>`` on
the same connection (so a blocking WAIT never slows the plain stream down). One JSON line
per write goes to ``--out``:

    {"seq": 17, "t": <wall time sent>, "ack": <wall time acknowledged or null>,
     "wait": <WAIT's reply, null for plain writes or when it failed>, "err": "<text>"|null}

A write is *acknowledged* when SET returned OK; it is *wait-acked* when its WAIT also returned
>= 1 (Redis says one replica has it in memory). The log is flushed per line, so a killed writer
still leaves everything it learned.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any, TextIO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

KEY_PREFIX = "w:"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.chaos.writer")
    p.add_argument("--sentinel", action="append", required=True, help="host:port of a watcher")
    p.add_argument("--master", default="mymaster")
    p.add_argument("--rate", type=float, default=200.0, help="writes per second at most")
    p.add_argument("--duration", type=float, required=True, help="seconds to write")
    p.add_argument("--wait-ms", type=int, default=500, help="WAIT timeout in ms")
    p.add_argument("--timeout", type=float, default=0.5, help="socket timeout in s")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def _client(args: argparse.Namespace) -> redis.Redis:
    sentinels = [(h, int(p)) for h, p in (s.rsplit(":", 1) for s in args.sentinel)]
    sentinel = Sentinel(
        sentinels,
        socket_timeout=args.timeout,
        socket_connect_timeout=args.timeout,
        sentinel_kwargs={"socket_timeout": args.timeout, "socket_connect_timeout": args.timeout},
    )
    return sentinel.master_for(
        args.master,
        socket_timeout=args.timeout,
        socket_connect_timeout=args.timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _write_loop(
    args: argparse.Namespace, first_seq: int, with_wait: bool, out: TextIO, lock: threading.Lock,
    stop: threading.Event,
) -> None:  # fmt: skip
    """One stream: seq = first_seq, first_seq + 2, ... at half the rate."""
    primary = _client(args)
    period = 2.0 / args.rate
    seq = first_seq
    start = time.monotonic()
    next_at = start
    while not stop.is_set() and time.monotonic() - start < args.duration:
        now = time.monotonic()
        if now < next_at:
            stop.wait(next_at - now)
        # Never catch up in a burst after a blocked write: the rate stays bounded.
        next_at = max(next_at + period, time.monotonic())
        record: dict[str, Any] = {"seq": seq, "t": time.time(), "ack": None, "wait": None, "err": None}
        try:
            if primary.set(f"{KEY_PREFIX}{seq}", seq):
                record["ack"] = time.time()
            if with_wait and record["ack"] is not None:
                record["wait"] = int(primary.execute_command("WAIT", 1, args.wait_ms))
        except (redis.RedisError, OSError) as exc:
            record["err"] = f"{type(exc).__name__}: {exc}"[:200]
            if record["ack"] is None:
                stop.wait(0.02)  # no primary found: do not spin
        with lock:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
        seq += 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    lock = threading.Lock()
    with open(args.out, "w", buffering=1) as out:
        # Two connections: a WAIT blocking on a primary cut from its replicas must not slow the
        # plain writes down (they are the ones a partition loses).
        streams = [
            threading.Thread(target=_write_loop, args=(args, 2, False, out, lock, stop), daemon=True),
            threading.Thread(target=_write_loop, args=(args, 1, True, out, lock, stop), daemon=True),
        ]
        for t in streams:
            t.start()
        while any(t.is_alive() for t in streams):
            for t in streams:
                t.join(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
