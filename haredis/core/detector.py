"""Subjective down: is one Redis instance down, as seen by this watcher alone?

Rules (all times are the core's own clock, see watcher.py):

* A valid reply is PONG, LOADING or MASTERDOWN: the process is there and answering.
  Anything else (BUSY, NOAUTH, …) is an answer but not a healthy one: it does not refresh
  `last_ok`, and it is not hard evidence of death either.
* Slow path (Sentinel's rule): the instance is down once a probe has gone unanswered for
  `down_after`, counted from the FIRST probe sent after the last valid reply. A pause or a
  stall shorter than down_after therefore never makes an instance down, however the probe
  timing falls. Probes go out every `ping_period` (down_after/10, between 0.1 s and 1 s), so
  a hang is declared at most down_after + ping_period after the last good reply. A probe
  times out after `probe_timeout` and is retried; the retries do not reset the clock.
* Fast path: a refused or reset connection is hard evidence the process is gone. Once at
  least two consecutive probes have failed hard and the run has lasted `crash_detect`, the
  instance is down without waiting for down_after. While failing hard we re-probe every
  crash_detect/3. Any answer (even BUSY) or a timeout ends the run: a single blip (a killed
  client connection, a listener restart) followed by an unanswered re-probe is not a crash.
* Any valid reply clears down at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from haredis.core.events import FailureKind

# Replies that prove the instance is up. LOADING: a restarted Redis reading its dataset.
# MASTERDOWN: a replica whose link is down and replica-serve-stale-data is off.
_ALIVE_REPLIES = ("PONG", "LOADING", "MASTERDOWN")
_HARD_FAILURES_FOR_CRASH = 2


def is_alive_reply(reply: str) -> bool:
    # PONG first: it is nearly every reply, and the only one that needs no upper().
    return reply == "PONG" or reply.upper().startswith(_ALIVE_REPLIES)


@dataclass(slots=True)
class Detector:
    """Probe bookkeeping and the down verdict for one instance."""

    watched_since: float  # when we started watching
    last_ok: float | None = None
    unanswered_since: float | None = None  # first probe sent after the last valid reply
    last_probe_sent: float | None = None
    in_flight_since: float | None = None
    hard_fail_since: float | None = None  # first of the current run of hard failures
    hard_fail_count: int = 0  # length of that run
    last_outcome_ok: bool = False  # was the most recent probe outcome a valid reply?
    last_error: str = ""
    down_since: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def probe_interval(self, ping_period: float, crash_detect: float) -> float:
        if self.hard_fail_since is not None and crash_detect > 0:
            return min(ping_period, crash_detect / 3.0)
        return ping_period

    def probe_due(self, now: float, ping_period: float, crash_detect: float, timeout: float) -> bool:
        if self.in_flight_since is not None:
            # The executor answers every probe; this only guards against a lost answer
            # (a watcher restart, a bug) wedging the instance forever.
            if now - self.in_flight_since < 2.0 * timeout:
                return False
            self.in_flight_since = None
            self.last_outcome_ok = False
            self.last_error = "no answer"

        if self.last_probe_sent is None:
            return True
        return now - self.last_probe_sent >= self.probe_interval(ping_period, crash_detect)

    def probe_sent(self, now: float) -> None:
        self.last_probe_sent = now
        self.in_flight_since = now
        if self.unanswered_since is None:
            self.unanswered_since = now

    def replied(self, now: float, reply: str) -> None:
        self.in_flight_since = None
        if is_alive_reply(reply):
            self.last_ok = now
            self.last_outcome_ok = True
            self.last_error = ""
            self.unanswered_since = None
        else:
            self.last_outcome_ok = False
            self.last_error = reply
        # Any answer proves a process is there: it ends a run of hard failures.
        self.hard_fail_since = None
        self.hard_fail_count = 0

    def failed(self, now: float, kind: FailureKind, detail: str) -> None:
        self.in_flight_since = None
        self.last_outcome_ok = False
        self.last_error = f"{kind.value}: {detail}" if detail else kind.value
        if kind.is_hard:
            if self.hard_fail_since is None:
                self.hard_fail_since = now
            self.hard_fail_count += 1
        else:
            self.hard_fail_since = None
            self.hard_fail_count = 0

    def evaluate(self, now: float, down_after: float, crash_detect: float) -> bool:
        """Update and return the down verdict. Returns True when it CHANGED."""
        was_down = self.down
        down = self._is_down(now, down_after, crash_detect)
        if down and not was_down:
            self.down_since = now
        elif not down and was_down:
            self.down_since = None
        return down != was_down

    def _is_down(self, now: float, down_after: float, crash_detect: float) -> bool:
        if self.last_outcome_ok and self.in_flight_since is None:
            return False
        if (
            crash_detect > 0
            and self.hard_fail_since is not None
            and self.hard_fail_count >= _HARD_FAILURES_FOR_CRASH
            and now - self.hard_fail_since >= crash_detect
        ):
            return True
        return self.unanswered_too_long(now, down_after)

    def unanswered_too_long(self, now: float, down_after: float) -> bool:
        """The slow path's rule: a probe has gone unanswered for more than down_after."""
        return self.unanswered_since is not None and now - self.unanswered_since > down_after

    def positively_alive(self) -> bool:
        """The last thing we heard was a valid reply: we would not vote this instance down."""
        return self.last_outcome_ok and not self.down
