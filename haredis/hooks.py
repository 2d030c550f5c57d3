"""Hooks: Sentinel's notification and client-reconfig scripts, and signed webhooks.

Everything here is configured in the ``[hooks]`` table of the config file and nowhere else:
there is no command that changes a script path or a URL at runtime. A reload builds a new
``Hooks`` from the new config (``await old.close(grace)`` in the background, then a new one).

Scripts run as Sentinel runs them (``sentinel.c``, reference §1d):

* the notification script gets ``<event-type> <event-message>`` for every WARNING event that
  carries an instance (not ``+tilt``/``-tilt``/``-script-error``/``-script-timeout``);
* the client-reconfig script gets ``<master> <leader|observer> start <from-ip> <from-port>
  <to-ip> <to-port>`` on ``+switch-master``; the role is ``leader`` when this watcher led the
  failover. Unless the caller says so (``submit(..., leader=True/False)``), it is inferred
  from the events themselves: a master is led by this watcher from ``+elected-leader`` until
  ``+failover-end``, ``+failover-end-for-timeout``, ``-failover-abort-*``,
  ``+config-update-from`` (another watcher's topology is being adopted), ``-monitor`` or
  ``+reset-master`` for that master. The core publishes ``+elected-leader`` for every
  failover and switchover it leads, and ``+config-update-from`` just before an adopted
  ``+switch-master``, so the inference is exact;
* an argument vector through ``execve`` (no shell), stdin ``/dev/null``, stdout and stderr
  captured (the first 4 KiB of each) and logged on failure, no inherited descriptors, a new
  session (so a timeout kills the whole process group), working directory ``/``, an
  environment reduced to PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TZ and TMPDIR (no
  NOTIFY_SOCKET, no credentials directory, nothing else the daemon inherited);
* killed with SIGKILL after ``script_timeout_ms`` (``-script-timeout <path> <pid>``); exit 1 or
  death by a signal is retried ``script_max_retries`` times after ``script_retry_delay_ms``,
  doubling each time; exit >= 2 is not retried; a job given up publishes
  ``-script-error <path> <signal> <exit>``;
* at most 16 scripts run at once; at most 256 jobs wait (running, due, or waiting for a
  retry); when the queue is full the oldest job that is not running is dropped and counted.

Webhooks POST one JSON object per event to each ``[[hooks.webhooks]]`` URL that wants it
(default: the WARNING events), signed with ``X-Haredis-Signature: sha256=<hex>`` (HMAC-SHA256
of the exact body) when the webhook has a ``secret_file``. Each webhook has its own queue
(``queue_size``, drop oldest, counted) and its own task, delivering in order; connection
errors, timeouts and 5xx answers are retried with exponential backoff, other answers are not.
The HTTP client is a minimal HTTP/1.1 one on asyncio streams (``Connection: close``).

``submit()`` never blocks and never raises: the daemon calls it from its synchronous publish
path. Secrets never reach a log, and neither does a webhook's path or query (they often hold a
token): logs name a webhook by its index and ``scheme://host:port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import ssl
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from haredis import __version__
from haredis.config import WARNING_EVENTS, HooksConfig, Secret, WebhookConfig
from haredis.log import kv

__all__ = [
    "MAX_RUNNING",
    "NO_INSTANCE_EVENTS",
    "SCRIPT_QUEUE_SIZE",
    "Hooks",
    "PendingScript",
    "ScriptResult",
    "Webhook",
    "is_warning",
    "master_of",
    "notification_argv",
    "reconfig_argv",
    "retry_delay",
    "script_env",
    "script_should_retry",
    "sign",
    "webhook_body",
    "webhook_should_retry",
]

log = logging.getLogger("haredis.hooks")

MAX_RUNNING: Final = 16  # scripts running at once (Sentinel: SENTINEL_SCRIPT_MAX_RUNNING)
SCRIPT_QUEUE_SIZE: Final = 256  # jobs queued, running ones included (SENTINEL_SCRIPT_MAX_QUEUE)
# WARNING events published without an instance: Sentinel runs no script for them.
NO_INSTANCE_EVENTS: Final = frozenset({"+tilt", "-tilt", "-script-error", "-script-timeout"})

_MAX_OUTPUT: Final = 4096  # bytes kept of a script's stdout, and of its stderr
_MAX_DELAY: Final = 86_400.0  # no backoff longer than a day, whatever the retry count
_KILL_WAIT: Final = 5.0  # after SIGKILL, how long to wait for the exit to be reaped
_OUTPUT_WAIT: Final = 1.0  # after the kill, how long the output pipes may take to close
_ENV_KEEP: Final = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
_MAX_LINE: Final = 8192  # longest HTTP status or header line read
_MAX_HEADERS: Final = 100
_MAX_SNIPPET: Final = 256  # bytes of an error answer's body kept for the log
_CLOSE_WAIT: Final = 1.0  # bound on an HTTP connection's orderly close


# ------------------------------------------------------------------------ pure helpers


def is_warning(event: str) -> bool:
    """A WARNING-level event (Sentinel's levels, plus haredis's own abort and maintenance)."""
    return event in WARNING_EVENTS or event.startswith("-failover-abort-")


def master_of(event: str, message: str) -> str | None:
    """The master an event is about, from its message: ``+switch-master <name> …`` (and
    ``+failover-summary <name> …``), an
    instance description ``master <name> <ip> <port>``, or ``… @ <master> …`` for a replica or
    a watcher. None for events about no master (``+tilt``, ``+new-epoch``…)."""
    words = message.split()
    if event in ("+switch-master", "+failover-summary"):
        return words[0] if words else None
    if "@" in words:
        index = words.index("@")
        return words[index + 1] if index + 1 < len(words) else None
    if len(words) >= 2 and words[0] == "master":
        return words[1]
    return None


def _clean(text: str) -> str:
    # execve cannot pass a NUL byte; everything else goes through as is (no shell to escape).
    return text.replace("\x00", "")


def notification_argv(script: str | os.PathLike[str], event: str, message: str) -> tuple[str, ...] | None:
    """Sentinel's notification script call, or None when this event runs no script."""
    if not is_warning(event) or event in NO_INSTANCE_EVENTS:
        return None
    return (os.fspath(script), _clean(event), _clean(message))


