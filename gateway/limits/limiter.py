"""Admit calls against their subjects' rate limits, inside the caller's write transaction.

Each subject (a customer, an app key) has one `rate_window` row: its last minute of
requests and tokens (see `window.py`), its calls in flight, and when it last fired
`customer.rate_limited` per limit. Admission locks the rows (`FOR UPDATE` on PostgreSQL;
SQLite serialises writers), checks every limit of every subject, and only then counts the
call on all of them, so instances sharing one database never admit more than a limit
between them. A refusal counts nothing. The caller's transaction commits the counts with
the call's hold, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.db.database import Database
from gateway.db.statements import Statements
from gateway.limits import window
from gateway.limits.headers import trio
from gateway.terms import LimitName, RateLimits

SubjectKind = Literal["customer", "key"]
NOTIFY_EVERY_MS = 60_000  # customer.rate_limited: at most once a minute per limit

STATEMENTS = {
    "select": "SELECT requests, tokens, in_flight, notified FROM rate_window WHERE subject = ?",
    "peek": "SELECT requests, tokens, in_flight FROM rate_window WHERE subject = ?",
    "insert": (
        "INSERT INTO rate_window (subject, requests, tokens, in_flight, notified, updated_ms) "
        "VALUES (?, '[]', '[]', 0, NULL, ?) ON CONFLICT DO NOTHING"
    ),
    "update": (
        "UPDATE rate_window SET requests = ?, tokens = ?, in_flight = ?, notified = ?, "
        "updated_ms = ? WHERE subject = ?"
    ),
    "release": (
        "UPDATE rate_window SET in_flight = in_flight - 1 WHERE subject = ? AND in_flight > 0"
    ),
}


@dataclass(frozen=True, slots=True)
class Subject:
    id: str  # `cus_...` or `key_...`
    kind: SubjectKind
    limits: RateLimits


@dataclass(frozen=True, slots=True)
class Admission:
    """A call let through. Settlement trues up `tokens` on `token_subjects` (in the bucket
    of `second`) and releases the concurrency slots of `slots`."""

    second: int
    tokens: int
    output_cap: int | None  # the output bound a token limit leaves, when the client gave none
    token_subjects: tuple[str, ...]
    slots: tuple[str, ...]
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Throttled:
    subject: Subject
    limit: LimitName
    value: int
    retry_after_s: int
    need: int  # what the call asked of the limit (1 request, N tokens, 1 slot)
    headers: dict[str, str]
    notify: bool  # customer.rate_limited is due


@dataclass(frozen=True, slots=True)
class Usage:
    """A subject's current minute, for views: requests and tokens counted, calls in flight."""

    requests: int
    tokens: int
    in_flight: int


@dataclass
class _State:
    subject: Subject
    requests: window.Buckets
    tokens: window.Buckets
    in_flight: int
    notified: dict[str, int] = field(default_factory=dict)


