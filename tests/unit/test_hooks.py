"""haredis.hooks without real processes or sockets: argv exactly as Sentinel builds it, which
events run what, leader/observer, the webhook body and signature, queue bounds and drops, the
retry policies. The subprocess and HTTP layers are replaced by fakes (``script_runner``,
``http_post``); tests/integration/test_hooks.py runs the real ones."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from haredis import __version__
from haredis.config import EVENTS, WARNING_EVENTS, HooksConfig, Secret, WebhookConfig
from haredis.hooks import (
    NO_INSTANCE_EVENTS,
    Hooks,
    ScriptResult,
    Webhook,
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

NOTIFY = Path("/usr/local/bin/notify")
RECONF = Path("/usr/local/bin/reconf")
MASTER = "master mymaster 10.0.0.10 6379"
SWITCH = "mymaster 10.0.0.10 6379 10.0.0.11 6379"


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition the hooks' tasks make true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class FakeRunner:
    """Records every run; answers with the next exit code (0 when none left), or blocks
    while ``gate`` is clear."""

    def __init__(self, codes: list[int | None] | None = None, *, block: bool = False) -> None:
        self.codes = list(codes or [])
        self.runs: list[tuple[str, ...]] = []
        self.times: list[float] = []
        self.gate = asyncio.Event()
        if not block:
            self.gate.set()

    async def __call__(self, argv: tuple[str, ...], timeout: float) -> ScriptResult:
        self.runs.append(argv)
        self.times.append(asyncio.get_running_loop().time())
        await self.gate.wait()
        code = self.codes.pop(0) if self.codes else 0
        return ScriptResult(returncode=code, stderr=b"boom" if code else b"")


class FakeHttp:
    """Records every POST; answers with the next status (200 when none left); an exception
    instance in ``answers`` is raised instead."""

    def __init__(self, answers: list[int | Exception] | None = None, *, block: bool = False) -> None:
        self.answers = list(answers or [])
        self.posts: list[tuple[int, dict[str, str], bytes]] = []
        self.gate = asyncio.Event()
        if not block:
            self.gate.set()

    async def __call__(self, hook: Webhook, headers: Mapping[str, str], body: bytes) -> int:
        self.posts.append((hook.index, dict(headers), body))
        await self.gate.wait()
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


def scripts(**kw: object) -> HooksConfig:
    return HooksConfig(notification_script=NOTIFY, client_reconfig_script=RECONF, **kw)  # type: ignore[arg-type]


def webhooks(*hooks: WebhookConfig) -> HooksConfig:
    return HooksConfig(webhooks=hooks)


Closer = Callable[[Hooks], Awaitable[None]]


@pytest.fixture
async def closing() -> Callable[[Hooks], Hooks]:
    """Hooks made through this are closed at teardown, even when the test fails."""
    made: list[Hooks] = []

    def track(hooks: Hooks) -> Hooks:
        made.append(hooks)
        return hooks

    yield track  # type: ignore[misc]
    for hooks in made:
        await hooks.close(0.5)


# --- pure helpers ------------------------------------------------------------------------------


def test_warning_events_are_sentinels_plus_haredis_aborts() -> None:
    for event in ("+sdown", "+odown", "+switch-master", "+failover-end", "+tilt", "-script-error"):
        assert is_warning(event)
    assert is_warning("-failover-abort-superseded")
    assert is_warning("-failover-abort-anything-new")
    for event in ("+slave", "+slave-reconf-sent", "+convert-to-slave", "+role-change", "+unknown"):
        assert not is_warning(event)
    assert WARNING_EVENTS <= EVENTS


@pytest.mark.parametrize("event", sorted(WARNING_EVENTS - NO_INSTANCE_EVENTS))
def test_notification_argv_for_every_warning_event_with_an_instance(event: str) -> None:
    assert notification_argv(NOTIFY, event, MASTER) == (str(NOTIFY), event, MASTER)


@pytest.mark.parametrize("event", sorted(NO_INSTANCE_EVENTS | (EVENTS - WARNING_EVENTS)))
def test_no_notification_for_events_without_an_instance_or_below_warning(event: str) -> None:
    assert notification_argv(NOTIFY, event, "#tilt mode entered") is None


def test_reconfig_argv_is_sentinels_vector() -> None:
    assert reconfig_argv(RECONF, SWITCH, leader=True) == (
        str(RECONF),
        "mymaster",
        "leader",
        "start",
        "10.0.0.10",
        "6379",
        "10.0.0.11",
        "6379",
    )
    assert reconfig_argv(RECONF, "m ::1 6379 ::2 6380", leader=False) == (
        str(RECONF),
        "m",
        "observer",
        "start",
        "::1",
        "6379",
        "::2",
        "6380",
    )
    assert reconfig_argv(RECONF, "mymaster 10.0.0.10 6379", leader=True) is None


def test_argv_never_carries_a_nul_byte() -> None:
    argv = notification_argv(NOTIFY, "+sdown", "master m\x00 1.2.3.4 1")
    assert argv is not None and all("\x00" not in arg for arg in argv)


@pytest.mark.parametrize(
    ("event", "message", "master"),
    [
        ("+switch-master", SWITCH, "mymaster"),
        ("+sdown", MASTER, "mymaster"),
        ("+sdown", "slave 10.0.0.11:6379 10.0.0.11 6379 @ mymaster 10.0.0.10 6379", "mymaster"),
        ("+config-update-from", "sentinel w2 @ mymaster 7", "mymaster"),
        ("+sdown", "sentinel abc 10.0.0.3 26379 @ other 10.0.0.20 6379", "other"),
        ("+tilt", "#tilt mode entered", None),
        ("+new-epoch", "7", None),
        ("+vote-for-leader", "w2 7", None),
        ("+switch-master", "", None),
        ("+failover-summary", "mymaster epoch=7 old=10.0.0.10:6379 new=10.0.0.11:6379", "mymaster"),
    ],
)
def test_master_of(event: str, message: str, master: str | None) -> None:
    assert master_of(event, message) == master


def test_script_retry_policy_is_sentinels() -> None:
    assert script_should_retry(1)
    assert script_should_retry(-9)  # killed by a signal (the timeout's SIGKILL included)
    assert script_should_retry(-15)
    for code in (0, 2, 3, 127, 255, None):
        assert not script_should_retry(code)


def test_retry_delays_double_and_stay_bounded() -> None:
    assert [retry_delay(30.0, n) for n in range(1, 6)] == [30.0, 60.0, 120.0, 240.0, 480.0]
    assert retry_delay(0.0, 5) == 0.0
    assert retry_delay(30.0, 10_000) == 86_400.0


def test_webhook_retry_policy() -> None:
    assert webhook_should_retry(None)  # no answer: connection refused, timeout, garbage
    for status in (500, 502, 503, 599):
        assert webhook_should_retry(status)
    for status in (200, 204, 301, 400, 401, 404, 410, 429):
        assert not webhook_should_retry(status)


def test_script_env_keeps_only_harmless_variables() -> None:
    env = script_env(
        {
            "PATH": "/usr/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C",
            "TZ": "UTC",
            "HOME": "/",
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "CREDENTIALS_DIRECTORY": "/run/credentials/haredis.service",
            "REDISCLI_AUTH": "pw",
            "HAREDIS_SECRET": "x",
            "WATCHDOG_USEC": "1000",
            "LISTEN_FDS": "1",
        }
    )
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC", "HOME": "/"}
    assert script_env({})["PATH"]  # a sane PATH even when the daemon had none


def test_the_signature_is_an_hmac_of_the_exact_body() -> None:
    body = webhook_body(
        event="+switch-master",
        message=SWITCH,
        master="mymaster",
        watcher="w1",
        epoch=7,
        timestamp=1700000000.5,
        delivery_id="abc",
    )
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert sign(Secret("k3y"), body) == f"sha256={expected}"
    assert sign(Secret("other"), body) != f"sha256={expected}"
    assert json.loads(body) == {
        "event": "+switch-master",
        "message": SWITCH,
        "master": "mymaster",
        "watcher": "w1",
        "epoch": 7,
        "timestamp": 1700000000.5,
        "id": "abc",
    }


def test_webhook_request_head() -> None:
    hook = Webhook(WebhookConfig(url="https://hooks.example:8443/p/a?t=1"), 0)
    assert (hook.tls, hook.host, hook.port, hook.target) == (True, "hooks.example", 8443, "/p/a?t=1")
    head = hook.request_head({"X-Haredis-Event": "+sdown\r\nX-Evil: 1"}, 12).decode()
    assert head.startswith("POST /p/a?t=1 HTTP/1.1\r\nHost: hooks.example:8443\r\n")
    assert "X-Haredis-Event: +sdownX-Evil: 1\r\n" in head  # no header injection
    assert "Content-Length: 12\r\nConnection: close\r\n\r\n" in head
    # Logs and metrics name it without its path and query (they often hold a token).
    assert hook.name == "https://hooks.example:8443" and "t=1" not in repr(hook)
    plain = Webhook(WebhookConfig(url="http://[::1]/"), 1)
    assert (plain.tls, plain.host, plain.port, plain.target) == (False, "::1", 80, "/")


# --- scripts through Hooks ---------------------------------------------------------------------


async def test_notification_script_runs_only_for_warning_events_with_an_instance(
    closing: Callable[[Hooks], Hooks],
) -> None:
    runner = FakeRunner()
    hooks = closing(Hooks(HooksConfig(notification_script=NOTIFY), "w1", script_runner=runner))
    await hooks.start()
    for event, message in [
        ("+sdown", MASTER),
        ("+slave", "slave 10.0.0.11:6379 10.0.0.11 6379 @ mymaster 10.0.0.10 6379"),
        ("+tilt", "#tilt mode entered"),
        ("-script-error", "/x 0 2"),
        ("+new-epoch", "7"),
        ("+switch-master", SWITCH),
        ("+role-change", MASTER + " new reported role is master"),
    ]:
        hooks.submit(event, message)
    await until(lambda: hooks.ran == 3 and hooks.queued_scripts == 0)
    assert sorted(runner.runs) == sorted(
        [
            (str(NOTIFY), "+sdown", MASTER),
            (str(NOTIFY), "+new-epoch", "7"),
            (str(NOTIFY), "+switch-master", SWITCH),
        ]
    )


async def test_reconfig_role_follows_the_events(closing: Callable[[Hooks], Hooks]) -> None:
    runner = FakeRunner()
    hooks = closing(Hooks(HooksConfig(client_reconfig_script=RECONF), "w1", script_runner=runner))
    await hooks.start()

    def roles() -> list[str]:
        return [argv[2] for argv in runner.runs]

    # Led here: +elected-leader … +promoted-slave, +switch-master.
    for event, message in [
        ("+try-failover", MASTER),
        ("+elected-leader", MASTER),
        ("+failover-state-select-slave", MASTER),
        ("+selected-slave", "slave 10.0.0.11:6379 10.0.0.11 6379 @ mymaster 10.0.0.10 6379"),
        ("+promoted-slave", "slave 10.0.0.11:6379 10.0.0.11 6379 @ mymaster 10.0.0.10 6379"),
        ("+switch-master", SWITCH),
    ]:
        hooks.submit(event, message)
    await until(lambda: len(runner.runs) == 1)
    assert hooks.leading == {"mymaster"}
    hooks.submit("+failover-end", "master mymaster 10.0.0.11 6379")
    assert hooks.leading == frozenset()
    # Another watcher's topology adopted: observer.
    hooks.submit("+config-update-from", "sentinel w2 @ mymaster 8")
    hooks.submit("+switch-master", "mymaster 10.0.0.11 6379 10.0.0.10 6379")
    await until(lambda: len(runner.runs) == 2)
    # Elected, but a newer topology won before we promoted: observer, and no longer leading.
    hooks.submit("+elected-leader", "master mymaster 10.0.0.10 6379")
    hooks.submit("+config-update-from", "sentinel w3 @ mymaster 10")
    hooks.submit("+switch-master", SWITCH)
    hooks.submit("-failover-abort-superseded", "master mymaster 10.0.0.11 6379")
    await until(lambda: len(runner.runs) == 3)
    # Leading one master says nothing about another.
    hooks.submit("+elected-leader", "master other 10.0.0.20 6379")
    hooks.submit("+switch-master", "mymaster 10.0.0.11 6379 10.0.0.12 6379")
    await until(lambda: len(runner.runs) == 4)
    # The caller may say it outright.
    hooks.submit("+switch-master", SWITCH, leader=True)
    await until(lambda: len(runner.runs) == 5)
    assert roles() == ["leader", "observer", "observer", "observer", "leader"]
    assert runner.runs[0] == (
        str(RECONF),
        "mymaster",
        "leader",
        "start",
        "10.0.0.10",
        "6379",
        "10.0.0.11",
        "6379",
    )


async def test_leading_survives_a_rebuild(closing: Callable[[Hooks], Hooks]) -> None:
    old = closing(Hooks(HooksConfig(client_reconfig_script=RECONF), "w1", script_runner=FakeRunner()))
    old.submit("+elected-leader", MASTER)
    await old.close(0.1)
    runner = FakeRunner()
    new = closing(
        Hooks(HooksConfig(client_reconfig_script=RECONF), "w1", script_runner=runner, leading=old.leading)
    )
    await new.start()
    new.submit("+switch-master", SWITCH)
    await until(lambda: len(runner.runs) == 1)
    assert runner.runs[0][2] == "leader"


async def test_script_queue_is_bounded_and_drops_the_oldest_waiting_job(
    closing: Callable[[Hooks], Hooks],
) -> None:
    runner = FakeRunner(block=True)
    hooks = closing(
        Hooks(
            HooksConfig(notification_script=NOTIFY),
            "w1",
            script_runner=runner,
            max_running=2,
            script_queue_size=4,
        )
    )
    await hooks.start()
    for n in range(2):
        hooks.submit("+sdown", f"master m{n} 10.0.0.{n} 6379")
    await until(lambda: hooks.running_scripts == 2)
    for n in range(2, 7):
        hooks.submit("+sdown", f"master m{n} 10.0.0.{n} 6379")
    # 2 running (never dropped) + 2 waiting; m2, m3 and m4 went, oldest first.
    assert (hooks.running_scripts, hooks.queued_scripts, hooks.dropped) == (2, 4, 3)
    waiting = [p.argv[2] for p in hooks.pending_scripts() if not p.running]
    assert waiting == ["master m5 10.0.0.5 6379", "master m6 10.0.0.6 6379"]
    assert [p.retry_num for p in hooks.pending_scripts()] == [1, 1, 0, 0]
    runner.gate.set()
    await until(lambda: hooks.queued_scripts == 0)
    assert hooks.ran == 4
    assert [argv[2].split()[1] for argv in runner.runs] == ["m0", "m1", "m5", "m6"]


async def test_at_most_max_running_scripts_at_once(closing: Callable[[Hooks], Hooks]) -> None:
    runner = FakeRunner(block=True)
    hooks = closing(Hooks(HooksConfig(notification_script=NOTIFY), "w1", script_runner=runner))
    await hooks.start()
    for n in range(40):
        hooks.submit("+sdown", f"master m{n} 10.0.0.1 6379")
    await until(lambda: hooks.running_scripts == 16)
    await asyncio.sleep(0.05)
    assert (hooks.running_scripts, len(runner.runs), hooks.queued_scripts) == (16, 16, 40)
    runner.gate.set()
    await until(lambda: hooks.ran == 40 and hooks.queued_scripts == 0)


async def test_exit_1_is_retried_with_doubling_delays_then_given_up(
    closing: Callable[[Hooks], Hooks],
) -> None:
    published: list[tuple[str, str]] = []
    runner = FakeRunner([1, 1, 1, 1])
    hooks = closing(
        Hooks(
            scripts(script_max_retries=3, script_retry_delay_ms=40),
            "w1",
            script_runner=runner,
            publish=lambda c, m: published.append((c, m)),
        )
    )
    await hooks.start()
    hooks.submit("+odown", MASTER + " #quorum 2/2")
    await until(lambda: hooks.failed == 1)
    assert (hooks.ran, hooks.retried, hooks.failed, hooks.queued_scripts) == (4, 3, 1, 0)
    gaps = [b - a for a, b in zip(runner.times, runner.times[1:], strict=False)]
    for gap, least in zip(gaps, (0.04, 0.08, 0.16), strict=True):
        assert gap >= least * 0.9, gaps
    assert gaps[0] < gaps[1] < gaps[2]
    assert published == [("-script-error", f"{NOTIFY} 0 1")]


async def test_exit_1_then_success(closing: Callable[[Hooks], Hooks]) -> None:
    runner = FakeRunner([1, 0])
    hooks = closing(Hooks(scripts(script_retry_delay_ms=1), "w1", script_runner=runner))
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.queued_scripts == 0)
    assert (hooks.ran, hooks.retried, hooks.failed) == (2, 1, 0)


@pytest.mark.parametrize(("code", "error"), [(2, "0 2"), (3, "0 3"), (None, "0 2")])
async def test_exit_2_or_more_is_not_retried(
    closing: Callable[[Hooks], Hooks], code: int | None, error: str
) -> None:
    published: list[tuple[str, str]] = []
    runner = FakeRunner([code])
    hooks = closing(
        Hooks(
            scripts(script_retry_delay_ms=1),
            "w1",
            script_runner=runner,
            publish=lambda c, m: published.append((c, m)),
        )
    )
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.failed == 1)
    await asyncio.sleep(0.02)
    assert (hooks.ran, hooks.retried, hooks.failed) == (1, 0, 1)
    assert published == [("-script-error", f"{NOTIFY} {error}")]


async def test_killed_by_a_signal_is_retried(closing: Callable[[Hooks], Hooks]) -> None:
    published: list[tuple[str, str]] = []
    runner = FakeRunner([-9, -9])
    hooks = closing(
        Hooks(
            scripts(script_max_retries=1, script_retry_delay_ms=1),
            "w1",
            script_runner=runner,
            publish=lambda c, m: published.append((c, m)),
        )
    )
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.failed == 1)
    assert (hooks.ran, hooks.retried) == (2, 1)
    assert published == [("-script-error", f"{NOTIFY} 9 0")]


async def test_failures_are_logged_with_the_scripts_output(
    closing: Callable[[Hooks], Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    hooks = closing(Hooks(scripts(), "w1", script_runner=FakeRunner([2])))
    await hooks.start()
    with caplog.at_level(logging.DEBUG, logger="haredis.hooks"):
        hooks.submit("+sdown", MASTER)
        await until(lambda: hooks.failed == 1)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    fields = record.haredis_fields
    assert (fields["script"], fields["exit"], fields["stderr"]) == (str(NOTIFY), 2, "boom")


async def test_close_drops_waiting_jobs_and_ignores_later_events(closing: Callable[[Hooks], Hooks]) -> None:
    runner = FakeRunner(block=True)
    hooks = closing(Hooks(scripts(), "w1", script_runner=runner, max_running=1))
    await hooks.start()
    for _ in range(3):
        hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.running_scripts == 1)
    await hooks.close(0.05)  # the blocked run is cancelled after the grace
    assert (hooks.dropped, hooks.queued_scripts) == (2, 0)
    hooks.submit("+sdown", MASTER)
    assert hooks.queued_scripts == 0
    await hooks.close(0.05)  # twice is fine


async def test_submit_never_raises(closing: Callable[[Hooks], Hooks]) -> None:
    def broken(master: str) -> int:
        raise RuntimeError("no epoch")

    http = FakeHttp()
    hooks = closing(
        Hooks(webhooks(WebhookConfig(url="http://127.0.0.1:1/")), "w1", epoch_of=broken, http_post=http)
    )
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.webhooks[0].delivered == 1)
    assert json.loads(http.posts[0][2])["epoch"] is None


# --- webhooks through Hooks --------------------------------------------------------------------


async def test_webhook_body_headers_and_signature(closing: Callable[[Hooks], Hooks]) -> None:
    http = FakeHttp()
    config = webhooks(
        WebhookConfig(url="http://127.0.0.1:1/a", secret=Secret("k3y")),
        WebhookConfig(url="http://127.0.0.1:2/b"),
    )
    hooks = closing(
        Hooks(config, "w1", http_post=http, epoch_of=lambda name: 7 if name == "mymaster" else None)
    )
    await hooks.start()
    before = time.time()
    hooks.submit("+switch-master", SWITCH)
    await until(lambda: len(http.posts) == 2)
    (_, signed, body), (_, unsigned, body2) = sorted(http.posts, key=lambda p: p[0])
    assert body == body2  # one event, one body (and one id) for every webhook
    document = json.loads(body)
    assert document["event"] == "+switch-master" and document["message"] == SWITCH
    assert (document["master"], document["watcher"], document["epoch"]) == ("mymaster", "w1", 7)
    assert before <= document["timestamp"] <= time.time()
    assert signed == {
        "Content-Type": "application/json",
        "User-Agent": f"haredis/{__version__}",
        "X-Haredis-Event": "+switch-master",
        "X-Haredis-Delivery": document["id"],
        "X-Haredis-Signature": "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest(),
    }
    assert "X-Haredis-Signature" not in unsigned
    assert [hook.delivered for hook in hooks.webhooks] == [1, 1]


async def test_webhook_epoch_from_the_event_itself(closing: Callable[[Hooks], Hooks]) -> None:
    http = FakeHttp()
    hooks = closing(Hooks(webhooks(WebhookConfig(url="http://h/", events=("*",))), "w1", http_post=http))
    await hooks.start()
    hooks.submit("+new-epoch", "12")
    hooks.submit("+vote-for-leader", "w2 13")
    hooks.submit("+tilt", "#tilt mode entered")
    hooks.submit("+failover-summary", "mymaster epoch=14 old=10.0.0.10:6379 reason=odown")
    await until(lambda: len(http.posts) == 4)
    assert [json.loads(p[2])["epoch"] for p in http.posts] == [12, 13, None, 14]
    assert [json.loads(p[2])["master"] for p in http.posts] == [None, None, None, "mymaster"]


async def test_webhook_event_filter(closing: Callable[[Hooks], Hooks]) -> None:
    http = FakeHttp()
    config = webhooks(
        WebhookConfig(url="http://h/default"),
        WebhookConfig(url="http://h/some", events=("+switch-master", "+slave")),
        WebhookConfig(url="http://h/all", events=("*",)),
    )
    hooks = closing(Hooks(config, "w1", http_post=http))
    await hooks.start()
    for event in ("+sdown", "+slave", "+switch-master", "+tilt", "-failover-abort-superseded"):
        hooks.submit(event, MASTER)
    await until(lambda: sum(h.delivered for h in hooks.webhooks) == 4 + 2 + 5)
    got: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for index, headers, _ in http.posts:
        got[index].append(headers["X-Haredis-Event"])
    assert got[0] == ["+sdown", "+switch-master", "+tilt", "-failover-abort-superseded"]
    assert got[1] == ["+slave", "+switch-master"]
    assert len(got[2]) == 5


async def test_webhook_queue_is_bounded_and_drops_the_oldest(closing: Callable[[Hooks], Hooks]) -> None:
    http = FakeHttp(block=True)
    hooks = closing(Hooks(webhooks(WebhookConfig(url="http://h/", queue_size=3)), "w1", http_post=http))
    await hooks.start()
    hooks.submit("+sdown", "master m0 1.1.1.1 1")
    await until(lambda: len(http.posts) == 1)  # in flight, out of the queue
    for n in range(1, 7):
        hooks.submit("+sdown", f"master m{n} 1.1.1.1 1")
    hook = hooks.webhooks[0]
    assert (hook.queued, hook.dropped) == (3, 3)
    http.gate.set()
    await until(lambda: hook.delivered == 4)
    assert [json.loads(p[2])["master"] for p in http.posts] == ["m0", "m4", "m5", "m6"]


async def test_webhook_retries_5xx_and_errors_with_backoff_but_not_4xx(
    closing: Callable[[Hooks], Hooks],
) -> None:
    http = FakeHttp([500, ConnectionRefusedError(111, "refused"), TimeoutError(), 200, 404])
    hooks = closing(Hooks(webhooks(WebhookConfig(url="http://h/", retry_delay_ms=20)), "w1", http_post=http))
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    hooks.submit("+odown", MASTER)
    hook = hooks.webhooks[0]
    await until(lambda: hook.delivered + hook.failed == 2)
    assert (hook.delivered, hook.failed, hook.retried) == (1, 1, 3)
    ids = [p[1]["X-Haredis-Delivery"] for p in http.posts]
    assert len(set(ids[:4])) == 1 and ids[4] != ids[0]  # retries keep the delivery id


async def test_webhook_gives_up_after_max_retries(closing: Callable[[Hooks], Hooks]) -> None:
    http = FakeHttp([503] * 10)
    config = webhooks(WebhookConfig(url="http://h/", max_retries=2, retry_delay_ms=1))
    hooks = closing(Hooks(config, "w1", http_post=http))
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    hook = hooks.webhooks[0]
    await until(lambda: hook.failed == 1)
    assert (len(http.posts), hook.retried, hook.delivered) == (3, 2, 0)


async def test_close_cuts_a_webhook_backoff_short(closing: Callable[[Hooks], Hooks]) -> None:
    http = FakeHttp([503] * 10)
    config = webhooks(WebhookConfig(url="http://h/", retry_delay_ms=60_000))
    hooks = closing(Hooks(config, "w1", http_post=http))
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    hooks.submit("+odown", MASTER)
    hook = hooks.webhooks[0]
    await until(lambda: hook.retried == 1)
    started = time.monotonic()
    await hooks.close(5.0)
    assert time.monotonic() - started < 2.0
    assert hook.failed >= 1 and hook.queued == 0
    assert hook.failed + hook.dropped + hook.delivered == 2


async def test_nothing_configured_nothing_runs(closing: Callable[[Hooks], Hooks]) -> None:
    hooks = closing(Hooks(HooksConfig(), "w1"))
    assert not hooks.config.enabled
    await hooks.start()
    hooks.submit("+switch-master", SWITCH)
    assert (hooks.queued_scripts, hooks.ran) == (0, 0)


def test_secrets_never_print() -> None:
    config = webhooks(WebhookConfig(url="https://h/x?token=abc", secret=Secret("k3y")))
    hooks = Hooks(config, "w1")
    for text in (repr(config), str(config), repr(hooks.webhooks), repr(hooks.webhooks[0].config)):
        assert "k3y" not in text
