"""Delivering to one webhook: the ``[[hooks.webhooks]]`` target with its queue and counters,
and one HTTP/1.1 POST on asyncio streams (``Connection: close``) returning the answer's
status. Retries, backoff and signing policy are the caller's (``haredis.hooks``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from haredis import __version__
from haredis.config import WebhookConfig
from haredis.hook_policy import sign
from haredis.log import kv

__all__ = ["Delivery", "HttpError", "HttpPost", "Webhook", "post", "request_headers"]

# The hooks' messages keep one logger, whichever module sends them.
log = logging.getLogger("haredis.hooks")

_MAX_LINE: Final = 8192  # longest HTTP status or header line read
_MAX_HEADERS: Final = 100
_MAX_SNIPPET: Final = 256  # bytes of an error answer's body kept for the log
_CLOSE_WAIT: Final = 1.0  # bound on an HTTP connection's orderly close


class HttpError(Exception):
    """The server's answer is not HTTP we understand."""


class Delivery:
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
        self.queue: deque[Delivery] = deque()
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
            raise HttpError("the connection closed before an answer")
        words = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(words) < 2 or not words[0].startswith("HTTP/1.") or not words[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {line[:80]!r}")
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
            raise HttpError("too many header lines")
        if 100 <= status < 200:
            continue
        snippet = b""
        if length and not 200 <= status < 300:
            with contextlib.suppress(asyncio.IncompleteReadError):
                snippet = await reader.readexactly(min(length, _MAX_SNIPPET))
        return status, snippet


HttpPost = Callable[[Webhook, Mapping[str, str], bytes], Awaitable[int]]


def request_headers(hook: Webhook, delivery: Delivery) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"haredis/{__version__}",
        "X-Haredis-Event": delivery.event,
        "X-Haredis-Delivery": delivery.id,
    }
    if hook.config.secret is not None:
        headers["X-Haredis-Signature"] = sign(hook.config.secret, delivery.body)
    return headers


async def post(
    hook: Webhook, headers: Mapping[str, str], body: bytes, ssl_context: ssl.SSLContext | None
) -> int:
    """One POST; the status of the answer. Raises on connection errors and timeouts.
    ``ssl_context`` is used when the URL is https."""
    timeout = hook.config.timeout_ms / 1000
    context = ssl_context if hook.tls else None
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
            extra=kv(webhook=hook.index, url=hook.name, status=status, body=snippet.decode(errors="replace")),
        )
    return status