def _buckets(text: Any) -> window.Buckets:
    if not text:
        return []
    value = msgspec.json.decode(text)
    return value if isinstance(value, list) else []


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class Limiter:
    def __init__(self, db: Database) -> None:
        self.sql = Statements(db, STATEMENTS, locked=("select",))

    # ------------------------------------------------------------------ admission
    def admit(
        self,
        subjects: list[Subject],
        now_ms: int,
        *,
        input_tokens: int,
        requested_output: int | None,
        max_output: int,
        min_output: int,
    ) -> Admission | Throttled:
        """Inside an open write transaction. `requested_output` is the client's bound (all
        choices), `max_output` the model's; without the first, a token limit may cap the
        output (`Admission.output_cap`) as long as `min_output` still fits."""
        now_s = now_ms // 1000
        states = [self._load(s, now_ms) for s in subjects]
        token_states = [st for st in states if st.subject.limits.tokens_per_minute]
        output = requested_output if requested_output is not None else max_output
        output_cap: int | None = None
        if token_states and requested_output is None and max_output > 0:
            room = min(
                (st.subject.limits.tokens_per_minute or 0) - window.used(st.tokens)
                for st in token_states
            )
            if room - input_tokens < max_output:
                output = max(room - input_tokens, min_output)
                output_cap = output
        need = input_tokens + output
        for st in states:
            refused = self._check(st, need, now_ms)
            if refused is not None:
                if refused.notify:
                    self._save(st, now_ms)  # remember when the event fired; counts nothing
                return refused
        slots: list[str] = []
        for st in states:
            window.add(st.requests, now_s, 1)
            if st.subject.limits.tokens_per_minute:
                window.add(st.tokens, now_s, need)
            if st.subject.limits.max_concurrent:
                st.in_flight += 1
                slots.append(st.subject.id)
            self._save(st, now_ms)
        return Admission(
            second=now_s,
            tokens=need,
            output_cap=output_cap,
            token_subjects=tuple(st.subject.id for st in token_states),
            slots=tuple(slots),
            headers=_headers(states, now_ms),
        )

    def _check(self, st: _State, need: int, now_ms: int) -> Throttled | None:
        limits = st.subject.limits
        rpm, tpm, concurrent = (
            limits.requests_per_minute,
            limits.tokens_per_minute,
            limits.max_concurrent,
        )
        if rpm is not None and window.used(st.requests) + 1 > rpm:
            at = window.fits_at_ms(st.requests, 1, rpm, now_ms) or now_ms
            return self._throttled(st, "requests_per_minute", rpm, at, 1, now_ms)
        if tpm is not None and window.used(st.tokens) + need > tpm:
            fits = window.fits_at_ms(st.tokens, need, tpm, now_ms)
            # Larger than the whole limit: it never fits; a minute is the honest answer.
            at = fits if fits is not None else now_ms + window.WINDOW_S * 1000
            return self._throttled(st, "tokens_per_minute", tpm, at, need, now_ms)
        if concurrent is not None and st.in_flight + 1 > concurrent:
            return self._throttled(st, "max_concurrent", concurrent, now_ms, 1, now_ms)
        return None

    def _throttled(
        self, st: _State, limit: LimitName, value: int, at_ms: int, need: int, now_ms: int
    ) -> Throttled:
        notify = False
        if st.subject.kind == "customer":
            last = st.notified.get(limit)
            if last is None or now_ms - last >= NOTIFY_EVERY_MS:
                st.notified[limit] = now_ms
                notify = True
        headers = _headers([st], now_ms)
        retry = window.retry_after_s(at_ms, now_ms)
        headers["retry-after"] = str(retry)
        return Throttled(st.subject, limit, value, retry, need, headers, notify)

    # ------------------------------------------------------------------ settlement
    def settle(
        self,
        slots: tuple[str, ...],
        token_subjects: tuple[str, ...],
        second: int,
        delta: int,
        now_ms: int,
    ) -> None:
        """A call is over: give back its concurrency `slots`, and correct the tokens counted
        at admission by `delta` (actual minus counted) on `token_subjects`. One statement
        per subject that only gives a slot back, two for one whose tokens change."""
        for subject_id in dict.fromkeys(token_subjects + slots):  # admission's order
            slot = subject_id in slots
            if not delta or subject_id not in token_subjects:
                if slot:
                    self.sql.execute("release", subject_id)
                continue
            row = self.sql.one("select", subject_id)
            if row is None:
                continue
            tokens = _buckets(row[1])
            changed = window.adjust(tokens, second, delta)
            if not changed and not slot:
                continue
            in_flight = max(int(row[2]) - 1, 0) if slot else int(row[2])
            self.sql.execute("update", row[0], _json(tokens), in_flight, row[3], now_ms, subject_id)

    def release(self, subject_ids: tuple[str, ...]) -> None:
        """Give back the concurrency slots a call held (refused for money, or swept)."""
        for subject_id in subject_ids:
            self.sql.execute("release", subject_id)

    # ------------------------------------------------------------------ views
    def usage(self, subject_id: str, now_ms: int) -> Usage:
        row = self.sql.one("peek", subject_id)
        if row is None:
            return Usage(0, 0, 0)
        now_s = now_ms // 1000
        return Usage(
            window.used(window.live(_buckets(row[0]), now_s)),
            window.used(window.live(_buckets(row[1]), now_s)),
            int(row[2]),
        )

    # ------------------------------------------------------------------ rows
    def _load(self, subject: Subject, now_ms: int) -> _State:
        row = self.sql.one("select", subject.id)
        if row is None:
            self.sql.execute("insert", subject.id, now_ms)
            row = self.sql.one("select", subject.id)
        assert row is not None
        now_s = now_ms // 1000
        notified = msgspec.json.decode(row[3]) if row[3] else {}
        return _State(
            subject,
            window.live(_buckets(row[0]), now_s),
            window.live(_buckets(row[1]), now_s),
            int(row[2]),
            notified if isinstance(notified, dict) else {},
        )

    def _save(self, st: _State, now_ms: int) -> None:
        self.sql.execute(
            "update",
            _json(st.requests),
            _json(st.tokens),
            st.in_flight,
            _json(st.notified) if st.notified else None,
            now_ms,
            st.subject.id,
        )


def _headers(states: list[_State], now_ms: int) -> dict[str, str]:
    """Each trio from the subject with the least remaining (after this call, if admitted)."""
    headers: dict[str, str] = {}
    best: tuple[int, int, int] | None = None
    for st in states:
        rpm = st.subject.limits.requests_per_minute
        if rpm is not None:
            left = rpm - window.used(st.requests)
            if best is None or left < best[1]:
                best = (rpm, left, window.reset_ms(st.requests, now_ms))
    if best is not None:
        headers.update(trio("requests", *best))
    best = None
    for st in states:
        tpm = st.subject.limits.tokens_per_minute
        if tpm is not None:
            left = tpm - window.used(st.tokens)
            if best is None or left < best[1]:
                best = (tpm, left, window.reset_ms(st.tokens, now_ms))
    if best is not None:
        headers.update(trio("tokens", *best))
    return headers
