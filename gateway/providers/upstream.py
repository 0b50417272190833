"""The HTTP client of the proxy's upstream calls: one pooled aiohttp session per provider.

httpx's connection pool slowed the proxy down as concurrency rose (bench/RESULTS.md,
2026-12-04), so the hot path uses aiohttp. httpx stays for webhooks, Stripe and the
Python client.

Behaviour kept from the httpx client it replaces: up to 512 connections per provider,
kept alive between calls; read and pool timeouts of `timeout_s`, connecting capped at 10 s;
no redirects followed; no proxy or other settings taken from the environment; TLS verified
against certifi's CA bundle. Failures map to `UpstreamFailure` kinds: a timeout is
"timeout", anything else the transport raises is "connect".

A runaway upstream is cut (`[providers.X]`): a JSON answer over `max_response_bytes` fails
as "protocol" (nothing is charged: no usage is known); a stream that sends more than
`max_stream_bytes`, or one event over `max_response_bytes`, fails as "protocol", and one
still going after `max_duration_s` as "timeout" (a stream cut mid-way is charged for what it
produced). An answer's body must also arrive in full within `max_duration_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import aiohttp
from yarl import URL

from gateway.config import ProviderSettings
from gateway.providers.base import ChatStream, UpstreamFailure
from gateway.providers.sse import sse_events

MAX_CONNECTIONS = 10_000  # `[providers.X] max_connections`
KEEPALIVE_S = 5.0  # httpx's default keep-alive expiry, which the proxy used until now
DNS_CACHE_S = 60
CONNECT_TIMEOUT_CAP_S = 10.0
DRAIN_S = 1.0  # how long a finished stream's connection waits for its body's end
DRAIN_BYTES = 64 * 1024

# What the transport raises. TimeoutError first: aiohttp's ServerTimeoutError is both.
TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError)

_ssl_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every provider, built on first use (it reads a file)."""
    global _ssl_context
    if _ssl_context is None:
        try:
            import certifi

            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - certifi comes with httpx
            _ssl_context = ssl.create_default_context()
    return _ssl_context