def reconfig_argv(script: str | os.PathLike[str], message: str, *, leader: bool) -> tuple[str, ...] | None:
    """Sentinel's client-reconfig script call for ``+switch-master <name> <oldip> <oldport>
    <newip> <newport>``: ``<master> <leader|observer> start <from-ip> <from-port> <to-ip>
    <to-port>``. None when the message does not have that shape."""
    words = message.split()
    if len(words) != 5:
        return None
    name, old_ip, old_port, new_ip, new_port = (_clean(w) for w in words)
    role = "leader" if leader else "observer"
    return (os.fspath(script), name, role, "start", old_ip, old_port, new_ip, new_port)


def script_should_retry(returncode: int | None) -> bool:
    """Exit 1 or killed by a signal: retry later (Sentinel). Exit 0 or >= 2, or a script that
    could not be started (None): do not."""
    return returncode is not None and (returncode == 1 or returncode < 0)


def retry_delay(base: float, retry_num: int) -> float:
    """The wait before retry number ``retry_num`` (1, 2, …): base, 2 base, 4 base…"""
    if retry_num < 1 or base <= 0:
        return max(0.0, base)
    exponent = min(retry_num - 1, 64)
    return min(base * (2.0**exponent), _MAX_DELAY)


def webhook_should_retry(status: int | None) -> bool:
    """None (no answer: connection error, timeout, garbage) or 5xx: retry. Anything else:
    delivered (2xx) or refused for good (3xx, 4xx)."""
    return status is None or status >= 500


def script_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment scripts run with: locale, time zone, PATH and who we are; nothing
    else (no NOTIFY_SOCKET, no CREDENTIALS_DIRECTORY, no secrets)."""
    source = os.environ if environ is None else environ
    env = {key: value for key, value in source.items() if key in _ENV_KEEP or key.startswith("LC_")}
    env.setdefault("PATH", _DEFAULT_PATH)
    return env


def webhook_body(
    *,
    event: str,
    message: str,
    master: str | None,
    watcher: str,
    epoch: int | None,
    timestamp: float,
    delivery_id: str,
) -> bytes:
    """The exact bytes POSTed (and signed)."""
    document = {
        "event": event,
        "message": message,
        "master": master,
        "watcher": watcher,
        "epoch": epoch,
        "timestamp": timestamp,
        "id": delivery_id,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def sign(secret: Secret, body: bytes) -> str:
    """``X-Haredis-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    digest = hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# ------------------------------------------------------------------------ scripts


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """How one run ended. ``returncode`` as asyncio gives it (negative: killed by that
    signal), None when the script could not be started at all."""

    returncode: int | None
    timed_out: bool = False
    pid: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""


