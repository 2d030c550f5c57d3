"""A small HTTP/1.1 server on ``bind:metrics_port``: /metrics, /health, /ready, /topology.

Stdlib asyncio streams only, on the daemon's own loop (no thread, no extra dependency). It
answers one request per connection (``Connection: close``), so every response is complete
when the socket closes. Endpoints (GET, or HEAD for the same headers without a body):

    /metrics   Prometheus text exposition of the registry (``CONTENT_TYPE_LATEST``)
    /health    200 ``ok`` while the decision loop completed a cycle within ``max_cycle_age``
               seconds; 503 with the reason otherwise (no cycle yet, or the last is too old)
    /ready     200 ``ready`` once the first full cycle is done (every primary probed); 503
               ``not ready: ...`` before
    /topology  JSON rendering of the snapshot, keys below (a stable contract)

Anything else: 404 for another path, 405 (with ``Allow: GET, HEAD``) for another method, 400
for a malformed request line or header, 414 for a request line longer than
``max_request_line`` bytes, 431 for headers over ``max_header_bytes`` (or more than 100 lines),
505 for an HTTP version other than 1.0/1.1, 500 if a provider raised (logged; the server goes
on). A client has ``idle_timeout`` seconds to send its whole request head; then the connection
is closed. At most ``max_connections`` are open at once: when full, a new connection evicts
the oldest one still waiting for its request (so idle sockets cannot starve a real scrape);
if none is idle, the new one gets 503.

/topology (times are seconds; ``null`` when unknown)::

    {
      "watcher": "w1",                      this watcher's name
      "in_hold": false,                     hold mode (Sentinel's TILT): observing only
      "hold_remaining_seconds": null,       seconds of hold left
      "peers": [                            every other watcher heard, over all primaries
        {"name": "w2", "last_heard_seconds_ago": 0.2, "in_hold": false}
      ],
      "primaries": [
        {
          "name": "mymaster",
          "address": "10.0.0.10:6379",      the current primary
          "config_epoch": 3,                epoch of this topology
          "current_epoch": 3,               highest election epoch seen
          "status": "ok",                   "ok" | "sdown" | "odown"
          "odown_votes": 0,                 watchers (this one included) saying down
          "quorum": 2,
          "last_ok_ping_reply_seconds": 0.1,
          "failover": {
            "state": "none",                "none" or the phase (Sentinel's failover-state)
            "epoch": 0,                     epoch of this watcher's attempt, 0 if none
            "leader": ""                    leader known for current_epoch, "" if none
          },
          "pause": {                        maintenance pause: no automatic failover
            "remaining_seconds": null,      null when not paused
            "reason": ""
          },
          "replicas": [
            {"address": "10.0.0.11:6379", "offset": 1234, "lag_bytes": 0,
             "link_status": "up",           "up" | "down" | "unknown" (INFO never read)
             "priority": 100, "sdown": false}
          ],
          "peers": [                        the other watchers' opinion of this primary
            {"name": "w2", "last_heard_seconds_ago": 0.2, "says_down": false, "in_hold": false}
          ]
        }
      ]
    }

``lag_bytes`` is the primary's offset minus the replica's (clamped at 0), ``null`` until both
INFO replies were read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from haredis.core.model import InstanceView, PrimaryView, Snapshot
from haredis.metrics import master_status

log = logging.getLogger("haredis.http")

__all__ = ["HttpServer", "topology"]

_METHOD_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_NAME_RE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_MAX_HEADER_LINES = 100
_LINGER_BYTES = 262_144  # read and dropped after an answer, at most (and at most 1 s)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = _TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    idle: bool = True  # still waiting for its request head


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ago(now: float, then: float | None) -> float | None:
    return None if then is None else _round(max(0.0, now - then))


def _replica(view: PrimaryView, r: InstanceView) -> dict[str, Any]:
    link = "unknown" if r.info_age is None else "up" if r.link_up else "down"
    lag: int | None = None
    if r.info_age is not None and view.primary.info_age is not None:
        lag = max(0, view.primary.offset - r.offset)
    return {
        "address": str(r.address),
        "offset": r.offset,
        "lag_bytes": lag,
        "link_status": link,
        "priority": r.priority,
        "sdown": r.sdown,
    }


def topology(snap: Snapshot) -> dict[str, Any]:
    """The /topology document for a snapshot (see the module docstring for the keys)."""
    now = snap.now
    heard: dict[str, tuple[float | None, bool]] = {}
    primaries: list[dict[str, Any]] = []
    for view in snap.primaries:
        paused = None
        if view.paused_until is not None and view.paused_until > now:
            paused = _round(view.paused_until - now)
        for p in view.peers:
            known = heard.get(p.name)
            if known is None or (p.last_heard is not None and (known[0] is None or p.last_heard > known[0])):
                heard[p.name] = (p.last_heard, p.in_hold)
        primaries.append(
            {
                "name": view.name,
                "address": str(view.address),
                "config_epoch": view.config_epoch,
                "current_epoch": view.current_epoch,
                "status": master_status(view),
                "odown_votes": view.odown_votes,
                "quorum": view.quorum,
                "last_ok_ping_reply_seconds": _ago(now, view.primary.last_ok),
                "failover": {
                    "state": view.failover_state,
                    "epoch": view.failover_epoch,
                    "leader": view.leader,
                },
                "pause": {
                    "remaining_seconds": paused,
                    "reason": view.pause_reason if paused is not None else "",
                },
                "replicas": [_replica(view, r) for r in view.replicas],
                "peers": [
                    {
                        "name": p.name,
                        "last_heard_seconds_ago": _ago(now, p.last_heard),
                        "says_down": p.says_down,
                        "in_hold": p.in_hold,
                    }
                    for p in view.peers
                ],
            }
        )
    hold_left = None if snap.hold_until is None or not snap.in_hold else max(0.0, snap.hold_until - now)
    return {
        "watcher": snap.watcher,
        "in_hold": snap.in_hold,
        "hold_remaining_seconds": _round(hold_left),
        "peers": [
            {"name": name, "last_heard_seconds_ago": _ago(now, last), "in_hold": in_hold}
            for name, (last, in_hold) in sorted(heard.items())
        ],
        "primaries": primaries,
    }


class HttpServer:
    """The metrics/health HTTP endpoint. ``await start()``, then ``port``; ``await close()``.

    ``registry``     the registry /metrics renders (Metrics.registry); None: /metrics is 404
    ``snapshot``     returns the snapshot of the last completed cycle (for /topology)
    ``last_cycle``   returns the ``clock`` time the last cycle completed, None/0 if none yet
    ``ready``        returns True once the first full cycle is done
    ``max_cycle_age`` seconds after which /health says 503
    ``clock``        the clock ``last_cycle`` is on (the loop's: ``loop.time``)
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry | None,
        snapshot: Callable[[], Snapshot],
        last_cycle: Callable[[], float | None],
        ready: Callable[[], bool],
        max_cycle_age: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 64,
        idle_timeout: float = 5.0,
        write_timeout: float = 10.0,
        max_request_line: int = 8192,
        max_header_bytes: int = 16384,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self._port = port
        self._registry = registry
        self._snapshot = snapshot
        self._last_cycle = last_cycle
        self._ready = ready
        self.max_cycle_age = max_cycle_age
        self._clock = clock
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self._server: asyncio.Server | None = None
        self._conns: dict[_Conn, None] = {}  # the counted ones, oldest first
        self._open: dict[asyncio.Task[None], _Conn] = {}  # every connection being handled

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        # The stream limit bounds one line: a longer request line or header fails fast.
        limit = max(self.max_request_line, self.max_header_bytes) + 2
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._port, limit=limit, reuse_address=True
        )
        log.info("http listening", extra={"bind": self.host, "port": self.port})

    async def close(self, timeout: float = 2.0) -> None:
        """Stop listening and drop every open connection (aborted: responses are written
        in one piece, so nothing useful is cut), waiting at most `timeout` for the handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._open.values()):
            conn.writer.transport.abort()
        if self._open:
            _, pending = await asyncio.wait(set(self._open), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(writer)
        self._open[task] = conn
        try:
            if self._server is None:
                return
            if len(self._conns) >= self.max_connections and not self._evict_idle():
                # Every slot is busy answering: refuse at once (no linger, so a flood of
                # connections costs nothing beyond this write).
                await self._send(conn, _Response(503, b"too many connections\n"), head_only=False)
                return
            self._conns[conn] = None
            await self._serve(conn, reader)
        except asyncio.CancelledError:
            # Only close() (after its timeout) or the loop's shutdown cancels a handler. The
            # task belongs to asyncio's stream protocol, whose done-callback (Python 3.11)
            # reports a cancelled handler as an error: end normally instead.
            pass
        except Exception:
            log.exception("http connection failed")
        finally:
            self._conns.pop(conn, None)
            self._open.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _evict_idle(self) -> bool:
        for conn in self._conns:
            if conn.idle:
                del self._conns[conn]
                conn.writer.transport.abort()
                return True
        return False

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        try:
            async with asyncio.timeout(self.idle_timeout):
                method, target = await self._read_head(reader)
        except TimeoutError:
            return  # idle or too slow: close without a word
        except _BadRequest as exc:
            conn.idle = False
            await self._send(conn, _Response(exc.status, f"{exc.message}\n".encode()), head_only=False)
            await self._linger(reader)
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        conn.idle = False
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            response = _Response(405, b"method not allowed\n", headers=[("Allow", "GET, HEAD")])
        else:
            response = self._route(target.split("?", 1)[0])
        await self._send(conn, response, head_only=head_only)
        await self._linger(reader)

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        line = await self._read_line(reader, 414, "request line too long")
        if line == b"":
            # Tolerate one empty line before the request (RFC 9112 2.2).
            line = await self._read_line(reader, 414, "request line too long")
        if len(line) > self.max_request_line:
            raise _BadRequest(414, "request line too long")
        parts = line.split(b" ")
        if len(parts) != 3 or not all(parts):
            raise _BadRequest(400, "malformed request line")
        method, target, version = parts
        if not _METHOD_RE.fullmatch(method):
            raise _BadRequest(400, "malformed method")
        if not version.startswith(b"HTTP/") or not re.fullmatch(rb"HTTP/\d\.\d", version):
            raise _BadRequest(400, "malformed HTTP version")
        if version not in (b"HTTP/1.0", b"HTTP/1.1"):
            raise _BadRequest(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        if not target.startswith(b"/") or any(c < 0x21 or c > 0x7E for c in target):
            raise _BadRequest(400, "malformed request target")
        total = 0
        for _ in range(_MAX_HEADER_LINES + 1):
            header = await self._read_line(reader, 431, "header line too long")
            if header == b"":
                return method.decode("ascii"), target.decode("ascii")
            total += len(header) + 2
            if total > self.max_header_bytes:
                raise _BadRequest(431, "headers too large")
            name, sep, _value = header.partition(b":")
            if not sep or not _HEADER_NAME_RE.fullmatch(name):
                raise _BadRequest(400, "malformed header")
        raise _BadRequest(431, "too many header lines")

    async def _read_line(self, reader: asyncio.StreamReader, status: int, message: str) -> bytes:
        """One CRLF (or bare LF) terminated line, without the terminator."""
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(status, message) from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _BadRequest(400, "incomplete request") from None
            raise
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max(self.max_request_line, self.max_header_bytes):
            raise _BadRequest(status, message)
        return line

    async def _send(self, conn: _Conn, response: _Response, *, head_only: bool) -> None:
        status = response.status
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "X-Content-Type-Options: nosniff",
            "Connection: close",
            *(f"{k}: {v}" for k, v in response.headers),
        ]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += response.body
        writer = conn.writer
        writer.write(data)
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(self.write_timeout):
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        """Read and drop what the client may still send (a body we ignore), briefly, so the
        close does not reset the connection before the client read our response."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(min(1.0, self.idle_timeout)):
                remaining = _LINGER_BYTES
                while remaining > 0:
                    chunk = await reader.read(min(remaining, 16384))
                    if not chunk:
                        return
                    remaining -= len(chunk)

    # ------------------------------------------------------------------ endpoints

    def _route(self, path: str) -> _Response:
        try:
            if path == "/metrics" and self._registry is not None:
                return _Response(200, generate_latest(self._registry), CONTENT_TYPE_LATEST)
            if path == "/health":
                return self._health()
            if path == "/ready":
                if self._ready():
                    return _Response(200, b"ready\n")
                return _Response(503, b"not ready: the first full cycle is not done\n")
            if path == "/topology":
                body = json.dumps(topology(self._snapshot()), indent=2, sort_keys=False) + "\n"
                return _Response(200, body.encode(), _JSON)
        except Exception:
            log.exception("http endpoint failed", extra={"path": path})
            return _Response(500, b"internal error (see the log)\n")
        return _Response(404, b"not found: try /metrics, /health, /ready or /topology\n")

    def _health(self) -> _Response:
        last = self._last_cycle()
        if not last:
            return _Response(503, b"unhealthy: no decision cycle completed yet\n")
        age = self._clock() - last
        if age > self.max_cycle_age:
            text = (
                f"unhealthy: last decision cycle completed {age:.1f}s ago (limit {self.max_cycle_age:g}s)\n"
            )
            return _Response(503, text.encode())
        return _Response(200, b"ok\n")
