"""Subjective down (haredis/core/detector.py), driven probe by probe on a virtual clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haredis.core.detector import Detector, is_alive_reply
from haredis.core.events import FailureKind

PING = 1.0  # ping period used by the hand-driven tests
DOWN_AFTER = 3.0
CRASH = 0.3  # crash_detect: re-probes every 0.1 s while failing hard

# What one probe gets back: a reply text, a failure kind, or None (the answer is lost).
Outcome = str | FailureKind | None


def drive(
    det: Detector,
    answer: Callable[[float], Outcome],
    *,
    start: float,
    until: float,
    down_after: float = DOWN_AFTER,
    crash_detect: float = CRASH,
    ping_period: float = PING,
    step: float = 0.01,
) -> list[tuple[float, bool]]:
    """Tick every `step` like the watcher does: send a probe when due, answer it at once
    with `answer(t)`, evaluate. Returns (time, down) after every tick."""
    trace: list[tuple[float, bool]] = []
    i = 0
    while True:
        t = round(start + i * step, 9)
        if t > until:
            return trace
        if det.probe_due(t, ping_period, crash_detect, ping_period):
            det.probe_sent(t)
            outcome = answer(t)
            if isinstance(outcome, str):
                det.replied(t, outcome)
            elif isinstance(outcome, FailureKind):
                det.failed(t, outcome, "")
        det.evaluate(t, down_after, crash_detect)
        trace.append((t, det.down))
        i += 1


def first_down(trace: list[tuple[float, bool]]) -> float | None:
    return next((t for t, down in trace if down), None)


def healthy_until(t0: float) -> Callable[[float], Outcome]:
    """PONG before t0; the caller decides what comes after."""
    return lambda t: "PONG" if t < t0 else None


# ---------------------------------------------------------------------------------- replies


@pytest.mark.parametrize(
    "reply",
    [
        "PONG",
        "pong",
        "LOADING Redis is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    ],
)
def test_valid_replies_keep_an_instance_up(reply: str) -> None:
    assert is_alive_reply(reply)
    det = Detector(watched_since=0.0)
    trace = drive(det, lambda t: reply, start=0.0, until=20.0)
    assert first_down(trace) is None
    assert det.last_outcome_ok and det.last_ok is not None and det.last_ok >= 19.0
    assert det.positively_alive()


@pytest.mark.parametrize(
    "reply",
    [
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.",
        "NOAUTH Authentication required.",
        "ERR unknown command 'PING'",
        "READONLY You can't write against a read only replica.",
    ],
)
def test_unhealthy_replies_do_not_refresh_the_instance(reply: str) -> None:
    assert not is_alive_reply(reply)
    det = Detector(watched_since=0.0)
    # Healthy for 2 s, then every probe gets `reply`.
    trace = drive(det, lambda t: "PONG" if t < 2.0 else reply, start=0.0, until=10.0)
    last_pong = 1.0  # probes at 0, 1, 2, ... -> the last PONG answered the probe at 1.0
    first_unanswered = 2.0  # the first probe after it got no valid reply
    assert det.last_ok == last_pong
    assert det.last_error == reply and not det.last_outcome_ok
    assert not det.positively_alive()
    down_at = first_down(trace)
    # Not hard evidence: only the slow path applies, strictly after down_after.
    assert down_at is not None
    assert down_at > first_unanswered + DOWN_AFTER
    assert down_at <= first_unanswered + DOWN_AFTER + 0.011


def test_an_unhealthy_reply_is_not_hard_evidence() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.replied(0.0, "PONG")
    det.probe_sent(1.0)
    det.replied(1.0, "BUSY Redis is busy")
    assert det.hard_fail_since is None
    # The re-probe cadence stays the ping period: BUSY does not start the fast path.
    assert det.probe_interval(PING, CRASH) == PING
    assert not det.evaluate(1.0 + CRASH + 0.01, DOWN_AFTER, CRASH)


# ------------------------------------------------------------------------------- slow path


def test_down_only_after_down_after_since_the_first_unanswered_probe() -> None:
    det = Detector(watched_since=0.0)
    trace = drive(det, lambda t: "PONG" if t < 5.0 else FailureKind.TIMEOUT, start=0.0, until=12.0)
    assert det.last_ok == 4.0
    first_unanswered = 5.0
    down_at = first_down(trace)
    assert down_at is not None
    # Strictly more than down_after: at exactly first_unanswered + down_after it is still up.
    assert dict(trace)[round(first_unanswered + DOWN_AFTER, 9)] is False
    assert first_unanswered + DOWN_AFTER < down_at <= first_unanswered + DOWN_AFTER + 0.011
    assert det.down_since == down_at


def test_a_stall_shorter_than_down_after_is_never_down_whatever_the_probe_phase() -> None:
    # Sentinel's rule, and the reason for it: a Redis that stalls for less than down_after
    # (a fork, a slow command, SIGSTOP) must never be declared down, even if the last good
    # reply is a whole period older than the stall. The probe sent during the stall is
    # answered when it ends (Redis answers what queued up).
    for phase in (0.0, 0.3, 0.7, 0.99):
        det = Detector(watched_since=0.0)
        stall_from, stall_to = 5.0 + phase, 5.0 + phase + DOWN_AFTER - 0.05
        pending: float | None = None  # send time of the probe waiting for the stall to end
        t = 0.0
        while t < 15.0:
            if pending is not None and t >= stall_to:
                det.replied(t, "PONG")
                pending = None
            if pending is None and det.probe_due(t, PING, CRASH, 2 * DOWN_AFTER):
                det.probe_sent(t)
                if stall_from <= t < stall_to:
                    pending = t
                else:
                    det.replied(t, "PONG")
            det.evaluate(t, DOWN_AFTER, CRASH)
            assert not det.down, (phase, t)
            t = round(t + 0.01, 9)


def test_never_answered_instance_is_down_after_down_after_from_watch_start() -> None:
    det = Detector(watched_since=10.0)
    trace = drive(det, lambda t: FailureKind.TIMEOUT, start=10.0, until=20.0, crash_detect=0.0)
    down_at = first_down(trace)
    assert down_at is not None and 13.0 < down_at <= 13.011


def test_no_probe_asked_since_the_last_valid_reply_means_never_down() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.replied(0.5, "PONG")
    # A stray failure without a probe sent after the last valid reply (the watcher stopped
    # probing): no verdict can be drawn, however long we wait.
    det.failed(0.6, FailureKind.TIMEOUT, "")
    for t in (1.0, 3.6, 10.0, 100.0):
        det.evaluate(t, DOWN_AFTER, CRASH)
        assert not det.down
    # Asking starts the clock: down_after later, still unanswered, it is down.
    det.probe_sent(100.0)
    assert not det.evaluate(100.0 + DOWN_AFTER, DOWN_AFTER, CRASH)
    assert det.evaluate(100.0 + DOWN_AFTER + 0.01, DOWN_AFTER, CRASH) and det.down


def test_a_valid_reply_clears_down_at_once() -> None:
    det = Detector(watched_since=0.0)
    drive(det, lambda t: FailureKind.TIMEOUT, start=0.0, until=5.0)
    assert det.down
    det.probe_sent(5.5)
    det.replied(5.5, "LOADING Redis is loading the dataset in memory")
    assert det.evaluate(5.5, DOWN_AFTER, CRASH) is True  # changed
    assert not det.down and det.down_since is None
    assert det.evaluate(5.6, DOWN_AFTER, CRASH) is False  # no further change


# ------------------------------------------------------------------------------- fast path


@pytest.mark.parametrize("kind", [FailureKind.REFUSED, FailureKind.RESET])
def test_hard_failures_for_crash_detect_declare_down_early(kind: FailureKind) -> None:
    det = Detector(watched_since=0.0)
    sent: list[float] = []

    def answer(t: float) -> Outcome:
        if t >= 2.0:
            sent.append(t)
            return kind
        return "PONG"

    trace = drive(det, answer, start=0.0, until=4.0, down_after=30.0)
    down_at = first_down(trace)
    assert down_at is not None
    # First hard failure at 2.0; down once the run has lasted crash_detect, not down_after.
    assert 2.0 + CRASH <= down_at <= 2.0 + CRASH + 0.011
    # Re-probes while failing hard are crash_detect/3 apart; several failures confirm the crash.
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sent)]
    assert gaps and all(abs(g - CRASH / 3) < 0.011 for g in gaps)
    assert len([t for t in sent if t <= down_at]) >= 2


def test_probe_interval_is_a_third_of_crash_detect_only_while_failing_hard() -> None:
    det = Detector(watched_since=0.0)
    assert det.probe_interval(PING, CRASH) == PING
    det.failed(1.0, FailureKind.REFUSED, "")
    assert det.probe_interval(PING, CRASH) == pytest.approx(CRASH / 3)
    # Never slower than the ping period, even with a long crash_detect.
    assert det.probe_interval(PING, 6.0) == PING
    det.replied(1.1, "PONG")
    assert det.probe_interval(PING, CRASH) == PING


def test_crash_detect_zero_disables_the_fast_path() -> None:
    det = Detector(watched_since=0.0)
    trace = drive(
        det, lambda t: "PONG" if t < 2.0 else FailureKind.REFUSED, start=0.0, until=8.0, crash_detect=0.0
    )
    assert det.probe_interval(PING, 0.0) == PING
    down_at = first_down(trace)
    first_unanswered = 2.0
    assert down_at is not None
    assert first_unanswered + DOWN_AFTER < down_at <= first_unanswered + DOWN_AFTER + 0.011


def test_one_reset_then_a_pong_never_declares_down() -> None:
    det = Detector(watched_since=0.0)
    resets: list[float] = []

    def answer(t: float) -> Outcome:
        if t >= 2.0 and not resets:
            resets.append(t)
            return FailureKind.RESET  # a single blip: a killed client connection
        return "PONG"

    trace = drive(det, answer, start=0.0, until=10.0)
    assert resets == [2.0]
    assert first_down(trace) is None
    # The PONG came at the fast re-probe and ended the hard run.
    assert det.hard_fail_since is None and det.last_ok is not None and det.last_ok >= 9.0


def test_a_timeout_breaks_a_run_of_hard_failures() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.replied(0.0, "PONG")
    det.failed(1.0, FailureKind.REFUSED, "")
    det.failed(1.1, FailureKind.TIMEOUT, "")  # hung or partitioned: not proof of death
    assert det.hard_fail_since is None
    det.failed(1.2, FailureKind.REFUSED, "")
    det.failed(1.3, FailureKind.REFUSED, "")
    assert det.hard_fail_since == 1.2
    # 0.3 s after the first REFUSED, but only 0.1 s into the new hard run: not down.
    assert not det.evaluate(1.3, 30.0, CRASH)
    det.failed(1.4, FailureKind.REFUSED, "")
    assert det.evaluate(1.5, 30.0, CRASH) and det.down_since == 1.5


def test_an_error_failure_also_breaks_a_hard_run() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.failed(0.0, FailureKind.REFUSED, "")
    det.failed(0.1, FailureKind.ERROR, "NOAUTH")
    assert det.hard_fail_since is None
    assert det.last_error == "error: NOAUTH"
    assert not det.evaluate(0.5, 30.0, CRASH)


def test_an_answer_in_the_middle_breaks_a_run_of_hard_failures() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.replied(0.0, "PONG")
    det.probe_sent(1.0)
    det.failed(1.0, FailureKind.REFUSED, "")
    det.probe_sent(1.1)
    det.replied(1.1, "BUSY Redis is busy running a script")  # the process is there
    det.probe_sent(1.2)
    det.failed(1.2, FailureKind.REFUSED, "")
    det.probe_sent(1.3)
    det.failed(1.3, FailureKind.REFUSED, "")
    # Not every probe of the last crash_detect failed hard: the fast path must not fire.
    det.evaluate(1.3 + 0.01, 30.0, CRASH)
    assert not det.down


def test_one_hard_failure_and_a_pending_probe_is_not_a_crash() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.replied(0.0, "PONG")
    det.probe_sent(1.0)
    det.failed(1.0, FailureKind.RESET, "")
    det.probe_sent(1.1)  # the re-probe: reconnecting is slow, the answer is not in yet
    # The run has lasted crash_detect, but it is one failure: a blip, not a crash.
    det.evaluate(1.0 + CRASH + 0.01, 30.0, CRASH)
    assert not det.down
    det.evaluate(1.0 + 5 * CRASH, 30.0, CRASH)
    assert not det.down
    # The second hard failure confirms it; the run already lasted crash_detect: down at once.
    det.failed(1.0 + 5 * CRASH, FailureKind.REFUSED, "")
    assert det.evaluate(1.0 + 5 * CRASH, 30.0, CRASH) and det.down


def test_two_hard_failures_inside_crash_detect_are_not_yet_a_crash() -> None:
    det = Detector(watched_since=0.0)
    det.probe_sent(0.0)
    det.replied(0.0, "PONG")
    det.failed(1.0, FailureKind.REFUSED, "")
    det.failed(1.1, FailureKind.RESET, "")
    assert not det.evaluate(1.0 + CRASH - 0.01, 30.0, CRASH)
    assert det.evaluate(1.0 + CRASH, 30.0, CRASH) and det.down_since == 1.0 + CRASH


# --------------------------------------------------------------------------- lost answers


def test_a_lost_probe_answer_does_not_wedge_probing() -> None:
    det = Detector(watched_since=0.0)
    assert det.probe_due(0.0, PING, CRASH, PING)
    det.probe_sent(0.0)
    det.replied(0.0, "PONG")
    det.probe_sent(1.0)  # its answer never comes
    assert not det.probe_due(2.0, PING, CRASH, PING)  # in flight: do not pile up probes
    assert det.last_outcome_ok
    assert det.probe_due(3.0, PING, CRASH, PING)  # after two timeouts the probe counts as lost
    assert not det.last_outcome_ok and det.last_error == "no answer"
    det.probe_sent(3.0)
    det.failed(3.0, FailureKind.TIMEOUT, "")
    # And the silence is eventually a verdict, counted from the first unanswered probe (1.0).
    assert not det.evaluate(1.0 + DOWN_AFTER, DOWN_AFTER, CRASH)
    det.evaluate(1.0 + DOWN_AFTER + 0.01, DOWN_AFTER, CRASH)
    assert det.down


def test_all_answers_lost_still_ends_in_a_verdict() -> None:
    det = Detector(watched_since=0.0)
    trace = drive(det, lambda t: "PONG" if t < 1.0 else None, start=0.0, until=10.0)
    probes_after_first = det.last_probe_sent
    assert probes_after_first is not None and probes_after_first >= 8.0  # still probing
    down_at = first_down(trace)
    assert down_at is not None and down_at <= 1.0 + DOWN_AFTER + 2 * PING + 0.011


# ------------------------------------------------------------------------------- property

_op = st.one_of(
    st.just("probe"),
    st.sampled_from(["PONG", "LOADING x", "MASTERDOWN x", "BUSY x", "NOAUTH x", "ERR x"]),
    st.sampled_from(list(FailureKind)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0.0, 1.5, allow_nan=False), _op), max_size=60),
    down_after=st.sampled_from([0.5, 1.0, 3.0, 5.0]),
    crash_detect=st.sampled_from([0.0, 0.1, 0.25, 1.0]),
)
def test_down_verdict_follows_the_rules_for_any_interleaving(
    steps: list[tuple[float, str | FailureKind]], down_after: float, crash_detect: float
) -> None:
    start = 100.0
    det = Detector(watched_since=start)
    t = start
    ref_last_ok: float | None = None  # last valid reply, tracked here independently
    ref_unanswered: float | None = None  # first probe sent after the last valid reply
    ref_in_flight = False
    ref_outcome_ok = False
    ref_hard_start: float | None = None  # the current run of hard failures, tracked here
    ref_hard_count = 0
    for dt, op in steps:
        t += dt
        if op == "probe":
            det.probe_sent(t)
            ref_in_flight = True
            ref_unanswered = t if ref_unanswered is None else ref_unanswered
        elif isinstance(op, FailureKind):
            det.failed(t, op, "")
            ref_outcome_ok = False
            ref_in_flight = False
            if op in (FailureKind.REFUSED, FailureKind.RESET):
                ref_hard_start = t if ref_hard_start is None else ref_hard_start
                ref_hard_count += 1
            else:
                ref_hard_start, ref_hard_count = None, 0
        else:
            det.replied(t, op)
            ref_in_flight = False
            ref_hard_start, ref_hard_count = None, 0  # any answer ends a hard run
            ref_outcome_ok = is_alive_reply(op)
            if ref_outcome_ok:
                ref_last_ok = t
                ref_unanswered = None
        was = det.down
        changed = det.evaluate(t, down_after, crash_detect)
        assert changed == (was != det.down)
        assert det.last_outcome_ok == ref_outcome_ok and det.last_ok == ref_last_ok

        # The brief's property: a valid reply within down_after, and nothing bad since.
        if ref_outcome_ok and ref_last_ok is not None and t - ref_last_ok <= down_after:
            assert not det.down
        # More generally: a valid reply as the last outcome, nothing in flight, means up.
        if ref_outcome_ok and not ref_in_flight:
            assert not det.down and det.down_since is None
        slow = ref_unanswered is not None and t - ref_unanswered > down_after
        if det.down:
            assert det.down_since is not None and det.down_since <= t
            if crash_detect == 0:
                assert slow  # without the fast path only the slow rule can say down
            elif not slow:
                # The fast path: two or more consecutive hard failures, the run lasting crash_detect.
                assert ref_hard_start is not None and ref_hard_count >= 2
                assert t - ref_hard_start >= crash_detect
        else:
            # Never later than either rule allows.
            assert not (slow and not ref_outcome_ok)
            fast = ref_hard_start is not None and ref_hard_count >= 2 and t - ref_hard_start >= crash_detect
            assert not (crash_detect > 0 and fast)
