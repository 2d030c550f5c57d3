"""Runs one schedule end to end: rig up, observers and writer on, faults, heal, converge, check.

A schedule body is a function ``body(session)`` that applies faults through ``session.rig``
(and may add its own checks to ``session.result``). Whatever the body does or raises, the
session then heals everything (network flushed, paused processes resumed, dead processes
started again), stops the writer, waits (bounded) for one agreed primary and runs the checker.
The rig is torn down in every case.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import checker
from .checker import Result
from .observers import EpochSampler, WriteProber
from .rig import CLIENT_HOST, REDIS_HOSTS, WATCHER_HOSTS, WATCHER_PORT, Rig, RigConfig

REPO = Path(__file__).resolve().parents[2]
WARMUP_S = 3.0  # writer start-up (imports, discovery) and writes before the first fault
AFTER_HEAL_WRITES_S = 2.0  # the writer keeps going this long after the heal
CONVERGE_TIMEOUT_S = 25.0  # one agreed primary within this, or it is a violation
OBSERVER_MAX_S = 180.0  # hard bound on every observer thread
WRITE_RATE = 200.0


class Session:
    def __init__(self, rig: Rig, result: Result) -> None:
        self.rig = rig
        self.result = result
        self.probers = {
            n: WriteProber(rig.hosts[n].ns, rig.hosts[n].ip, n, OBSERVER_MAX_S) for n in REDIS_HOSTS
        }
        self.samplers = {
            n: EpochSampler(rig.hosts[n].ns, rig.hosts[n].ip, n, OBSERVER_MAX_S) for n in WATCHER_HOSTS
        }
        self.writes_path = rig.hosts[CLIENT_HOST].workdir / "writes.jsonl"
        # A scenario's own checks that need the converged cluster (run only when it converged).
        self.after_converge: list[Callable[[], None]] = []

    # -------------------------------------------------------------------- helpers for bodies

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def primary(self) -> str:
        """The primary most watchers name now (r1 if none answers)."""
        return self.rig.current_primary_guess() or "r1"

    def restart_redis(self, name: str) -> None:
        """Start a dead node again, empty, following the primary the watchers name (or as a
        primary when they still name this node: the restart-empty hazard, on purpose)."""
        guess = self.rig.current_primary_guess()
        follow = self.rig.hosts[guess].ip if guess is not None and guess != name else None
        self.rig.restart_redis(name, follow=follow)

    def expect(self, condition: bool, text: str) -> None:
        """A scenario's own invariant: a violation when it does not hold."""
        if not condition:
            self.result.violations.append(text)

    # -------------------------------------------------------------------- the run

    def start(self) -> None:
        for obs in [*self.probers.values(), *self.samplers.values()]:
            obs.start()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        sentinels = []
        for w in WATCHER_HOSTS:
            sentinels += ["--sentinel", f"{self.rig.hosts[w].ip}:{WATCHER_PORT}"]
        self.rig.hosts[CLIENT_HOST].spawn(
            [sys.executable, "-m", "tests.chaos.writer", *sentinels, "--rate", str(WRITE_RATE),
             "--duration", "600", "--out", str(self.writes_path)],
            env=env,
        )  # fmt: skip
        time.sleep(WARMUP_S)

    def heal_all(self) -> None:
        rig = self.rig
        rig.heal()
        rig.resume_all()
        for name in WATCHER_HOSTS:
            if not rig.hosts[name].running():
                rig.event(f"start watcher {name} again")
                rig.spawn_watcher(name)
        for name in REDIS_HOSTS:
            if not rig.hosts[name].running():
                self.restart_redis(name)

    def finish(self) -> None:
        rig, result = self.rig, self.result
        time.sleep(AFTER_HEAL_WRITES_S)
        writer = rig.hosts[CLIENT_HOST]
        writer.signal(signal.SIGTERM)
        if writer.popen is not None:
            try:
                writer.popen.wait(5)
            except Exception:
                writer.kill()
        final = rig.wait_agreement(CONVERGE_TIMEOUT_S)
        for obs in [*self.probers.values(), *self.samplers.values()]:
            obs.stop()
        result.final_primary = final
        if final is None:
            result.violations.append(f"not exactly one primary after healing: {rig.topology()}")
            for name in WATCHER_HOSTS:
                result.notes.append(f"failover outlook {rig.failover_outlook(name)}")
        if final is not None:
            for check in self.after_converge:
                check()
        claims = checker.leader_claims(rig)
        result.failovers = len({c.epoch for c in claims})
        result.blind_promotions = checker.blind_promotions(rig)
        result.violations += checker.check_leaders(rig, claims)
        result.violations += checker.check_minority(rig, claims)
        result.violations += checker.check_epochs({n: s.samples for n, s in self.samplers.items()})
        result.split_brain_s = round(
            checker.longest_split_brain({n: p.samples for n, p in self.probers.items()}), 3
        )
        keys: set[int] | None = None
        if final is not None:
            with contextlib.suppress(Exception):
                keys = checker.final_keys(rig, final)
        restarts = checker.empty_restarts(rig.events)
        checker.check_writes(result, checker.WriteLog.read(self.writes_path), keys, restarts)


def run(
    name: str,
    body: Callable[[Session], None],
    config: RigConfig,
    replay: str,
    keep_dir: Path | None = None,
) -> Result:
    result = Result(name=name, replay=replay)
    began = time.monotonic()
    rig = Rig(config, label=name.replace(":", "-"))
    try:
        with rig:
            session = Session(rig, result)
            session.start()
            try:
                body(session)
            finally:
                if not rig.closed:  # a signal handler tears the rig down before unwinding
                    session.heal_all()
            session.finish()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.violations.append(f"schedule could not be checked: {type(exc).__name__}: {exc}")
        result.notes.append(traceback.format_exc(limit=6))
    finally:
        result.events = [f"{t - rig.net_timeline[0][0]:7.2f}s {text}" for t, text in rig.events]
        result.seconds = round(time.monotonic() - began, 1)
        if keep_dir is not None and (result.violations or os.environ.get("CHAOS_KEEP_LOGS")):
            _keep_logs(rig, keep_dir / name.replace(":", "-"))
        _remove_tree(rig.workdir)
    return result


def _keep_logs(rig: Rig, dest: Path) -> None:
    """Copy the logs of a failed schedule somewhere that survives the teardown."""
    import shutil

    with contextlib.suppress(Exception):
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(rig.workdir, dest, ignore=shutil.ignore_patterns("*.rdb", "secret"))


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
