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

This module is the orchestrator (queues, workers, lifecycle). What an event triggers is in
``haredis.hook_policy``, running one script in ``haredis.hook_script``, one webhook POST in
``haredis.hook_webhook``; the names tests use are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from haredis.config import HooksConfig
from haredis.hook_policy import (
    NO_INSTANCE_EVENTS,
    is_warning,
    master_of,
    notification_argv,
    reconfig_argv,
    retry_delay,
    script_env,
    script_should_retry,
    sign,
    webhook_body,
    webhook_should_retry,
)
from haredis.hook_script import KILL_WAIT, ScriptResult, ScriptRunner, kill_group, run_script
from haredis.hook_webhook import Delivery, HttpError, HttpPost, Webhook, post, request_headers
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
                self._enqueue_delivery(hook, Delivery(channel, body, delivery_id))

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

    def _enqueue_delivery(self, hook: Webhook, delivery: Delivery) -> None:
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
                    kill_group(job.pid)
                    reaping.add(task)
            for task in self._tasks - reaping:
                task.cancel()
            if reaping:
                await asyncio.wait(reaping, timeout=KILL_WAIT)
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
        def started(pid: int) -> None:
            job.pid = pid

        def timed_out(pid: int) -> None:
            self._emit("-script-timeout", f"{job.argv[0]} {pid}")

        return await run_script(job.argv, timeout, env=self._env, on_started=started, on_timeout=timed_out)

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

    async def _deliver(self, hook: Webhook, delivery: Delivery) -> None:
        headers = request_headers(hook, delivery)
        attempt = 0
        base = hook.config.retry_delay_ms / 1000
        while True:
            status: int | None = None
            try:
                status = await self._http_post(hook, headers, delivery.body)
                problem = f"HTTP {status}"
            except (OSError, TimeoutError, EOFError, ValueError, HttpError) as exc:
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
        if hook.tls and self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return await post(hook, headers, body, self._ssl_context)


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
