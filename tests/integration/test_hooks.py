"""haredis.hooks with real processes and real sockets (loopback only): scripts written to
tmp_path that record their argv, a hanging script killed at the timeout, Sentinel's retry
rule, and webhooks received by a small HTTP server in the test. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from haredis import __version__
from haredis.config import HooksConfig, Secret, WebhookConfig
from haredis.hooks import Hooks

MASTER = "master mymaster 127.0.0.1 6379"
SWITCH = "mymaster 127.0.0.1 6379 127.0.0.1 6380"


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def script(path: Path, body: str) -> Path:
    """A Python script (absolute shebang: scripts run with a minimal PATH)."""
    path.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    path.chmod(0o755)
    return path


def recorder(tmp_path: Path, name: str = "record", exit_code: int = 0) -> tuple[Path, Path]:
    """A script appending its argv (and pid, environment) as one JSON line per run."""
    out = tmp_path / f"{name}.jsonl"
    path = script(
        tmp_path / name,
        f"""
with open({str(out)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "pid": os.getpid(), "env": dict(os.environ),
                        "cwd": os.getcwd(), "t": time.monotonic()}}) + "\\n")
print("out: ran")
print("err: ran", file=sys.stderr)
sys.exit({exit_code})
""",
    )
    return path, out


def runs(out: Path) -> list[dict[str, object]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture
async def made() -> AsyncIterator[list[Hooks]]:
    hooks: list[Hooks] = []
    yield hooks
    for h in hooks:
        await h.close(1.0)


# --- scripts -----------------------------------------------------------------------------------


async def test_notification_script_gets_event_and_message(tmp_path: Path, made: list[Hooks]) -> None:
    path, out = recorder(tmp_path)
    hooks = Hooks(
        HooksConfig(notification_script=path), "w1", environ={"PATH": "/usr/bin", "NOTIFY_SOCKET": "/x"}
    )
    made.append(hooks)
    await hooks.start()
    hooks.submit("+slave", "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379")  # NOTICE
    hooks.submit("+tilt", "#tilt mode entered")  # no instance
    hooks.submit("+odown", MASTER + " #quorum 2/2")
    await until(lambda: hooks.ran == 1 and hooks.queued_scripts == 0)
    await asyncio.sleep(0.1)
    (run,) = runs(out)
    assert run["argv"] == [str(path), "+odown", MASTER + " #quorum 2/2"]
    env = run["env"]
    assert isinstance(env, dict) and env["PATH"] == "/usr/bin"
    assert set(env) <= {"PATH", "LC_CTYPE"}  # LC_CTYPE: Python's own C-locale coercion (PEP 538)
    assert run["cwd"] == "/"
    assert (hooks.failed, hooks.retried) == (0, 0)


async def test_script_inherits_no_descriptor(tmp_path: Path, made: list[Hooks]) -> None:
    out = tmp_path / "fds.json"
    path = script(
        tmp_path / "fds", f"json.dump(sorted(os.listdir('/proc/self/fd')), open({str(out)!r}, 'w'))"
    )
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)  # even an inheritable descriptor stays behind
    try:
        hooks = Hooks(HooksConfig(notification_script=path), "w1")
        made.append(hooks)
        await hooks.start()
        hooks.submit("+sdown", MASTER)
        await until(lambda: hooks.ran == 1 and hooks.queued_scripts == 0)
    finally:
        os.close(leaked)
    fds = {int(fd) for fd in json.loads(out.read_text())}
    assert fds <= {0, 1, 2, 3}  # stdio, and the one json.dump has open on the output file


async def test_reconfig_script_as_leader_and_as_observer(tmp_path: Path, made: list[Hooks]) -> None:
    path, out = recorder(tmp_path)
    hooks = Hooks(HooksConfig(client_reconfig_script=path), "w1")
    made.append(hooks)
    await hooks.start()
    # This watcher leads the failover.
    hooks.submit("+elected-leader", MASTER)
    hooks.submit("+promoted-slave", "slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379")
    hooks.submit("+switch-master", SWITCH)
    hooks.submit("+failover-end", "master mymaster 127.0.0.1 6380")
    await until(lambda: len(runs(out)) == 1)
    # Another watcher's topology, learnt by gossip.
    hooks.submit("+config-update-from", "sentinel w2 @ mymaster 9")
    hooks.submit("+switch-master", "mymaster 127.0.0.1 6380 127.0.0.1 6381")
    await until(lambda: len(runs(out)) == 2)
    first, second = runs(out)
    assert first["argv"] == [
        str(path),
        "mymaster",
        "leader",
        "start",
        "127.0.0.1",
        "6379",
        "127.0.0.1",
        "6380",
    ]
    assert second["argv"] == [
        str(path),
        "mymaster",
        "observer",
        "start",
        "127.0.0.1",
        "6380",
        "127.0.0.1",
        "6381",
    ]


async def test_a_hanging_script_is_killed_at_the_timeout(tmp_path: Path, made: list[Hooks]) -> None:
    pid_file = tmp_path / "pid"
    path = script(
        tmp_path / "hang",
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('partial output', flush=True)\n"
        "time.sleep(60)",
    )
    published: list[tuple[str, str]] = []
    config = HooksConfig(notification_script=path, script_timeout_ms=500, script_max_retries=0)
    hooks = Hooks(config, "w1", publish=lambda c, m: published.append((c, m)))
    made.append(hooks)
    await hooks.start()
    started = time.monotonic()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.failed == 1)
    assert 0.4 < time.monotonic() - started < 5.0
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert published == [("-script-timeout", f"{path} {pid}"), ("-script-error", f"{path} 9 0")]
    assert (hooks.ran, hooks.retried) == (1, 0)


async def test_a_timed_out_script_is_retried_like_a_killed_one(tmp_path: Path, made: list[Hooks]) -> None:
    path, out = recorder(tmp_path)
    path.write_text(path.read_text().replace('print("out: ran")', "time.sleep(60)"))
    config = HooksConfig(
        notification_script=path, script_timeout_ms=300, script_max_retries=1, script_retry_delay_ms=10
    )
    hooks = Hooks(config, "w1")
    made.append(hooks)
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.failed == 1)
    assert (hooks.ran, hooks.retried, len(runs(out))) == (2, 1, 2)


async def test_what_a_script_leaves_behind_on_its_output_is_killed(tmp_path: Path, made: list[Hooks]) -> None:
    if shutil.which("sleep") is None:
        pytest.skip("no sleep binary")
    pid_file = tmp_path / "child"
    path = script(
        tmp_path / "bg",
        "import subprocess\n"
        f"child = subprocess.Popen([{shutil.which('sleep')!r}, '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "os._exit(0)",
    )
    hooks = Hooks(HooksConfig(notification_script=path, script_timeout_ms=500), "w1")
    made.append(hooks)
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.ran == 1 and hooks.queued_scripts == 0)
    assert (hooks.failed, hooks.retried) == (0, 0)  # the script itself exited 0
    child = int(pid_file.read_text())
    await until(lambda: not Path(f"/proc/{child}").exists() or "Z" in _state(child), timeout=5)


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return "gone"


async def test_exit_1_is_retried_and_exit_2_is_not(tmp_path: Path, made: list[Hooks]) -> None:
    one, one_out = recorder(tmp_path, "one", exit_code=1)
    two, two_out = recorder(tmp_path, "two", exit_code=2)
    published: list[tuple[str, str]] = []
    common = {"script_max_retries": 2, "script_retry_delay_ms": 50}
    h1 = Hooks(
        HooksConfig(notification_script=one, **common), "w1", publish=lambda c, m: published.append((c, m))
    )  # type: ignore[arg-type]
    h2 = Hooks(
        HooksConfig(notification_script=two, **common), "w1", publish=lambda c, m: published.append((c, m))
    )  # type: ignore[arg-type]
    made.extend([h1, h2])
    await h1.start()
    await h2.start()
    h1.submit("+sdown", MASTER)
    h2.submit("+sdown", MASTER)
    await until(lambda: h1.failed == 1 and h2.failed == 1)
    assert (h1.ran, h1.retried, len(runs(one_out))) == (3, 2, 3)
    assert (h2.ran, h2.retried, len(runs(two_out))) == (1, 0, 1)
    times = [float(r["t"]) for r in runs(one_out)]  # type: ignore[arg-type]
    assert times[1] - times[0] >= 0.045 and times[2] - times[1] >= 0.09  # 50 ms, then doubled
    assert sorted(published) == [("-script-error", f"{one} 0 1"), ("-script-error", f"{two} 0 2")]


async def test_failure_output_is_captured_bounded_and_logged(
    tmp_path: Path, made: list[Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    path = script(
        tmp_path / "noisy",
        "sys.stdout.write('x' * 1_000_000)\nprint('bad thing', file=sys.stderr)\nsys.exit(3)",
    )
    hooks = Hooks(HooksConfig(notification_script=path), "w1")
    made.append(hooks)
    await hooks.start()
    with caplog.at_level("ERROR", logger="haredis.hooks"):
        hooks.submit("+sdown", MASTER)
        await until(lambda: hooks.failed == 1)
    (record,) = caplog.records
    fields = record.haredis_fields
    assert fields["exit"] == 3 and fields["stderr"] == "bad thing\n"
    assert fields["stdout"].startswith("xxxx") and len(fields["stdout"]) <= 4096 + 3


async def test_close_kills_running_scripts_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    path = script(tmp_path / "hang", f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)")
    hooks = Hooks(HooksConfig(notification_script=path), "w1")
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: pid_file.exists() and pid_file.read_text() != "")
    started = time.monotonic()
    await hooks.close(0.3)
    assert 0.25 < time.monotonic() - started < 5.0
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert (hooks.failed, hooks.running_scripts) == (1, 0)


# --- webhooks ----------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server on 127.0.0.1: records requests, answers with ``statuses`` in
    turn (then 200), or never answers when ``hang``."""

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    ssl_context: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
            self.requests.append(Request(method, target, headers, body, time.monotonic()))
            if self.hang:
                await asyncio.sleep(3600)
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        await receiver.close()


