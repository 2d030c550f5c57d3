"""Running one hook script: ``execve`` of an argument vector (no shell) in its own session,
stdout and stderr captured up to a bound, the whole process group killed at the timeout.
Queueing, retries and what a result means are the caller's (``haredis.hooks``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["KILL_WAIT", "ScriptResult", "ScriptRunner", "kill_group", "run_script"]

_MAX_OUTPUT: Final = 4096  # bytes kept of a script's stdout, and of its stderr
KILL_WAIT: Final = 5.0  # after SIGKILL, how long to wait for the exit to be reaped
_OUTPUT_WAIT: Final = 1.0  # after the kill, how long the output pipes may take to close


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


ScriptRunner = Callable[[tuple[str, ...], float], Awaitable[ScriptResult]]


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


def kill_group(pid: int) -> None:
    # The script leads its own session and process group (start_new_session): this kills it
    # and whatever it started that did not leave the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_script(
    argv: tuple[str, ...],
    timeout: float,
    *,
    env: Mapping[str, str],
    on_started: Callable[[int], None],
    on_timeout: Callable[[int], None],
) -> ScriptResult:
    """Run one script: execve(argv), no shell, bounded output, SIGKILL at the timeout.

    ``on_started(pid)`` is called as soon as the process exists (so a caller can kill its
    group), ``on_timeout(pid)`` when the timeout kills it."""
    loop = asyncio.get_running_loop()
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
            env=env,
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
    on_started(pid)
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
            kill_group(pid)
            on_timeout(pid)
            async with asyncio.timeout(KILL_WAIT):
                await process.wait()
        # Anything the script left running still holds its output: it shares the deadline.
        _, pending = await asyncio.wait(closed, timeout=max(0.0, deadline - loop.time()))
        if pending:
            kill_group(pid)
            await asyncio.wait(pending, timeout=_OUTPUT_WAIT)
    except BaseException:
        if process.returncode is None:
            kill_group(pid)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT):
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
