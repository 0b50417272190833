"""Server-sent events framing over raw bytes: the one SSE reader every streaming provider uses.

Upstream bytes arrive split anywhere. `SSEParser.feed` buffers them and returns each
complete event as one block of bytes: its lines joined by LF, without the blank line that
ended it. Line endings may be LF, CRLF or CR (a CRLF split across two reads included); they
are normalised to LF. Nothing is decoded to `str` and nothing is parsed as JSON here: the
providers decide which payloads are worth parsing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

_LF = 10  # b"\n"[0]


class SSEParser:
    """Incremental event framing. Not thread-safe; one parser per stream."""

    __slots__ = ("_after_cr", "_ends_lf", "_pending")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # bytes of the unfinished event, LF-normalised
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
            return []
        if self._pending:
            self._pending.append(data)
            data = b"".join(self._pending)
            self._pending.clear()
        blocks = data.split(b"\n\n")
        rest = blocks.pop()
        if rest:
            self._pending.append(rest)
        self._ends_lf = rest[-1:] == b"\n"
        # Extra blank lines between events leave empty blocks or leading LFs: skip them.
        return [b.lstrip(b"\n") if b[0] == _LF else b for b in blocks if b.strip(b"\n")]

    def flush(self) -> list[bytes]:
        """At the end of the body: the last event, if the upstream did not end it."""
        block = b"".join(self._pending).strip(b"\n")
        self._pending.clear()
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


async def sse_events(body: AsyncIterable[bytes]) -> AsyncGenerator[bytes, None]:
    """Event blocks from a byte stream (for example aiohttp's `response.content.iter_any()`)."""
    parser = SSEParser()
    async for data in body:
        for block in parser.feed(data):
            yield block
    for block in parser.flush():
        yield block
