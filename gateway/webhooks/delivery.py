"""The delivery worker: claims due outbox rows, sends them signed, records every attempt.

At-least-once. A row is claimed with a lease (`locked_by`, `locked_until_ms`) in one
guarded statement, so with several instances on one PostgreSQL database (where the
candidates are also picked `FOR UPDATE SKIP LOCKED`) each due row goes to one worker at a
time. A worker that dies mid-send (SIGKILL) leaves its lease to lapse (on SQLite, which
serves one instance, the restarted process releases it at once); the row is then due again
for whoever polls next.

Outcome of an attempt:
  2xx          delivered; the endpoint is healthy again and its backlog goes out now.
  410 Gone     the endpoint is disabled at once (the receiver asked us to stop).
  anything else (other status, redirect, timeout, refused address): retried with
               exponential backoff plus jitter from `initial_retry_delay_s`, until
               `max_retry_age_h` after the delivery was created (or manually retried),
               then `failed`. An endpoint failing without a single success for
               `disable_after_h` is disabled, and a `webhook_endpoint.disabled` event
               recorded.
Pending deliveries to a disabled endpoint wait; enabling it sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import peewee as pw

from gateway import __version__
from gateway.clock import Clock, iso_ms, now_ms, utcnow
from gateway.config import WebhookSettings
from gateway.db.database import UNAVAILABLE_ERRORS, Database
from gateway.db.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from gateway.event_types import EventType, event_to_payload
from gateway.events import EventBus
from gateway.ids import new_id
from gateway.jsoncodec import encode
from gateway.tasks import BackgroundTasks
from gateway.webhooks import urlpolicy
from gateway.webhooks.outbox import Outbox
from gateway.webhooks.signing import signed_headers

log = logging.getLogger("ringside.webhooks")

MAX_BACKOFF_S = 3600.0  # retries never space out beyond an hour: a recovered receiver hears soon
JITTER = 0.25  # each delay grows by up to a quarter, so retries of a burst spread out
RESPONSE_SNIPPET_BYTES = 1024
MAX_ERROR_CHARS = 500
USER_AGENT = f"Ringside-Webhooks/{__version__}"

# httpx logs every request URL at INFO; webhook URLs often carry tokens in their query
# string, so those lines are dropped and the worker logs its own, without the URL.
_sending: contextvars.ContextVar[bool] = contextvars.ContextVar("webhook_sending", default=False)


class _QuietWebhookRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _sending.get()


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, _QuietWebhookRequests) for f in _httpx_log.filters):
    _httpx_log.addFilter(_QuietWebhookRequests())


def backoff_ms(attempts: int, initial_s: float, rng: random.Random | None = None) -> int:
    """Delay before the next try after `attempts` failures (attempts >= 1)."""
    base = min(initial_s * 2 ** min(attempts - 1, 40), max(MAX_BACKOFF_S, initial_s))
    jitter = (rng or random).random() * JITTER
    return max(1, int(base * (1 + jitter) * 1000))


@dataclass(frozen=True)
class Claim:
    """Everything needed to send one delivery, read while claiming it."""

    delivery_id: str
    token: str
    event_id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    body: bytes
    attempts: int  # attempts before this one
    window_start_ms: int


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


DeliveryStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class Recorded:
    """What the attempt changed: for the bus, and for re-arming the wake-up timer."""

    # "lost": another worker owns the row now, this attempt changed nothing.
    status: DeliveryStatus | Literal["lost"]
    next_attempt_ms: int | None
    events: list[dict[str, Any]]
    backlog_released: bool = False  # a recovered endpoint's waiting deliveries are due now


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        settings: WebhookSettings,
        bus: EventBus,
        *,
        background: BackgroundTasks | None = None,
        capacity: int = 32,
        instance_id: str | None = None,
        clock: Clock = utcnow,
        outbox: Outbox | None = None,
    ) -> None:
        """`clock` is the wall clock: due times, backoff, leases and `disable_after_h`
        are real time (see `gateway.clock`). `outbox` records the endpoint-disabled event."""
        self.db = db
        self.settings = settings
        self.bus = bus
        self.capacity = capacity
        self.instance_id = instance_id or (
            f"{socket.gethostname()[:24]}-{os.getpid()}-{secrets.token_hex(4)}"
        )
        self.clock = clock
        self.outbox = outbox if outbox is not None else Outbox(clock)
        self.lease_ms = int((settings.timeout_s * 2 + 5) * 1000)
        self._background = background if background is not None else BackgroundTasks()
        self._tokens = itertools.count(1)
        self._inflight: set[asyncio.Task[Any]] = set()
        self._ticking = False
        self._again = False
        self._saturated = False
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._client: httpx.AsyncClient | None = None
        self._kick: asyncio.Task[Any] | None = None
        self._recovered = False

    def _now_ms(self) -> int:
        return now_ms(self.clock)

    # ------------------------------------------------------------------ lifecycle
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stopped = False

    def stop(self) -> None:
        """Stop claiming. Sends in flight finish (the app's shutdown waits for them), then
        the HTTP client closes. Call on the loop's thread."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        inflight = list(self._inflight)

        async def close_when_idle() -> None:
            if inflight:
                await asyncio.wait(inflight)
            client, self._client = self._client, None
            if client is not None:
                await client.aclose()

        with contextlib.suppress(RuntimeError):
            self._track(loop.create_task(close_when_idle()), inflight=False)

    async def aclose(self) -> None:
        """Stop, wait for sends in flight, close the HTTP client (the app's shutdown)."""
        self.stop()
        if self._inflight:
            await asyncio.wait(list(self._inflight))
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def wake_threadsafe(self) -> None:
        """Run a claim round soon. Safe from any thread (bus subscribers, services)."""
        loop = self._loop
        if loop is None or self._stopped or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.wake)

    def wake(self) -> None:
        """On the loop's thread: start a claim round unless one is already running."""
        if self._stopped:
            return
        if self._ticking:
            self._again = True
            return
        if self._kick is None or self._kick.done():
            self._kick = self._track(asyncio.get_running_loop().create_task(self.tick()), False)

    # ------------------------------------------------------------------ claiming
    async def tick(self) -> int:
        """Claim due rows up to the free capacity and start sending them. Returns how many."""
        if self._stopped:
            return 0
        if self._ticking:
            self._again = True
            return 0
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._ticking = True
        started = 0
        try:
            while not self._stopped:
                self._again = False
                started += await self._round()
                # A wake-up that arrived mid-round may concern a row the round missed.
                if not self._again:
                    break
        except UNAVAILABLE_ERRORS as exc:
            log.warning("webhook worker: database unavailable: %s", exc)
        finally:
            self._ticking = False
        return started

    def _recover_sync(self) -> int:
        """SQLite serves one instance per database file, so at start-up every lease left in
        it belongs to a process that died mid-send (SIGKILL): release them now rather than
        make those deliveries wait for the lease to lapse. (On PostgreSQL a lease may belong
        to a live instance, so there it lapses on its own.)"""
        now = self._now_ms()
        D = WebhookDelivery
        with self.db.tx():
            return int(
                D.update(locked_until_ms=0, locked_by=None)
                .where(D.status == "pending", D.locked_until_ms > now)
                .execute()
            )

    async def _round(self) -> int:
        if not self._recovered:
            self._recovered = True
            if self.db.is_sqlite:
                released = await self.db.write(self._recover_sync)
                if released:
                    log.warning("released %d webhook delivery lease(s) of a dead process", released)
        # A read first: an idle poll must not take SQLite's write lock every second.
        next_due = await self.db.read(self._next_due_sync)
        if next_due is None or next_due > self._now_ms():
            if next_due is not None:
                self._arm(next_due)
            return 0
        started = 0
        while not self._stopped:
            room = self.capacity - len(self._inflight)
            if room <= 0:
                self._saturated = True  # the next send to finish wakes us
                return started
            claims = await self.db.write(self._claim_sync, room)
            for claim in claims:
                self._track(asyncio.get_running_loop().create_task(self._deliver(claim)))
            started += len(claims)
            self._saturated = len(claims) == room
            if len(claims) < room:
                break
        if not self._stopped:
            next_due = await self.db.read(self._next_due_sync)
            # Only a future time arms the timer: rows due now but not claimable (a race
            # with another instance) wait for the poll instead of spinning.
            if next_due is not None and next_due > self._now_ms():
                self._arm(next_due)
        return started

    def _claim_sync(self, limit: int) -> list[Claim]:
        now = self._now_ms()
        token = f"{self.instance_id}:{next(self._tokens)}"
        D, E = WebhookDelivery, WebhookEndpoint
        due = (
            D.select(D.id)
            .where(
                D.status == "pending",
                D.next_attempt_ms <= now,
                D.locked_until_ms <= now,
                D.endpoint_id.in_(_live_endpoint_ids()),
            )
            .order_by(D.next_attempt_ms)
            .limit(limit)
        )
        with self.db.tx():
            if not self.db.is_sqlite:
                # Concurrent claimers skip each other's candidates instead of queueing on them.
                due = due.for_update(skip_locked=True)
            ids = [row.id for row in due]
            if not ids:
                return []
            # The guard repeats the due condition, so a row claimed meanwhile is left alone.
            D.update(locked_by=token, locked_until_ms=now + self.lease_ms).where(
                D.id.in_(ids),
                D.status == "pending",
                D.locked_until_ms <= now,
            ).execute()
            rows = list(D.select().where(D.id.in_(ids), D.locked_by == token))
            endpoints = {e.id: e for e in E.select().where(E.id.in_([r.endpoint_id for r in rows]))}
            events = {
                e.id: e for e in Event.select().where(Event.id.in_([r.event_id for r in rows]))
            }
        claims = []
        for d in rows:
            ep, ev = endpoints.get(d.endpoint_id), events.get(d.event_id)
            if ep is None or ev is None:
                continue
            keys = [ep.secret]
            if ep.previous_secret and (ep.previous_secret_expires_ms or 0) > now:
                keys.append(ep.previous_secret)
            claims.append(
                Claim(
                    delivery_id=d.id,
                    token=token,
                    event_id=ev.id,
                    endpoint_id=ep.id,
                    url=ep.url,
                    secrets=tuple(keys),
                    body=encode(event_to_payload(ev)),
                    attempts=d.attempts,
                    window_start_ms=d.window_start_ms or d.created_ms,
                )
            )
        return claims

    def _next_due_sync(self) -> int | None:
        """When the next claimable row is due (the same conditions as the claim)."""
        D = WebhookDelivery
        row = (
            D.select(pw.fn.MIN(D.next_attempt_ms))
            .where(
                D.status == "pending",
                D.locked_until_ms <= self._now_ms(),
                D.endpoint_id.in_(_live_endpoint_ids()),
            )
            .scalar()
        )
        return int(row) if row is not None else None

    def _arm(self, due_ms: int) -> None:
        """Wake at `due_ms` when that comes before the next poll would."""
        loop = self._loop
        if loop is None or self._stopped:
            return
        delay = max(0.0, (due_ms - self._now_ms()) / 1000)
        if delay >= self.settings.poll_interval_s:
            return
        at = loop.time() + delay
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.wake()

    def _track(self, task: asyncio.Task[Any], inflight: bool = True) -> asyncio.Task[Any]:
        # The app's shutdown waits for `background`, so sends in flight finish and record.
        self._background.track(task)
        if inflight:
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return task

    # ------------------------------------------------------------------ sending
    async def _deliver(self, claim: Claim) -> None:
        try:
            result = await self.send(claim)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not kill the worker; the lease lapses
            log.exception("webhook delivery %s crashed", claim.delivery_id)
            result = AttemptResult(None, f"internal error: {type(exc).__name__}", None, 0)
        try:
            recorded = await self._write_retrying(self._record_sync, claim, result)
        except UNAVAILABLE_ERRORS as exc:
            # The lease lapses and the row is sent again: at-least-once, never lost.
            log.warning("could not record webhook attempt %s: %s", claim.delivery_id, exc)
            return
        except Exception:
            log.exception("could not record webhook attempt %s", claim.delivery_id)
            return
        log.log(
            logging.DEBUG if result.ok else logging.INFO,
            "webhook %s (event %s) to %s: %s, attempt %d, %s",
            claim.delivery_id,
            claim.event_id,
            claim.endpoint_id,
            result.status_code or result.error,
            claim.attempts + 1,
            recorded.status,
        )
        for ev in recorded.events:
            self.bus.publish("event.recorded", event=ev)
        self.bus.publish(
            "webhook.attempted",
            delivery_id=claim.delivery_id,
            event_id=claim.event_id,
            endpoint_id=claim.endpoint_id,
            status=recorded.status,
            status_code=result.status_code,
            error=result.error,
        )
        if recorded.events or recorded.backlog_released or self._saturated:
            self.wake()
        elif recorded.next_attempt_ms is not None:
            self._arm(recorded.next_attempt_ms)

    async def send(self, claim: Claim) -> AttemptResult:
        """One HTTP attempt. Never raises for network trouble: it becomes the result."""
        started = time.monotonic()

        def done(
            code: int | None, error: str | None = None, body: str | None = None
        ) -> AttemptResult:
            return AttemptResult(code, error, body, int((time.monotonic() - started) * 1000))

        _sending.set(True)  # this task's context only
        try:
            return await asyncio.wait_for(self._post(claim, done), self.settings.timeout_s + 1)
        except TimeoutError:
            return done(None, f"timed out after {self.settings.timeout_s:g} s")

    async def _post(self, claim: Claim, done: Callable[..., AttemptResult]) -> AttemptResult:
        target = urlpolicy.parse_url(claim.url)
        try:
            ip = await urlpolicy.vetted_address(
                target, allow_private=self.settings.allow_private_networks
            )
        except urlpolicy.RefusedAddress as exc:
            return done(None, f"refused: {exc}")
        url = httpx.URL(claim.url)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signed_headers(
                claim.secrets, claim.event_id, claim.body, timestamp=self._now_ms() // 1000
            ),
        }
        extensions: dict[str, Any] = {}
        if target.ip is None:
            # Connect to the address we vetted, not whatever a second lookup returns; TLS
            # still checks the certificate against the name.
            headers["host"] = url.netloc.decode("ascii")
            if target.scheme == "https":
                extensions["sni_hostname"] = target.host
            url = url.copy_with(host=str(ip))
        client = await self._http()
        try:
            request = client.build_request(
                "POST", url, content=claim.body, headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            return done(None, f"timed out after {self.settings.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return done(None, _short(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)))
        try:
            snippet = await _read_snippet(response)
        finally:
            await response.aclose()
        if response.is_redirect:
            location = response.headers.get("location", "")
            return done(response.status_code, _short(f"redirect not followed: {location}"), snippet)
        if response.is_success:
            return done(response.status_code, None, snippet)
        return done(response.status_code, f"HTTP {response.status_code}", snippet)

    async def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Loading the CA bundle takes tens of ms: not on the event loop.
            client = await asyncio.to_thread(self._new_client)
            if self._client is None:
                self._client = client
            else:  # another first delivery won the race
                await client.aclose()
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_s),
            follow_redirects=False,
            # Requests go to vetted IPs: a pooled connection must never serve another name.
            limits=httpx.Limits(max_keepalive_connections=0),
            # Proxies from the environment would bypass the address checks.
            trust_env=False,
        )

    # ------------------------------------------------------------------ recording
    async def _write_retrying(self, fn: Callable[..., Recorded], *args: Any) -> Recorded:
        """PostgreSQL may still pick this transaction as a deadlock victim; it is safe to
        run again (nothing of it committed), and dropping it would cost a duplicate send."""
        for attempt in range(3):
            try:
                return await self.db.write(fn, *args)
            except pw.OperationalError as exc:
                if attempt == 2 or "deadlock" not in str(exc).lower():
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _record_sync(self, claim: Claim, result: AttemptResult) -> Recorded:
        now = self._now_ms()
        D, E = WebhookDelivery, WebhookEndpoint
        events: list[dict[str, Any]] = []
        with self.db.tx():
            # Endpoint row first, then deliveries: the order every writer of both follows
            # (endpoint updates, deletes), so concurrent writers on PostgreSQL queue instead
            # of deadlocking.
            lock_endpoint(self.db, claim.endpoint_id)
            WebhookAttempt.insert(
                id=new_id("wha"),
                delivery_id=claim.delivery_id,
                attempted_ms=now - result.duration_ms,
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
                response_body=result.response_body,
            ).execute()
            common = {
                D.attempts: D.attempts + 1,
                D.last_status_code: result.status_code,
                D.last_attempt_ms: now,
                D.locked_until_ms: 0,
                D.locked_by: None,
            }
            if result.ok:
                D.update(
                    {**common, D.status: "delivered", D.delivered_ms: now, D.last_error: None}
                ).where(D.id == claim.delivery_id, D.status == "pending").execute()
                ep = E.get_or_none(E.id == claim.endpoint_id)
                released = 0
                if ep is not None and ep.failing_since_ms is not None:
                    # It is back: what waited for it in backoff goes out now, not in an hour.
                    released = (
                        D.update(next_attempt_ms=now)
                        .where(
                            D.endpoint_id == claim.endpoint_id,
                            D.status == "pending",
                            D.next_attempt_ms > now,
                        )
                        .execute()
                    )
                E.update(last_success_ms=now, failing_since_ms=None).where(
                    E.id == claim.endpoint_id
                ).execute()
                return Recorded("delivered", None, events, backlog_released=released > 0)

            attempts = claim.attempts + 1
            next_ms = now + backoff_ms(attempts, self.settings.initial_retry_delay_s)
            give_up = next_ms > claim.window_start_ms + int(self.settings.max_retry_age_h * 3.6e6)
            status: DeliveryStatus = "failed" if give_up else "pending"
            changed = (
                D.update(
                    {
                        **common,
                        D.status: status,
                        D.next_attempt_ms: next_ms,
                        D.last_error: result.error,
                    }
                )
                .where(
                    D.id == claim.delivery_id,
                    D.status == "pending",
                    D.locked_by == claim.token,
                )
                .execute()
            )
            E.update(failing_since_ms=now).where(
                E.id == claim.endpoint_id, E.failing_since_ms.is_null()
            ).execute()
            ep = E.get_or_none(E.id == claim.endpoint_id)
            if ep is not None and ep.enabled:
                reason = self._disable_reason(ep, result, now)
                if reason:
                    events += self._disable_sync(ep, reason, now)
        if not changed:
            return Recorded("lost", None, events)
        return Recorded(status, None if give_up else next_ms, events)

    def _disable_reason(self, ep: WebhookEndpoint, result: AttemptResult, now: int) -> str | None:
        if result.status_code == 410:
            return "the endpoint answered 410 Gone"
        failing_since = ep.failing_since_ms
        limit_ms = int(self.settings.disable_after_h * 3.6e6)
        if failing_since is not None and now - failing_since >= limit_ms:
            return (
                f"failing without a success since {iso_ms(failing_since)} "
                f"(more than {self.settings.disable_after_h:g} h)"
            )
        return None

    def _disable_sync(self, ep: WebhookEndpoint, reason: str, now: int) -> list[dict[str, Any]]:
        E = WebhookEndpoint
        changed = (
            E.update(enabled=False, disabled_reason=reason, updated_ms=now)
            .where(E.id == ep.id, E.enabled == True)  # noqa: E712 - one instance wins
            .execute()
        )
        if not changed:
            return []
        log.warning("webhook endpoint %s disabled: %s", ep.id, reason)
        event = self.outbox.record_operator_event(
            EventType.WEBHOOK_ENDPOINT_DISABLED,
            {
                "webhook_endpoint": {
                    "id": ep.id,
                    "object": "webhook_endpoint",
                    "url": ep.url,
                    "description": ep.description,
                },
                "reason": reason,
                "failing_since": iso_ms(ep.failing_since_ms),
            },
            now,
            # The notice is for the operator's other endpoints, not the one that stopped
            # listening.
            skip_endpoint=ep.id,
        )
        return [event_to_payload(event)]


def lock_endpoint(db: Database, endpoint_id: str) -> WebhookEndpoint | None:
    """Read the endpoint, row-locked on PostgreSQL (SQLite's write transactions are
    already serial)."""
    query = WebhookEndpoint.select().where(WebhookEndpoint.id == endpoint_id)
    if not db.is_sqlite:
        query = query.for_update()
    return query.get_or_none()


def _live_endpoint_ids() -> Any:
    E = WebhookEndpoint
    return E.select(E.id).where(E.enabled == True, E.deleted_ms.is_null())  # noqa: E712


async def _read_snippet(response: httpx.Response) -> str | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_SNIPPET_BYTES:
            break
    if not chunks:
        return None
    text = b"".join(chunks)[:RESPONSE_SNIPPET_BYTES].decode("utf-8", errors="replace")
    return _storable(text)


def _short(text: str) -> str:
    text = _storable(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL; one in a receiver's answer must not block recording.
    return text.replace("\x00", "\ufffd")


__all__ = ["AttemptResult", "Claim", "DeliveryWorker", "backoff_ms"]
