"""Server-sent events framing over raw bytes: the one SSE reader every streaming provider uses.

Upstream bytes arrive split anywhere. `SSEParser.feed` buffers them and returns each
complete event as one block of bytes: its lines joined by LF, without the blank line that
ended it. Line endings may be LF, CRLF or CR (a CRLF split across two reads included); they
are normalised to LF. Nothing is decoded to `str` and nothing is parsed as JSON here: the
providers decide which payloads are worth parsing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

from gateway.providers.base import UpstreamFailure

_LF = 10  # b"\n"[0]


class EventTooLarge(ValueError):
    """An event grew past the parser's `max_event_bytes` without ending."""


class SSEParser:
    """Incremental event framing. Not thread-safe; one parser per stream.

    `max_event_bytes`: an event that grows past it without ending raises EventTooLarge
    (its bytes are held in memory until it ends)."""

    __slots__ = ("_after_cr", "_ends_lf", "_max_event_bytes", "_pending", "_pending_bytes")

    def __init__(self, max_event_bytes: int | None = None) -> None:
        self._pending: list[bytes] = []  # bytes of the unfinished event, LF-normalised
        self._pending_bytes = 0
        self._max_event_bytes = max_event_bytes
        self._ends_lf = False  # the pending bytes end with LF
        self._after_cr = False  # the last read ended with CR (its LF may start the next read)

    def feed(self, data: bytes) -> list[bytes]:
        """The events completed by `data`, oldest first (often none, often one)."""
        if self._after_cr and data[:1] == b"\n":
            data = data[1:]  # the LF of a CRLF split between two reads
        if b"\r" in data:
            self._after_cr = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._after_cr = False
        if not data:
            return []
        if b"\n\n" not in data and not (self._ends_lf and data[0] == _LF):
            # No event ends in this read: keep the piece, join only once the event is whole
            # (a big event sent in many small reads is copied once, not once per read).
            self._pending.append(data)
            self._ends_lf = data[-1] == _LF
            self._pending_bytes += len(data)
            if self._max_event_bytes is not None and self._pending_bytes > self._max_event_bytes:
                raise EventTooLarge(self._max_event_bytes)
            return []
        if self._pending:
            self._pending.append(data)
            data = b"".join(self._pending)
            self._pending.clear()
        blocks = data.split(b"\n\n")
        rest = blocks.pop()
        self._pending_bytes = len(rest)
        if rest:
            self._pending.append(rest)
            if self._max_event_bytes is not None and len(rest) > self._max_event_bytes:
                raise EventTooLarge(self._max_event_bytes)
        self._ends_lf = rest[-1:] == b"\n"
        # Extra blank lines between events leave empty blocks or leading LFs: skip them.
        return [b.lstrip(b"\n") if b[0] == _LF else b for b in blocks if b.strip(b"\n")]

    def flush(self) -> list[bytes]:
        """At the end of the body: the last event, if the upstream did not end it."""
        block = b"".join(self._pending).strip(b"\n")
        self._pending.clear()
        self._pending_bytes = 0
        self._ends_lf = False
        return [block] if block else []


def event_data(block: bytes) -> bytes | None:
    """The event's `data` (its `data:` lines joined by LF, one leading space dropped from each),
    or None when it has no data line (comments, `event:`-only blocks)."""
    if block.startswith(b"data:") and b"\n" not in block:  # the common one-line event
        value = block[5:]
        return value[1:] if value[:1] == b" " else value
    lines: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value[:1] == b" " else value)
        elif line == b"data":
            lines.append(b"")
    return b"\n".join(lines) if lines else None


async def sse_events(
    body: AsyncIterable[bytes],
    *,
    max_bytes: int | None = None,
    max_event_bytes: int | None = None,
    source: str = "The upstream",
    section: str = "",
) -> AsyncGenerator[bytes, None]:
    """Event blocks from a byte stream (for example aiohttp's `response.content.iter_any()`).

    A body past `max_bytes` in all, or one event past `max_event_bytes`, ends the stream
    with UpstreamFailure("protocol"): a runaway upstream is cut, not followed forever. The
    message names `source` and the setting (under `section`, e.g. "[providers.x] ")."""
    parser = SSEParser(max_event_bytes)
    limit = max_bytes if max_bytes is not None else -1
    received = 0
    try:
        async for data in body:
            received += len(data)
            if received > limit >= 0:
                raise UpstreamFailure(
                    "protocol",
                    f"{source} sent more than {limit:,} bytes in one stream "
                    f"({section}max_stream_bytes); cut.",
                )
            for block in parser.feed(data):
                yield block
    except EventTooLarge:
        raise UpstreamFailure(
            "protocol",
            f"{source} sent a stream event larger than {max_event_bytes:,} bytes "
            f"({section}max_response_bytes); cut.",
        ) from None
    for block in parser.flush():
        yield block