async def receiver(started: list[Receiver], **kw: object) -> Receiver:
    r = await Receiver(**kw).start()  # type: ignore[arg-type]
    started.append(r)
    return r


def free_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_delivery_with_a_valid_signature(
    tmp_path: Path, made: list[Hooks], receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    config = HooksConfig(webhooks=(WebhookConfig(url=r.url("/hook?x=1"), secret=Secret("s3cret")),))
    hooks = Hooks(config, "w7", epoch_of=lambda name: 4)
    made.append(hooks)
    await hooks.start()
    hooks.submit("+switch-master", SWITCH)
    await until(lambda: hooks.webhooks[0].delivered == 1)
    (req,) = r.requests
    assert (req.method, req.target) == ("POST", "/hook?x=1")
    assert req.headers["host"] == f"127.0.0.1:{r.port}"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == f"haredis/{__version__}"
    assert req.headers["x-haredis-event"] == "+switch-master"
    expected = hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-haredis-signature"], f"sha256={expected}")
    document = json.loads(req.body)
    assert document["id"] == req.headers["x-haredis-delivery"]
    assert (document["event"], document["message"], document["master"]) == (
        "+switch-master",
        SWITCH,
        "mymaster",
    )
    assert (document["watcher"], document["epoch"]) == ("w7", 4)


async def test_a_500_is_retried_then_delivered(made: list[Hooks], receivers: list[Receiver]) -> None:
    r = await receiver(receivers, statuses=[500, 503])
    hooks = Hooks(HooksConfig(webhooks=(WebhookConfig(url=r.url(), retry_delay_ms=50),)), "w1")
    made.append(hooks)
    await hooks.start()
    hooks.submit("+odown", MASTER + " #quorum 2/2")
    hook = hooks.webhooks[0]
    await until(lambda: hook.delivered == 1)
    assert (hook.retried, hook.failed, len(r.requests)) == (2, 0, 3)
    assert len({req.headers["x-haredis-delivery"] for req in r.requests}) == 1
    assert len({req.body for req in r.requests}) == 1
    gaps = [b.at - a.at for a, b in zip(r.requests, r.requests[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.09


async def test_a_4xx_is_not_retried(made: list[Hooks], receivers: list[Receiver]) -> None:
    r = await receiver(receivers, statuses=[400])
    hooks = Hooks(HooksConfig(webhooks=(WebhookConfig(url=r.url(), retry_delay_ms=10),)), "w1")
    made.append(hooks)
    await hooks.start()
    hooks.submit("+sdown", MASTER)
    await until(lambda: hooks.webhooks[0].failed == 1)
    await asyncio.sleep(0.1)
    assert (len(r.requests), hooks.webhooks[0].retried) == (1, 0)


async def test_a_dead_or_hung_webhook_does_not_delay_a_healthy_one(
    made: list[Hooks], receivers: list[Receiver]
) -> None:
    healthy = await receiver(receivers)
    hung = await receiver(receivers, hang=True)
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    config = HooksConfig(
        webhooks=(
            WebhookConfig(url=dead_url, retry_delay_ms=200, max_retries=20),
            WebhookConfig(url=hung.url(), timeout_ms=5000),
            WebhookConfig(url=healthy.url()),
        )
    )
    hooks = Hooks(config, "w1")
    made.append(hooks)
    await hooks.start()
    started = time.monotonic()
    for n in range(3):
        hooks.submit("+sdown", f"master m{n} 127.0.0.1 6379")
    dead, slow, good = hooks.webhooks
    await until(lambda: good.delivered == 3, timeout=4.0)
    assert time.monotonic() - started < 2.0
    await until(lambda: dead.retried >= 1 and len(hung.requests) == 1)
    assert dead.delivered == slow.delivered == 0
    assert dead.failed == 0  # still retrying, in its own task


async def test_https_webhook(tmp_path: Path, made: list[Hooks], receivers: list[Receiver]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl binary to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made_cert = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if made_cert.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made_cert.stderr[-200:]!r}")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    r = await receiver(receivers, ssl_context=server_ctx)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    hooks = Hooks(
        HooksConfig(webhooks=(WebhookConfig(url=r.url(), secret=Secret("k")),)), "w1", ssl_context=client_ctx
    )
    made.append(hooks)
    await hooks.start()
    hooks.submit("+switch-master", SWITCH)
    await until(lambda: hooks.webhooks[0].delivered == 1)
    assert json.loads(r.requests[0].body)["event"] == "+switch-master"
    # Without trusting the certificate the delivery fails (and is retried): TLS is verified.
    strict = Hooks(
        HooksConfig(webhooks=(WebhookConfig(url=r.url(), max_retries=0),)),
        "w1",
        ssl_context=ssl.create_default_context(),
    )
    made.append(strict)
    await strict.start()
    strict.submit("+sdown", MASTER)
    await until(lambda: strict.webhooks[0].failed == 1)
    assert len(r.requests) == 1