def timeouts(timeout_s: float) -> aiohttp.ClientTimeout:
    """httpx.Timeout(timeout_s, connect=min(timeout_s, 10)) in aiohttp's terms: no overall
    limit; each socket read and the wait for a pooled connection get `timeout_s`; opening a
    connection gets at most 10 s."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeout_s,
        sock_connect=min(timeout_s, CONNECT_TIMEOUT_CAP_S),
        sock_read=timeout_s,
    )


async def _drain(response: aiohttp.ClientResponse) -> None:
    read = 0
    try:
        async with asyncio.timeout(DRAIN_S):
            while read <= DRAIN_BYTES and not response.content.is_eof():
                data = await response.content.readany()
                if not data:
                    break
                read += len(data)
    except TRANSPORT_ERRORS:
        pass
    finally:
        response.release()  # pooled if the body ended, closed otherwise


class UpstreamClient:
    """A provider's pooled HTTP session. Open it in the running loop (`open()`, idempotent);
    it also opens itself on first use. After `aclose()`, calls fail as "connect" until the
    next `open()`."""

    def __init__(self, settings: ProviderSettings, *, max_connections: int = MAX_CONNECTIONS):
        self.name = settings.name
        self.settings = settings
        self._base = settings.base_url.rstrip("/")
        self._urls: dict[str, URL] = {}
        self._timeout = timeouts(settings.timeout_s)
        self._max_connections = max_connections
        self._secrets = tuple(s for s in (settings.api_key,) if s)
        self.max_response_bytes = settings.max_response_bytes
        self.max_stream_bytes = settings.max_stream_bytes
        self.max_duration_s = settings.max_duration_s
        self._session: aiohttp.ClientSession | None = None
        self._drains: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open the session in the running loop (again after `aclose()`: a gateway stopped and
        started anew gets a fresh pool). Idempotent."""
        self._closed = False
        self.session()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closed:
                raise UpstreamFailure("connect", f"Provider '{self.name}' is shut down.")
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_S,
                ttl_dns_cache=DNS_CACHE_S,
                ssl=_tls() if self._base.startswith("https:") else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,  # no HTTP(S)_PROXY / netrc from the environment
                auto_decompress=True,  # bodies are parsed (usage, SSE), so decompress them
                raise_for_status=False,
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._drains):
            task.cancel()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def drained(self) -> None:
        """Wait for the background drains started so far (tests, orderly shutdowns)."""
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)

    def drain(self, response: aiohttp.ClientResponse) -> None:
        """Read the end of a finished stream's body in the background, then release it (so
        its connection is reused), giving up after DRAIN_S or DRAIN_BYTES."""
        task = asyncio.get_running_loop().create_task(_drain(response))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ requests
    def url(self, path: str) -> URL:
        """base_url + path, as httpx's base_url joined them; parsed once per path."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = URL(self._base + path)
        return url

    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """Send a POST; the response once its headers arrived (the body is not read yet).
        The caller releases it. Transport errors propagate as they are (see `failure`)."""
        return await self.session().post(
            self.url(path), data=body, headers=headers, allow_redirects=False
        )

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body, at most `max_response_bytes` (decompressed) arrived within
        `max_duration_s` (else UpstreamFailure "protocol" / a TimeoutError); the connection
        goes back to the pool, or is closed if the body was not read to its end."""
        limit = self.max_response_bytes
        try:
            async with asyncio.timeout(self.max_duration_s):
                length = response.content_length
                if length is not None and "content-encoding" not in response.headers:
                    if length > limit:
                        raise self._too_large(limit)
                    return await response.read()
                parts: list[bytes] = []
                size = 0
                async for data in response.content.iter_any():
                    size += len(data)
                    if size > limit:
                        raise self._too_large(limit)
                    parts.append(data)
                return b"".join(parts)
        finally:
            response.release()

    def _too_large(self, limit: int) -> UpstreamFailure:
        return UpstreamFailure(
            "protocol",
            f"Provider '{self.name}' answered with more than {limit:,} bytes "
            f"([providers.{self.name}] max_response_bytes).",
        )

    # ------------------------------------------------------------------ errors
    def redact(self, text: str) -> str:
        """`text` without the provider's API key in it (upstreams do echo keys in errors)."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text

    def redacted(self, failure: UpstreamFailure) -> UpstreamFailure:
        """`failure`, or a copy of it without the API key when its message holds it."""
        message = self.redact(failure.message)
        if message == failure.message:
            return failure
        return UpstreamFailure(failure.kind, message, status=failure.status, code=failure.code)

    def failure(self, exc: BaseException, timeout: str, connect: str) -> UpstreamFailure:
        """A transport exception as an UpstreamFailure: "timeout" with the `timeout` message,
        anything else "connect" with the `connect` one (API key taken out)."""
        if isinstance(exc, asyncio.TimeoutError):
            return UpstreamFailure("timeout", self.redact(timeout))
        return UpstreamFailure("connect", self.redact(connect))


class UpstreamStream(ChatStream):
    """An open streamed aiohttp response, read as SSE by `chunks()` (in subclasses).

    `chunks()` ends with `release()` in a `finally`, passing `complete=True` once it saw the
    upstream's last event; `aclose()` drops a connection whose stream did not end.
    """

    def __init__(self, response: aiohttp.ClientResponse, client: UpstreamClient) -> None:
        self._response = response
        self._client = client
        self._released = False
        self._closed = False
        # One timer for the stream's whole life (not one per read): past it, the next read
        # raises, whatever the upstream is doing.
        self._deadline: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            client.max_duration_s, self._expire
        )

    def body(self) -> AsyncIterator[bytes]:
        """The raw body, as the bytes arrive."""
        return self._response.content.iter_any()

    def events(self) -> AsyncGenerator[bytes, None]:
        """The body's SSE event blocks, within the provider's limits (`sse_events`)."""
        client = self._client
        return sse_events(
            self.body(),
            max_bytes=client.max_stream_bytes,
            max_event_bytes=client.max_response_bytes,
            source=f"Provider '{client.name}'",
            section=f"[providers.{client.name}] ",
        )

    def _expire(self) -> None:
        self._deadline = None
        name, limit = self._client.name, self._client.max_duration_s
        self._response.content.set_exception(
            UpstreamFailure(
                "timeout",
                f"Provider '{name}' was still streaming after {limit:g} s "
                f"([providers.{name}] max_duration_s); cut.",
            )
        )

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def release(self, *, complete: bool = False) -> None:
        """Hand the connection back: to the pool when the body was read to its end, closed
        otherwise. `complete`: the last event arrived but the body's end (the empty chunk)
        may be a moment behind it; wait for it in the background instead of dropping a
        connection that can be reused."""
        self._stop_deadline()
        if self._released:
            return
        self._released = True
        if complete and not self._response.content.is_eof():
            self._client.drain(self._response)
        else:
            self._response.release()

    async def aclose(self) -> None:
        self._stop_deadline()
        if self._closed:
            return
        self._closed = True
        if self._iterator is not None:
            with contextlib.suppress(RuntimeError):
                # RuntimeError: still being iterated by another task; closing the response
                # below ends that iteration with a "connect" failure.
                await self._iterator.aclose()
        if not self._released:
            self._released = True
            self._response.close()

    @property
    def response_closed(self) -> bool:
        return self._response.closed
