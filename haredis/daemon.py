"""`haredis run`: wires config, state, Redis links, peers, the RESP server and the runtime,
then runs the decision cycle until SIGTERM.

Lifecycle (uvicorn's shape, Patroni's loop):
  start   load state (refuse to start if it is unreadable) and write it back at once, so a
          read-only data_dir fails now rather than at the first vote; bind the RESP port;
          start the peer mesh; then cycle every tick_interval.
  ready   READY=1 to systemd once every primary has been probed (the first full cycle).
  cycle   a Tick into the core, one status string (log on change, systemd STATUS=), a
          watchdog ping only if the cycle completed; SIGHUP is acted on between cycles.
  stop    SIGTERM: STOPPING=1, close the listener, let in-flight Redis commands finish for a
          few seconds, persist the state one last time, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gc
import logging
import os
import resource
import selectors
import signal
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from haredis import __version__, systemd
from haredis.admin_api import (
    AdminContext,
    admin_failover,
    admin_history,
    admin_pause,
    admin_resume,
    admin_status,
)
from haredis.config import Config, ConfigError, PrimaryConfig, load_config
from haredis.core.events import Event, FailoverCommand, GossipReceived, VoteReplied, VoteRequested
from haredis.core.messages import Gossip, PeerMessage, VoteReply, VoteRequest
from haredis.core.model import Address, DurableState, Snapshot
from haredis.core.watcher import Watcher
from haredis.history import History
from haredis.hooks import Hooks
from haredis.http import HttpServer
from haredis.log import LogHandle, setup_logging
from haredis.metrics import Metrics
from haredis.peers import PeerMesh, PeerSigner, PeerVerifier, peer_command_handler
from haredis.redis_link import RedisLink
from haredis.resp import Bulk, Error, Reply
from haredis.runtime import RedisPort, Runtime
from haredis.sentinel_api import (
    ProcessFacts,
    SentinelContext,
    config_update_from,
    info_text,
    role_reply,
    sentinel_command,
    sentinel_subject,
)
from haredis.server import Command, Connection, Handler, RespServer
from haredis.state import StateError, load_state, save_state

log = logging.getLogger("haredis.daemon")

SHUTDOWN_GRACE = 3.0


class PersistenceLost(Exception):
    """The state could not be written; the daemon stopped rather than forget a vote."""


def _tls_context(p: PrimaryConfig) -> ssl.SSLContext | None:
    if not p.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(p.tls_ca_file) if p.tls_ca_file else None)
    if p.tls_cert_file and p.tls_key_file:
        ctx.load_cert_chain(str(p.tls_cert_file), str(p.tls_key_file))
    return ctx


def _server_tls_context(config: Config) -> ssl.SSLContext | None:
    w = config.watcher
    if w.tls_cert_file is None or w.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(w.tls_cert_file), str(w.tls_key_file))
    return ctx


def _peer_tls_context(config: Config) -> ssl.SSLContext | None:
    """Peers are dialled by the addresses in `peers`, often bare IPs: they are authenticated
    by the CA that signed their certificate (and by the HMAC), not by hostname."""
    w = config.watcher
    if w.tls_cert_file is None:
        return None
    ctx = ssl.create_default_context(cafile=str(w.tls_ca_file) if w.tls_ca_file else None)
    if w.tls_ca_file is not None:
        ctx.check_hostname = False
    return ctx


def _credentials(p: PrimaryConfig) -> tuple[object, ...]:
    return (p.username, p.password, p.tls, p.tls_ca_file, p.tls_cert_file, p.tls_key_file)


# Full collections of the cyclic collector: at most one per this many young-generation
# collections (Python's default is 10: one every few seconds with a thousand primaries).
FULL_COLLECTION_EVERY = 100


def settle_collector() -> None:
    """Once started: what start-up built (config, the core's state, links, connections)
    lives as long as the process, so it leaves the cyclic collector's scans for good, and
    full collections (which scan everything else that lived a while) become rare. With a
    thousand primaries the full scans cost seconds of CPU a minute; the steady state makes
    no cyclic garbage for them to find (reference counting frees what it drops)."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


class Daemon:
    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        self._stop = asyncio.Event()
        self._nap_waiter: asyncio.Future[None] | None = None
        self._reload_requested = False
        self._log_handle: LogHandle | None = None
        self.runtime: Runtime | None = None
        self.server: RespServer | None = None
        self.mesh: PeerMesh | None = None
        self._last_status = ""
        self._ready_sent = False
        self._last_cycle_done = 0.0
        self.history = History(config.watcher.data_dir / "history.jsonl", config.watcher.name)
        self.hooks: Hooks | None = None
        self.metrics: Metrics | None = None
        self.http: HttpServer | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._started_at = time.monotonic()
        # (peer, primary) pairs already announced with +sentinel, and the events the core
        # publishes while a first gossip is being fed (held so +sentinel goes out first).
        self._sentinels_announced: set[tuple[str, str]] = set()
        self._held_events: list[tuple[str, str]] | None = None

    # ------------------------------------------------------------------ wiring

    def _link_factory(self, primary: str, address: Address, purpose: str) -> RedisPort:
        p = self.config.primary(primary)
        assert p is not None
        link = RedisLink(
            address,
            username=p.username,
            password=p.password.reveal() if p.password else None,
            ssl=_tls_context(p),
            connect_timeout=max(0.05, min(1.0, p.down_after_ms / 3000)),
            client_name=f"haredis-{self.config.watcher.name}-{purpose}",
        )
        if purpose == "probe" and self.metrics is not None:
            return self.metrics.timed_probe_link(primary, link)
        return link

    def _persist(self, state: DurableState) -> None:
        save_state(self.config.watcher.state_file, state)

    def _peer_route(self, name: str) -> Address | None:
        return self.mesh.routes.get(name) if self.mesh is not None else None

    def _publish(self, channel: str, message: str) -> None:
        if self._held_events is not None:
            self._held_events.append((channel, message))
            return
        if channel == "+config-update-from":
            message = config_update_from(message, self._peer_route)
        level = (
            logging.WARNING if channel.startswith(("-failover-abort", "+odown", "+tilt")) else logging.INFO
        )
        log.log(level, f"{channel} {message}", extra={"event": channel})
        if self.server is not None:
            self.server.publish(channel, message)
        if channel in ("+switch-master", "+failover-summary") and self.runtime is not None:
            primary = message.split(" ", 1)[0]
            epoch = self.runtime.watcher.durable.get(primary).config_epoch
            self.history.observe(channel, message, config_epoch=epoch)
        if self.hooks is not None:
            self.hooks.submit(channel, message)
        if self.metrics is not None and self.runtime is not None:
            self.metrics.observe_event(channel, message, self.runtime.now())

    def _on_peer_message(self, sender: str, message: PeerMessage) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        now = runtime.now()
        if isinstance(message, Gossip):
            self._feed_gossip(runtime, GossipReceived(now=now, gossip=message))
        elif isinstance(message, VoteRequest):
            runtime.feed(VoteRequested(now=now, request=message))
        elif isinstance(message, VoteReply):
            runtime.feed(VoteReplied(now=now, reply=message))

    def _feed_gossip(self, runtime: Runtime, event: GossipReceived) -> None:
        """Feed a peer's gossip. The first one the core accepts about a primary announces the
        peer with Sentinel's discovery event, ``+sentinel sentinel <runid> <ip> <port> @ <master>
        <mip> <mport>`` (the address it advertises, the primary's before this gossip), published
        before whatever the core publishes in reaction (+new-epoch, +config-update-from…), in
        Sentinel's order. Until the peer's address is known (learned from its signed messages)
        the announcement waits for a later gossip."""
        sender = event.gossip.sender
        address = self._peer_route(sender)
        fresh = [v.name for v in event.gossip.primaries if (sender, v.name) not in self._sentinels_announced]
        if address is None or not fresh:
            runtime.feed(event)
            return
        before = runtime.watcher.snapshot()
        held: list[tuple[str, str]] = []
        self._held_events = held
        try:
            runtime.feed(event)
        finally:
            self._held_events = None
        after = runtime.watcher.snapshot()
        for name in fresh:
            was, view = before.primary(name), after.primary(name)
            if was is None or view is None or not any(p.name == sender for p in view.peers):
                continue  # not a primary we watch, or the core refused the sender
            self._sentinels_announced.add((sender, name))
            self._publish("+sentinel", sentinel_subject(sender, address, name, was.address))
        for channel, text in held:
            self._publish(channel, text)

    def _process_facts(self) -> ProcessFacts:
        uname = os.uname()
        clock = time.get_clock_info("monotonic").implementation
        selector = selectors.DefaultSelector.__name__.removesuffix("Selector").lower()  # asyncio's
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        main_thread: tuple[float, float] | None = None
        if hasattr(resource, "RUSAGE_THREAD"):  # INFO runs on the event loop's (main) thread
            thread = resource.getrusage(resource.RUSAGE_THREAD)
            main_thread = (thread.ru_stime, thread.ru_utime)
        w = self.config.watcher
        return ProcessFacts(
            version=__version__,
            os=f"{uname.sysname} {uname.release} {uname.machine}",
            arch_bits=64 if sys.maxsize > 2**32 else 32,
            monotonic_clock="POSIX clock_gettime" if clock.startswith("clock_gettime") else clock,
            multiplexing_api=selector,
            process_id=os.getpid(),
            supervised="systemd" if os.environ.get("NOTIFY_SOCKET") else "no",
            tcp_port=self.server.port if self.server is not None else w.port,
            server_time_usec=time.time_ns() // 1000,
            uptime_seconds=int(time.monotonic() - self._started_at),
            hz=max(1, round(1000 / w.tick_interval_ms)),
            executable=os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else sys.executable,
            config_file=os.path.abspath(self.config_path),
            cpu_sys=own.ru_stime,
            cpu_user=own.ru_utime,
            cpu_sys_children=children.ru_stime,
            cpu_user_children=children.ru_utime,
            cpu_main_thread=main_thread,
        )

    async def _swap_hooks(self, old: Hooks, new: Hooks) -> None:
        await new.start()
        await old.close(SHUTDOWN_GRACE)

    def _runtime(self) -> Runtime:
        assert self.runtime is not None, "the runtime starts before the server"
        return self.runtime

    def _feed_command(self, event: Event) -> None:
        runtime = self._runtime()
        runtime.feed(event)
        runtime.refresh_snapshot()

    def _request_failover(self, name: str) -> str | None:
        runtime = self.runtime
        if runtime is None:
            return "ERR not ready"
        refusal = runtime.watcher.failover_refusal(name)
        if refusal is not None:
            return refusal
        runtime.feed(FailoverCommand(now=runtime.now(), primary=name))
        runtime.refresh_snapshot()
        return None

    def _sentinel_context(self) -> SentinelContext:
        def snapshot() -> Snapshot:
            assert self.runtime is not None
            return self.runtime.snapshot

        def usable(primary: str) -> int:
            if self.mesh is None:
                return 0
            return sum(1 for link in self.mesh.links.values() if link.up)

        def config_get(pattern: str) -> dict[str, str]:
            w = self.config.watcher
            values = {
                "announce-ip": w.advertised.host,
                "announce-port": str(w.advertised.port),
                "resolve-hostnames": "yes",
                "announce-hostnames": "no",
                "loglevel": w.log_level,
            }
            return {k: v for k, v in values.items() if fnmatch.fnmatchcase(k, pattern.lower())}

        return SentinelContext(
            snapshot=snapshot,
            peer_address=self._peer_route,
            request_failover=self._request_failover,
            usable_peers=usable,
            config_get=config_get,
        )

    def _dispatcher(self) -> dict[str, Handler | Command]:
        ctx = self._sentinel_context()

        def sentinel(conn: Connection, args: list[bytes]) -> Reply:
            return sentinel_command(ctx, args[1:])  # args[0] is the command name

        def info(conn: Connection, args: list[bytes]) -> Reply:
            assert self.runtime is not None
            assert self.server is not None
            sections = [a.decode(errors="replace") for a in args[1:]]
            return Bulk(
                info_text(self.runtime.snapshot, self._process_facts(), self.server.census(), sections)
            )

        def role(conn: Connection, args: list[bytes]) -> Reply:
            assert self.runtime is not None
            return role_reply(self.runtime.snapshot)

        def shutdown(conn: Connection, args: list[bytes]) -> Reply:
            return Error("ERR SHUTDOWN is disabled: stop haredis with systemctl (SIGTERM)")

        admin_ctx = AdminContext(
            watcher=lambda: self._runtime().watcher,
            snapshot=lambda: self._runtime().snapshot,
            feed=self._feed_command,
            now=lambda: self._runtime().now(),
            peer_address=ctx.peer_address,
            electorate=self.config.watcher.electorate,
            history=lambda name, limit: self.history.read(name, limit),
        )

        def admin(fn: Callable[[AdminContext, Sequence[bytes]], Reply]) -> Command:
            return Command(lambda conn, args: fn(admin_ctx, args[1:]), arity=0)

        return {
            "HAREDIS.STATUS": admin(admin_status),
            "HAREDIS.FAILOVER": admin(admin_failover),
            "HAREDIS.PAUSE": admin(admin_pause),
            "HAREDIS.RESUME": admin(admin_resume),
            "HAREDIS.HISTORY": admin(admin_history),
            "SENTINEL": Command(sentinel, arity=-2),
            "INFO": info,
            "ROLE": Command(role, arity=1),
            "SHUTDOWN": shutdown,
        }

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> int:
        w = self.config.watcher
        self._log_handle = setup_logging(w.log_level, w.log_format)
        try:
            return await self._serve()
        finally:
            self._log_handle.stop()

    async def _serve(self) -> int:
        w = self.config.watcher
        loop = asyncio.get_running_loop()
        try:
            durable = load_state(w.state_file)
        except StateError as exc:
            log.critical("refusing to start: state file unusable", extra={"error": str(exc)})
            raise PersistenceLost(str(exc)) from None
        try:
            Path(w.data_dir).mkdir(parents=True, exist_ok=True)
            save_state(w.state_file, durable)
        except OSError as exc:
            log.critical("refusing to start: cannot write state", extra={"error": str(exc)})
            raise PersistenceLost(f"{w.state_file}: {exc}") from None

        watcher = Watcher(self.config.to_core(), durable, loop.time())
        secret = w.secret.reveal().encode() if w.secret else b""
        # The boot id orders this process's messages after any earlier incarnation's, so a
        # peer rejects replays of what we sent before a restart.
        signer = PeerSigner(secret or os.urandom(32), w.name, time.time_ns(), origin=w.advertised)
        verifier = PeerVerifier(secret, own_name=w.name)
        self.mesh = PeerMesh(
            list(w.peers),
            signer,
            password=w.client_password.reveal() if w.client_password else None,
            ssl=_peer_tls_context(self.config),
        )
        self.metrics = Metrics(
            lambda: self._runtime().snapshot,
            lambda: self._runtime().watcher.settings,
            stats=lambda: self._runtime().stats,
            rejected=lambda: verifier.rejected,
        )
        self.runtime = Runtime(
            watcher,
            links=self._link_factory,
            peers=self.mesh,
            persist=self._persist,
            publish=self._publish,
            clock=loop.time,
        )
        dispatcher = self._dispatcher()
        dispatcher["HAREDIS.PEER"] = peer_command_handler(verifier, self._on_peer_message, mesh=self.mesh)
        self.server = RespServer(
            dispatcher,
            host=w.bind,
            port=w.port,
            password=w.client_password.reveal() if w.client_password else None,
            server_version=__version__,
            ssl=_server_tls_context(self.config),
            max_clients=w.max_clients,
            idle_timeout=w.client_idle_timeout_ms / 1000,
        )
        self.hooks = self._make_hooks(self.config)
        await self.hooks.start()
        await self.server.start()
        if w.metrics_port:
            self.http = HttpServer(
                host=w.bind,
                port=w.metrics_port,
                registry=self.metrics.registry,
                snapshot=lambda: self._runtime().snapshot,
                last_cycle=lambda: self._last_cycle_done or None,
                ready=lambda: self._ready_sent,
                max_cycle_age=max(2.0, 3 * w.tick_interval_ms / 1000),
                clock=loop.time,
            )
            await self.http.start()
        await self.mesh.start()
        for sig, handler in ((signal.SIGTERM, self._request_stop), (signal.SIGINT, self._request_stop)):
            loop.add_signal_handler(sig, handler)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        log.info(
            "started",
            extra={
                "watcher": w.name,
                "port": self.server.port,
                "peers": len(w.peers),
                "version": __version__,
            },
        )
        try:
            await self._loop()
        finally:
            await self._shutdown()
        if self.runtime.fatal is not None:
            raise PersistenceLost(str(self.runtime.fatal))
        return 0

    def _request_reload(self) -> None:
        self._reload_requested = True

    async def _loop(self) -> None:
        runtime = self.runtime
        assert runtime is not None
        tick = self.config.watcher.tick_interval_ms / 1000
        watchdog_every = systemd.watchdog_interval()
        last_watchdog = 0.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set() and not runtime.stopped.is_set():
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            try:
                status = runtime.cycle()
            except Exception:
                log.exception("cycle failed")
                status = "cycle failed (see log)"
            else:
                self._last_cycle_done = loop.time()
            if status != self._last_status:
                self._last_status = status
                log.info(status, extra={"event": "status"})
                systemd.status(status)
            if not self._ready_sent and runtime.first_cycle_complete():
                self._ready_sent = True
                systemd.ready(status)
                log.info("ready", extra={"event": "ready"})
                settle_collector()
            now = loop.time()
            if watchdog_every and now - last_watchdog >= watchdog_every / 2:
                last_watchdog = now
                systemd.watchdog()
            now = loop.time()
            if now >= next_at:
                next_at += tick
                if next_at < now:
                    next_at = now  # overran: reschedule immediately, don't burst
            # Between regular ticks, wake exactly when the core has something due (a re-probe
            # of an instance refusing connections, a candidacy): a crash is not detected on
            # the tick grid but as soon as the evidence is in.
            wake = runtime.watcher.next_wakeup()
            target = next_at if wake is None else min(next_at, max(wake, now + 0.002))
            await self._nap(max(0.0, target - now))

    def _request_stop(self) -> None:
        self._stop.set()
        if self._nap_waiter is not None:
            _wake(self._nap_waiter)

    async def _nap(self, delay: float) -> None:
        """Wait `delay` seconds, or less if a stop is requested. A bare future and one timer:
        wait_for on the stop Event made a Task and a timeout scope every cycle (alone, at 10
        cycles a second on the 2-core bench machine: 0.23 CPU s/min, against 0.15 for this)."""
        if self._stop.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter = self._nap_waiter = loop.create_future()
        timer = loop.call_later(delay, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._nap_waiter = None

    def _reload(self) -> None:
        systemd.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload rejected: keeping the running config", extra={"error": str(exc)})
            systemd.ready(f"reload rejected: {exc}")
            return
        old = self.config
        runtime = self.runtime
        assert runtime is not None
        try:
            actions = runtime.watcher.reconfigure(new.to_core())
        except ValueError as exc:
            log.error("reload rejected: keeping the running config", extra={"error": str(exc)})
            systemd.ready(f"reload rejected: {exc}")
            return
        runtime.run_actions(actions)
        restart_only = [
            key
            for key in (
                "bind",
                "port",
                "metrics_port",
                "peers",
                "secret",
                "client_password",
                "data_dir",
                "announce",
                "max_clients",
                "client_idle_timeout_ms",
            )
            if getattr(new.watcher, key) != getattr(old.watcher, key)
        ]
        if restart_only:
            log.warning(
                "reload: these keys need a restart and keep their old values", extra={"keys": restart_only}
            )
        self.config = new
        if new.hooks != old.hooks and self.hooks is not None:
            # Hook commands come from the file only; a reload rebuilds them. The old object
            # finishes its running jobs in the background (never stall a cycle on it).
            old_hooks, self.hooks = self.hooks, self._make_hooks(new, self.hooks)
            self._background.add(asyncio.ensure_future(self._swap_hooks(old_hooks, self.hooks)))
        # Links are built from the config on first use: drop those whose credentials changed.
        for p in new.primaries:
            before = old.primary(p.name)
            if before is not None and _credentials(before) != _credentials(p):
                runtime.forget_links(p.name)
        if self._log_handle is not None:
            self._log_handle.set_level(new.watcher.log_level)
        log.info("reloaded", extra={"event": "reload", "file": self.config_path})
        systemd.ready(self._last_status)

    def _make_hooks(self, config: Config, previous: Hooks | None = None) -> Hooks:
        def epoch_of(name: str) -> int | None:
            return self.runtime.watcher.durable.get(name).config_epoch if self.runtime is not None else None

        leading = previous.leading if previous is not None else ()
        return Hooks(
            config.hooks, config.watcher.name, publish=self._publish, epoch_of=epoch_of, leading=leading
        )

    async def _shutdown(self) -> None:
        systemd.stopping()
        log.info("stopping", extra={"event": "stopping"})
        if self.server is not None:
            await self.server.close(SHUTDOWN_GRACE)
        if self.http is not None:
            await self.http.close()
        if self.mesh is not None:
            await self.mesh.close()
        if self.runtime is not None:
            await self.runtime.close(SHUTDOWN_GRACE)
            if self.runtime.fatal is None:
                with contextlib.suppress(OSError):
                    save_state(self.config.watcher.state_file, self.runtime.watcher.durable)
        if self.hooks is not None:
            await self.hooks.close(SHUTDOWN_GRACE)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