@dataclass(frozen=True, slots=True)
class PendingScript:
    """One queued or running job, for ``SENTINEL PENDING-SCRIPTS`` and INFO."""

    argv: tuple[str, ...]
    running: bool
    pid: int | None
    run_time: float | None  # seconds since it started, when running
    run_delay: float | None  # seconds until it may start, when waiting
    retry_num: int  # runs so far


class _Job:
    __slots__ = ("argv", "kind", "not_before", "pid", "retry_num", "running", "started_at")

    def __init__(self, argv: tuple[str, ...], kind: str) -> None:
        self.argv = argv
        self.kind = kind
        self.retry_num = 0  # runs started so far
        self.not_before = 0.0
        self.running = False
        self.pid: int | None = None
        self.started_at: float | None = None


class _Capture(asyncio.Protocol):
    """Reads one output pipe to its end, keeping the first ``limit`` bytes."""

    def __init__(self, limit: int, closed: asyncio.Future[None]) -> None:
        self.limit = limit
        self.data = bytearray()
        self.discarded = 0
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += data[:room]
        self.discarded += max(0, len(data) - max(room, 0))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> bytes:
        return bytes(self.data) + (b"..." if self.discarded else b"")


def _factory(capture: _Capture) -> Callable[[], _Capture]:
    return lambda: capture


def _kill_group(pid: int) -> None:
    # The script leads its own session and process group (start_new_session): this kills it
    # and whatever it started that did not leave the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


ScriptRunner = Callable[[tuple[str, ...], float], Awaitable[ScriptResult]]
HttpPost = Callable[["Webhook", Mapping[str, str], bytes], Awaitable[int]]


# ------------------------------------------------------------------------ webhooks


class _HttpError(Exception):
    """The server's answer is not HTTP we understand."""


class _Delivery:
    __slots__ = ("body", "event", "id")

    def __init__(self, event: str, body: bytes, delivery_id: str) -> None:
        self.event = event
        self.body = body
        self.id = delivery_id


class Webhook:
    """One ``[[hooks.webhooks]]`` target: its queue, its worker's counters."""

    def __init__(self, config: WebhookConfig, index: int) -> None:
        self.config = config
        self.index = index
        parts = urllib.parse.urlsplit(config.url)
        self.tls = parts.scheme.lower() == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # The path and query are left out of logs and metrics: they often carry a token.
        self.name = f"{parts.scheme.lower()}://{self.host_header}"
        self.queue: deque[_Delivery] = deque()
        self.wake = asyncio.Event()
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.retried = 0

    def __repr__(self) -> str:
        return f"<Webhook webhooks[{self.index}] {self.name}>"

    @property
    def queued(self) -> int:
        return len(self.queue)

    def wants(self, event: str) -> bool:
        return self.config.wants(event)

    def request_head(self, headers: Mapping[str, str], length: int) -> bytes:
        lines = [
            f"POST {self.target} HTTP/1.1",
            f"Host: {self.host_header}",
            *(f"{name}: {_header_value(value)}" for name, value in headers.items()),
            f"Content-Length: {length}",
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _header_value(value: str) -> str:
    return "".join(ch for ch in value if " " <= ch <= "~")


async def _read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The final status of an HTTP/1.x answer (skipping 1xx), and a snippet of its body."""
    while True:
        line = await reader.readline()
        if not line:
            raise _HttpError("the connection closed before an answer")
        words = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(words) < 2 or not words[0].startswith("HTTP/1.") or not words[1].isdigit():
            raise _HttpError(f"not an HTTP/1.x status line: {line[:80]!r}")
        status = int(words[1])
        length: int | None = None
        for _ in range(_MAX_HEADERS):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        else:
            raise _HttpError("too many header lines")
        if 100 <= status < 200:
            continue
        snippet = b""
        if length and not 200 <= status < 300:
            with contextlib.suppress(asyncio.IncompleteReadError):
                snippet = await reader.readexactly(min(length, _MAX_SNIPPET))
        return status, snippet


# ------------------------------------------------------------------------ the object


class Hooks:
    """Runs the configured scripts and webhooks for the events the daemon publishes.

    ``watcher`` is this watcher's name (webhook bodies). ``publish(channel, message)`` is
    called with ``-script-timeout`` / ``-script-error`` (the daemon's publish path, as
    Sentinel publishes them). ``epoch_of(master)`` gives the webhook body's ``epoch``.
    ``leading`` carries the masters this watcher leads a failover of over a rebuild.
    ``script_runner`` and ``http_post`` replace the subprocess and HTTP layers (tests).
    """

    def __init__(
        self,
        config: HooksConfig,
        watcher: str,
        *,
        publish: Callable[[str, str], None] | None = None,
        epoch_of: Callable[[str], int | None] | None = None,
        leading: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
        max_running: int = MAX_RUNNING,
        script_queue_size: int = SCRIPT_QUEUE_SIZE,
        script_runner: ScriptRunner | None = None,
        http_post: HttpPost | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.watcher = watcher
        self._publish = publish
        self._epoch_of = epoch_of
        self._leading: set[str] = set(leading)
        self._ssl_context = ssl_context
        self._max_running = max(1, max_running)
        self._queue_size = max(1, script_queue_size)
        self._runner = script_runner
        self._http_post: HttpPost = http_post or self._post
        self._env = script_env(environ)
        self._timeout = config.script_timeout_ms / 1000
        self._retry_base = config.script_retry_delay_ms / 1000
        self._jobs: list[_Job] = []
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()  # everything, scripts included
        self._script_tasks: dict[asyncio.Task[None], _Job] = {}
        self._started = False
        self._closing = False
        self._closing_event = asyncio.Event()
        self._closed = asyncio.Event()
        self.webhooks: tuple[Webhook, ...] = tuple(
            Webhook(hook, index) for index, hook in enumerate(config.webhooks)
        )
        # Counters (scripts): runs started, jobs given up, retries scheduled, jobs dropped.
        self.ran = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0

    # ------------------------------------------------------------------ state

    @property
    def leading(self) -> frozenset[str]:
        """Masters whose failover this watcher leads right now (as seen in the events)."""
        return frozenset(self._leading)

    @property
    def running_scripts(self) -> int:
        return sum(1 for job in self._jobs if job.running)

    @property
    def queued_scripts(self) -> int:
        """Jobs in the queue, running or not (Sentinel's ``sentinel_scripts_queue_length``)."""
        return len(self._jobs)

    def pending_scripts(self) -> list[PendingScript]:
        now = _loop_time()
        return [
            PendingScript(
                argv=job.argv,
                running=job.running,
                pid=job.pid,
                run_time=(now - job.started_at) if job.running and job.started_at is not None else None,
                run_delay=None if job.running else max(0.0, job.not_before - now),
                retry_num=job.retry_num,
            )
            for job in self._jobs
        ]

    # ------------------------------------------------------------------ submit

    def submit(self, channel: str, message: str, *, leader: bool | None = None) -> None:
        """Queue whatever this event triggers. Never blocks, never raises.

        ``leader``: for ``+switch-master``, whether this watcher led the failover; None
        (the default) infers it from the events seen (see the module docstring)."""
        try:
            self._submit(channel, message, leader)
        except Exception:
            log.exception("hooks: could not queue an event", extra=kv(event=channel))

    def _submit(self, channel: str, message: str, leader: bool | None) -> None:
        master = master_of(channel, message)
        led = self._track(channel, master)
        if self._closing:
            return
        c = self.config
        if c.notification_script is not None:
            argv = notification_argv(c.notification_script, channel, message)
            if argv is not None:
                self._enqueue(argv, "notification")
        if c.client_reconfig_script is not None and channel == "+switch-master":
            argv = reconfig_argv(c.client_reconfig_script, message, leader=led if leader is None else leader)
            if argv is not None:
                self._enqueue(argv, "client-reconfig")
        wanting = [hook for hook in self.webhooks if hook.wants(channel)]
        if wanting:
            delivery_id = uuid.uuid4().hex
            body = webhook_body(
                event=channel,
                message=message,
                master=master,
                watcher=self.watcher,
                epoch=self._epoch(channel, message, master),
                timestamp=time.time(),
                delivery_id=delivery_id,
            )
            for hook in wanting:
                self._enqueue_delivery(hook, _Delivery(channel, body, delivery_id))

    def _track(self, channel: str, master: str | None) -> bool:
        if master is None:
            return False
        if channel == "+elected-leader":
            self._leading.add(master)
        elif channel in (
            "+failover-end",
            "+failover-end-for-timeout",
            "+config-update-from",
            "-monitor",
            "+reset-master",
        ) or channel.startswith("-failover-abort-"):
            self._leading.discard(master)
        return master in self._leading

    def _epoch(self, channel: str, message: str, master: str | None) -> int | None:
        words = message.split()
        if channel in ("+new-epoch", "+vote-for-leader") and words and words[-1].isdigit():
            return int(words[-1])
        if channel == "+failover-summary":
            for word in words:
                if word.startswith("epoch=") and word[6:].isdigit():
                    return int(word[6:])
        if master is not None and self._epoch_of is not None:
            try:
                return self._epoch_of(master)
            except Exception:
                log.exception("hooks: epoch_of failed", extra=kv(master=master))
        return None

    def _enqueue(self, argv: tuple[str, ...], kind: str) -> None:
        if len(self._jobs) >= self._queue_size:
            victim = next((job for job in self._jobs if not job.running), None)
            self.dropped += 1
            if victim is None:
                log.warning("hooks: script queue full, job dropped", extra=kv(script=argv[0], kind=kind))
                return
            self._jobs.remove(victim)
            log.warning(
                "hooks: script queue full, oldest waiting job dropped",
                extra=kv(script=victim.argv[0], kind=victim.kind, retry_num=victim.retry_num),
            )
        self._jobs.append(_Job(argv, kind))
        self._wake.set()

    def _enqueue_delivery(self, hook: Webhook, delivery: _Delivery) -> None:
        if len(hook.queue) >= hook.config.queue_size:
            old = hook.queue.popleft()
            hook.dropped += 1
            log.warning(
                "hooks: webhook queue full, oldest event dropped",
                extra=kv(webhook=hook.index, url=hook.name, event=old.event, id=old.id),
            )
        hook.queue.append(delivery)
        hook.wake.set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the script dispatcher and one worker per webhook. Returns at once."""
        if self._started or self._closing:
            return
        self._started = True
        if self.config.notification_script or self.config.client_reconfig_script:
            self._spawn(self._dispatch())
        for hook in self.webhooks:
            self._spawn(self._webhook_worker(hook))

    async def close(self, grace: float = 3.0) -> None:
        """Stop: no new job starts, waiting scripts are dropped, running scripts and queued
        webhook deliveries get ``grace`` seconds (no more retries), then scripts are killed
        and deliveries abandoned. Safe to call twice."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self._closing_event.set()
        waiting = [job for job in self._jobs if not job.running]
        for job in waiting:
            self._jobs.remove(job)
        self.dropped += len(waiting)
        self._wake.set()
        for hook in self.webhooks:
            hook.wake.set()
        try:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=max(0.0, grace))
            # Grace is over: kill the scripts still running and let their tasks reap them;
            # abandon the webhook deliveries still in flight.
            reaping: set[asyncio.Task[None]] = set()
            for task, job in self._script_tasks.items():
                if job.pid is not None:
                    _kill_group(job.pid)
                    reaping.add(task)
            for task in self._tasks - reaping:
                task.cancel()
            if reaping:
                await asyncio.wait(reaping, timeout=_KILL_WAIT)
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            for hook in self.webhooks:
                hook.dropped += len(hook.queue)
                hook.queue.clear()
            self._closed.set()

    def _forget_script_task(self, task: asyncio.Task[None]) -> None:
        self._script_tasks.pop(task, None)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _emit(self, channel: str, message: str) -> None:
        if self._publish is None:
            return
        try:
            self._publish(channel, message)
        except Exception:
            log.exception("hooks: publish failed", extra=kv(event=channel))

    # ------------------------------------------------------------------ script queue

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            self._wake.clear()
            now = loop.time()
            next_due: float | None = None
            running = self.running_scripts
            for job in list(self._jobs):
                if job.running:
                    continue
                if job.not_before > now:
                    next_due = job.not_before if next_due is None else min(next_due, job.not_before)
                elif running < self._max_running:
                    running += 1
                    job.running = True
                    job.retry_num += 1
                    job.started_at = now
                    self.ran += 1
                    task = self._spawn(self._run_job(job))
                    self._script_tasks[task] = job
                    task.add_done_callback(self._forget_script_task)
            timeout = None if next_due is None else max(0.0, next_due - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run_job(self, job: _Job) -> None:
        try:
            if self._runner is not None:
                result = await self._runner(job.argv, self._timeout)
            else:
                result = await self._exec(job, self._timeout)
        except asyncio.CancelledError:  # close() gave up on it
            self._drop_job(job)
            self.failed += 1
            raise
        except Exception as exc:  # a runner bug must not lose the job silently
            log.exception("hooks: script run failed", extra=kv(script=job.argv[0]))
            result = ScriptResult(returncode=None, error=str(exc))
        finally:
            job.running = False
            job.pid = None
        self._finish(job, result)
        self._wake.set()

    def _finish(self, job: _Job, result: ScriptResult) -> None:
        code = result.returncode
        fields: dict[str, object] = {
            "script": job.argv[0],
            "kind": job.kind,
            "event": job.argv[1] if len(job.argv) > 1 else "",
            "exit": code,
            "timed_out": result.timed_out,
            "retry_num": job.retry_num,
        }
        if code == 0:
            self._drop_job(job)
            log.debug("hooks: script done", extra=kv(**fields))
            return
        fields["stdout"] = result.stdout.decode(errors="replace")
        fields["stderr"] = result.stderr.decode(errors="replace")
        if result.error:
            fields["error"] = result.error
        if (
            script_should_retry(code)
            and job.retry_num <= self.config.script_max_retries
            and not self._closing
        ):
            delay = retry_delay(self._retry_base, job.retry_num)
            job.not_before = _loop_time() + delay
            self.retried += 1
            log.warning(f"hooks: script failed, retry in {delay:g}s", extra=kv(**fields))
            return
        self._drop_job(job)
        self.failed += 1
        log.error("hooks: script failed", extra=kv(**fields))
        # Sentinel's "-script-error <path> <signal> <exit>"; a script that could not be
        # started counts as exit 2, as Sentinel's forked child exits 2 when execve fails.
        if code is None:
            sig, status = 0, 2
        elif code < 0:
            sig, status = -code, 0
        else:
            sig, status = 0, code
        self._emit("-script-error", f"{job.argv[0]} {sig} {status}")

    def _drop_job(self, job: _Job) -> None:
        with contextlib.suppress(ValueError):
            self._jobs.remove(job)

    async def _exec(self, job: _Job, timeout: float) -> ScriptResult:
        """Run one script: execve(argv), no shell, bounded output, SIGKILL at the timeout."""
        loop = asyncio.get_running_loop()
        argv = job.argv
        pipes: list[tuple[int, int]] = []
        try:
            for _ in range(2):
                pipes.append(os.pipe())
        except OSError as exc:  # out of descriptors
            for r, w in pipes:
                os.close(r)
                os.close(w)
            return ScriptResult(returncode=None, error=str(exc))
        readers = [os.fdopen(r, "rb", buffering=0) for r, _ in pipes]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=pipes[0][1],
                stderr=pipes[1][1],
                close_fds=True,
                env=self._env,
                cwd="/",
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            for reader in readers:
                reader.close()
            return ScriptResult(returncode=None, error=str(exc))
        finally:
            for _, writer in pipes:
                os.close(writer)
        pid = process.pid
        job.pid = pid
        closed = [loop.create_future() for _ in readers]
        captures = [_Capture(_MAX_OUTPUT, done) for done in closed]
        transports: list[asyncio.BaseTransport] = []
        timed_out = False
        try:
            for reader, capture in zip(readers, captures, strict=True):
                transport, _ = await loop.connect_read_pipe(_factory(capture), reader)
                transports.append(transport)
            deadline = loop.time() + timeout
            try:
                async with asyncio.timeout_at(deadline):
                    await process.wait()
            except TimeoutError:
                timed_out = True
                _kill_group(pid)
                self._emit("-script-timeout", f"{argv[0]} {pid}")
                async with asyncio.timeout(_KILL_WAIT):
                    await process.wait()
            # Anything the script left running still holds its output: it shares the deadline.
            _, pending = await asyncio.wait(closed, timeout=max(0.0, deadline - loop.time()))
            if pending:
                _kill_group(pid)
                await asyncio.wait(pending, timeout=_OUTPUT_WAIT)
        except BaseException:
            if process.returncode is None:
                _kill_group(pid)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_KILL_WAIT):
                        await process.wait()
            raise
        finally:
            for pipe_transport in transports:
                pipe_transport.close()
            for reader in readers[len(transports) :]:
                reader.close()
            for future in closed:
                if not future.done():
                    future.cancel()
        return ScriptResult(
            returncode=process.returncode,
            timed_out=timed_out,
            pid=pid,
            stdout=captures[0].text(),
            stderr=captures[1].text(),
        )

    # ------------------------------------------------------------------ webhooks

    async def _webhook_worker(self, hook: Webhook) -> None:
        while True:
            if not hook.queue:
                if self._closing:
                    return
                hook.wake.clear()
                await hook.wake.wait()
                continue
            delivery = hook.queue.popleft()
            try:
                await self._deliver(hook, delivery)
            except Exception:  # never let one bad delivery stop this webhook for good
                hook.failed += 1
                log.exception("hooks: webhook worker error", extra=kv(webhook=hook.index, url=hook.name))

    def _headers(self, hook: Webhook, delivery: _Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"haredis/{__version__}",
            "X-Haredis-Event": delivery.event,
            "X-Haredis-Delivery": delivery.id,
        }
        if hook.config.secret is not None:
            headers["X-Haredis-Signature"] = sign(hook.config.secret, delivery.body)
        return headers

    async def _deliver(self, hook: Webhook, delivery: _Delivery) -> None:
        headers = self._headers(hook, delivery)
        attempt = 0
        base = hook.config.retry_delay_ms / 1000
        while True:
            status: int | None = None
            try:
                status = await self._http_post(hook, headers, delivery.body)
                problem = f"HTTP {status}"
            except (OSError, TimeoutError, EOFError, ValueError, _HttpError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:
                log.exception("hooks: webhook delivery failed", extra=kv(webhook=hook.index, url=hook.name))
                problem = type(exc).__name__
                status = 0  # a bug, not the network: do not retry it
            if status is not None and 200 <= status < 300:
                hook.delivered += 1
                return
            fields = kv(
                webhook=hook.index, url=hook.name, event=delivery.event, id=delivery.id, error=problem
            )
            if not webhook_should_retry(status) or attempt >= hook.config.max_retries or self._closing:
                hook.failed += 1
                log.error("hooks: webhook delivery failed", extra=fields)
                return
            attempt += 1
            hook.retried += 1
            delay = retry_delay(base, attempt)
            log.warning(f"hooks: webhook delivery failed, retry in {delay:g}s", extra=fields)
            # close() cuts a backoff short: shutdown never waits for a retry.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing_event.wait(), delay)
            if self._closing:
                hook.failed += 1
                log.error("hooks: webhook delivery abandoned at shutdown", extra=fields)
                return

    async def _post(self, hook: Webhook, headers: Mapping[str, str], body: bytes) -> int:
        """One POST; the status of the answer. Raises on connection errors and timeouts."""
        timeout = hook.config.timeout_ms / 1000
        context: ssl.SSLContext | None = None
        if hook.tls:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        deadline = asyncio.get_running_loop().time() + timeout
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                hook.host,
                hook.port,
                ssl=context,
                server_hostname=hook.host if context is not None else None,
                limit=_MAX_LINE,
            )
        try:
            async with asyncio.timeout_at(deadline):
                writer.write(hook.request_head(headers, len(body)) + body)
                await writer.drain()
                status, snippet = await _read_status(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await writer.wait_closed()
        if snippet:
            log.debug(
                "hooks: webhook answer",
                extra=kv(
                    webhook=hook.index, url=hook.name, status=status, body=snippet.decode(errors="replace")
                ),
            )
        return status


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
