"""The proxy's upstream HTTP layer: the SSE parser, the aiohttp client, the OpenAI-compatible
provider and Anthropic's native stream, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ProviderSettings
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.anthropic_native import stream_message
from gateway.providers.base import ChatStream, StreamChunk, UpstreamFailure
from gateway.providers.mock import MockProvider
from gateway.providers.openai_compat import OpenAICompatProvider, _delta_tokens
from gateway.providers.registry import ProviderRegistry
from gateway.providers.sse import SSEParser, event_data, sse_events
from gateway.providers.upstream import UpstreamClient, UpstreamStream, timeouts
from gateway.tokens import TokenUsage
from tests.conftest import make_settings
from tests.fakes.fake_upstream import FakeUpstream, sse_bytes

KEY = "sk-local-secret-0123456789"


# ------------------------------------------------------------------------------ SSE parsing
def parse(pieces: list[bytes]) -> list[bytes]:
    parser = SSEParser()
    blocks = [b for piece in pieces for b in parser.feed(piece)]
    return blocks + parser.flush()


STREAM = (
    b": keep-alive\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: first\ndata:second\ndata\n\n\n\n"
    b"data: [DONE]\n\n"
)
BLOCKS = [
    b": keep-alive",
    b'event: message_start\ndata: {"a": 1}',
    b"data: first\ndata:second\ndata",
    b"data: [DONE]",
]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_parser_frames_events_whatever_the_line_endings_and_split_points(eol: bytes) -> None:
    raw = STREAM.replace(b"\n", eol)
    assert parse([raw]) == BLOCKS
    for cut in range(1, len(raw)):
        assert parse([raw[:cut], raw[cut:]]) == BLOCKS, cut
    assert parse([raw[i : i + 1] for i in range(len(raw))]) == BLOCKS


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_parser_is_indifferent_to_how_reads_split_the_body(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert parse([STREAM[a:b] for a, b in itertools.pairwise(bounds)]) == BLOCKS


def test_parser_flushes_an_unterminated_last_event_and_skips_blank_lines() -> None:
    assert parse([b"\n\n\ndata: x\n\n\n", b"data: y\n"]) == [b"data: x", b"data: y"]
    assert parse([b"\n\n"]) == []
    assert parse([]) == []


def test_event_data() -> None:
    assert event_data(b"data: {}") == b"{}"
    assert event_data(b"data:{}") == b"{}"
    assert event_data(b"data:  two spaces") == b" two spaces"
    assert event_data(b"data: first\ndata:second\ndata") == b"first\nsecond\n"
    assert event_data(b"event: ping\ndata: {}\nid: 3") == b"{}"
    assert event_data(b": comment") is None
    assert event_data(b"event: ping") is None


async def test_sse_events_over_an_async_byte_stream() -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(STREAM), 5):
            yield STREAM[i : i + 5]

    assert [b async for b in sse_events(body())] == BLOCKS


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake
    assert fake.unexpected == [], "requests nobody queued a reply for"
    assert fake.pending() == 0, "queued replies nobody asked for"


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def openai(upstream: FakeUpstream) -> AsyncIterator[Any]:
    """OpenAI-compatible providers named 'local' (on the fake upstream by default)."""
    clients: list[UpstreamClient] = []

    def make(*, base_url: str | None = None, timeout_s: float = 5.0) -> OpenAICompatProvider:
        settings = ProviderSettings(
            name="local",
            kind="openai",
            base_url=(base_url or upstream.url) + "/v1",
            api_key=KEY,
            timeout_s=timeout_s,
        )
        clients.append(client := UpstreamClient(settings))
        return OpenAICompatProvider(settings, client)

    yield make
    for client in clients:
        await client.aclose()


def chunk(delta: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "llama",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": None}],
        "usage": None,
    }
    out.update(extra)
    return out


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
BODY = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def collect(stream: ChatStream) -> list[StreamChunk]:
    try:
        return [c async for c in stream]
    finally:
        await stream.aclose()


# ----------------------------------------------------------------------- OpenAI-compatible
async def test_chat_posts_under_the_base_url_with_the_key(
    openai: Any, upstream: FakeUpstream
) -> None:
    upstream.add(json={"id": "x", "object": "chat.completion", "choices": [], "usage": USAGE})
    result = await openai().chat({"model": "llama", "messages": []})
    assert result.usage == TokenUsage(input_tokens=11, output_tokens=7)
    seen = upstream.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json() == {"model": "llama", "messages": []}


async def test_embeddings_post_to_their_path(openai: Any, upstream: FakeUpstream) -> None:
    upstream.add(json={"object": "list", "data": [], "usage": {"prompt_tokens": 3}})
    result = await openai().embeddings({"model": "e", "input": "x"})
    assert result.usage.input_tokens == 3
    assert upstream.requests[0].path == "/v1/embeddings"


async def test_redirects_are_not_followed(openai: Any, upstream: FakeUpstream) -> None:
    upstream.add(status=307, headers={"location": "http://127.0.0.1:9/v1/chat/completions"})
    with pytest.raises(UpstreamFailure) as info:
        await openai().chat({"model": "llama", "messages": []})
    assert (info.value.kind, info.value.status) == ("status", 307)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
async def test_error_statuses_are_kept_and_keys_redacted(
    openai: Any, upstream: FakeUpstream, status: int
) -> None:
    upstream.add(
        status=status,
        json={"error": {"message": f"Incorrect API key provided: {KEY}", "code": "bad"}},
    )
    with pytest.raises(UpstreamFailure) as info:
        await openai().chat({"model": "llama", "messages": []})
    assert (info.value.kind, info.value.status, info.value.code) == ("status", status, "bad")
    assert KEY not in info.value.message
    assert info.value.message == "Incorrect API key provided: [redacted]"


async def test_stream_error_status_before_the_first_byte(
    openai: Any, upstream: FakeUpstream
) -> None:
    upstream.add(status=401, json={"error": {"message": "no"}})
    with pytest.raises(UpstreamFailure) as info:
        await openai().chat_stream(BODY)
    assert (info.value.kind, info.value.status, info.value.message) == ("status", 401, "no")


async def test_timeout_before_the_answer(openai: Any, upstream: FakeUpstream) -> None:
    upstream.add(hang=True)
    upstream.add(hang=True)
    provider = openai(timeout_s=0.2)
    for call in (provider.chat, provider.chat_stream):
        with pytest.raises(UpstreamFailure) as info:
            await call(BODY)
        assert info.value.kind == "timeout"
        assert info.value.message == "Provider 'local' did not answer in time."


async def test_connection_refused(openai: Any) -> None:
    provider = openai(base_url=refused_url())
    for call in (provider.chat, provider.chat_stream, provider.embeddings):
        with pytest.raises(UpstreamFailure) as info:
            await call(BODY)
        assert info.value.kind == "connect"
        assert info.value.message.startswith("Could not reach provider 'local': ")
        assert KEY not in info.value.message


async def test_stream_relays_payloads_byte_for_byte(openai: Any, upstream: FakeUpstream) -> None:
    payloads = [
        msgspec.json.encode(chunk({"role": "assistant", "content": ""})),
        msgspec.json.encode(chunk({"content": "Hello there"})),
        msgspec.json.encode(chunk({"reasoning_content": "hmm, let me see"})),
        msgspec.json.encode(
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "function": {"name": "f", "arguments": '{"city": "Paris"}'}}
                    ]
                }
            )
        ),
        msgspec.json.encode(chunk({}, finish_reason="stop")),
        msgspec.json.encode(chunk(choices=[], usage=USAGE)),
    ]
    raw = b"".join(b"data: " + p + b"\r\n\r\n" for p in payloads)
    raw += b": comment\n\ndata: not json\n\ndata: [DONE]\n\ndata: after done\n\n"
    upstream.add(pieces=[raw[i : i + 50] for i in range(0, len(raw), 50)])
    chunks = await collect(await openai().chat_stream(BODY))
    assert [c.data for c in chunks] == payloads
    assert [c.output_tokens for c in chunks] == [0, 2, 3, 4, 0, 0]
    assert chunks[-1].usage == TokenUsage(input_tokens=11, output_tokens=7)
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize(
    "payload",
    [
        chunk({"content": "abcdefgh"}),
        chunk({"content": None, "reasoning_content": "abcdefghijkl"}),
        chunk({"content": ["odd", "list"]}),  # not a str: the generic path
        chunk({"tool_calls": [{"function": {"arguments": "12345678"}}, {"function": None}]}),
        chunk({"tool_calls": None}),
        chunk(None, choices=None),
        chunk(None, choices=[{"index": 0, "delta": "not an object"}]),
        chunk(None, choices=[{"index": 0}]),
        chunk({"content": "x"}, usage={}),
    ],
)
async def test_stream_token_estimates_match_a_full_decode(
    openai: Any, upstream: FakeUpstream, payload: dict[str, Any]
) -> None:
    upstream.add(pieces=sse_bytes(payload))
    chunks = await collect(await openai().chat_stream(BODY))
    assert len(chunks) == 1
    assert chunks[0].output_tokens == _delta_tokens(payload.get("choices"))
    assert json.loads(chunks[0].data) == payload


async def test_stream_usage_on_the_last_content_chunk_is_split_off(
    openai: Any, upstream: FakeUpstream
) -> None:
    upstream.add(pieces=sse_bytes(chunk({"content": "hi"}, usage=USAGE)))
    chunks = await collect(await openai().chat_stream(BODY))
    assert [json.loads(c.data)["usage"] for c in chunks] == [None, USAGE]
    assert [c.output_tokens for c in chunks] == [1, 0]
    assert chunks[1].usage == TokenUsage(input_tokens=11, output_tokens=7)


async def test_stream_error_event_raises_status(openai: Any, upstream: FakeUpstream) -> None:
    upstream.add(
        pieces=sse_bytes(
            chunk({"content": "one"}), {"error": {"message": f"busy {KEY}", "code": "busy"}}
        )
    )
    stream = await openai().chat_stream(BODY)
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for c in stream:
            got.append(c)
    await stream.aclose()
    assert len(got) == 1
    assert (info.value.kind, info.value.status, info.value.code) == ("status", 502, "busy")
    assert info.value.message == "busy [redacted]"


async def test_stream_cut_mid_way_yields_what_came_then_raises_connect(
    openai: Any, upstream: FakeUpstream
) -> None:
    upstream.add(
        pieces=sse_bytes(chunk({"content": "Hello"}), chunk({"content": " world, again"})),
        end="cut",
    )
    stream = await openai().chat_stream(BODY)
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for c in stream:
            got.append(c)
    await stream.aclose()
    assert [c.output_tokens for c in got] == [1, 3]
    assert info.value.kind == "connect"
    assert info.value.message == "Could not reach provider 'local': ClientPayloadError."


async def test_stream_silent_mid_way_raises_timeout(openai: Any, upstream: FakeUpstream) -> None:
    upstream.add(pieces=sse_bytes(chunk({"content": "Hello"})), end="hang")
    stream = await openai(timeout_s=0.2).chat_stream(BODY)
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for c in stream:
            got.append(c)
    await stream.aclose()
    assert [c.output_tokens for c in got] == [1]
    assert info.value.kind == "timeout"


async def test_stream_iterates_once_and_closes_early(openai: Any, upstream: FakeUpstream) -> None:
    reply = upstream.add(
        pieces=sse_bytes(chunk({"content": "a"}), chunk({"content": "b"})), gate_after=1
    )
    stream = await openai().chat_stream(BODY)
    assert aiter(stream) is aiter(stream)
    first = await anext(aiter(stream))
    assert json.loads(first.data)["choices"][0]["delta"]["content"] == "a"
    assert reply.served == 1
    await stream.aclose()
    assert isinstance(stream, UpstreamStream) and stream.response_closed
    upstream.open_gate()


async def test_a_finished_stream_hands_its_connection_back(
    openai: Any, upstream: FakeUpstream
) -> None:
    for _ in range(3):
        upstream.add(pieces=[*sse_bytes(chunk({"content": "a"})), b"data: [DONE]\n\n"])
    provider = openai()
    for _ in range(3):
        await collect(await provider.chat_stream(BODY))
        # The body's end may trail [DONE]: it is read in the background, then the
        # connection goes back to the pool.
        await provider.client.drained()
    # One kept-alive connection served all three streams, one after the other.
    assert len(upstream.requests) == 3
    assert len({r.peer for r in upstream.requests}) == 1


# ----------------------------------------------------------------------- Anthropic native
def anthropic_events() -> list[bytes]:
    def ev(obj: dict[str, Any]) -> bytes:
        return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()

    return [
        ev(
            {
                "type": "message_start",
                "message": {"id": "m", "usage": {"input_tokens": 9, "output_tokens": 1}},
            }
        ),
        b": ping\n\n",
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hello, world"},
            }
        ),
        ev({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}}),
        ev({"type": "message_stop"}),
    ]


@pytest.fixture
async def anthropic(upstream: FakeUpstream) -> AsyncIterator[AnthropicProvider]:
    settings = ProviderSettings(
        name="anthropic", kind="anthropic", base_url=upstream.url, api_key=KEY, timeout_s=5.0
    )
    client = UpstreamClient(settings)
    yield AnthropicProvider(settings, client, lambda model: 1024)
    await client.aclose()


async def test_native_stream_relays_events_and_reads_usage(
    anthropic: AnthropicProvider, upstream: FakeUpstream
) -> None:
    events = anthropic_events()
    raw = b"".join(events)
    upstream.add(pieces=[raw[i : i + 9] for i in range(0, len(raw), 9)])
    stream = await stream_message(anthropic, {"model": "c", "max_tokens": 5, "stream": True})
    assert stream.framed
    chunks = await collect(stream)
    assert [c.data for c in chunks] == events
    assert [c.output_tokens for c in chunks] == [0, 0, 3, 0, 0]
    assert chunks[-1].usage == TokenUsage(input_tokens=9, output_tokens=5)
    assert upstream.requests[0].headers["x-api-key"] == KEY


async def test_native_stream_cut_counts_then_raises(
    anthropic: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(pieces=anthropic_events()[:3], end="cut")
    stream = await stream_message(anthropic, {"model": "c", "max_tokens": 5, "stream": True})
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for c in stream:
            got.append(c)
    await stream.aclose()
    assert sum(c.output_tokens for c in got) == 3
    assert info.value.kind == "connect"
    assert KEY not in info.value.message


async def test_native_stream_ending_early_raises_connect(
    anthropic: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(pieces=anthropic_events()[:3])
    stream = await stream_message(anthropic, {"model": "c", "max_tokens": 5, "stream": True})
    with pytest.raises(UpstreamFailure) as info:
        await collect(stream)
    assert info.value.message == "The Anthropic stream ended before message_stop."


async def test_native_stream_error_event(
    anthropic: AnthropicProvider, upstream: FakeUpstream
) -> None:
    error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
    error += b'"message": "Overloaded"}}\n\n'
    upstream.add(pieces=[anthropic_events()[0], error])
    stream = await stream_message(anthropic, {"model": "c", "max_tokens": 5, "stream": True})
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for c in stream:
            got.append(c)
    await stream.aclose()
    assert got[-1].data == error
    assert (info.value.status, info.value.code, info.value.message) == (
        502,
        "overloaded_error",
        "Overloaded",
    )


# ---------------------------------------------------------------------------------- registry
CONFIG = """
[providers.local]
base_url = "{url}/v1"
timeout_s = 42
"""


def test_registry_is_built_without_a_running_loop(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, CONFIG.format(url="http://127.0.0.1:9"))
    registry = ProviderRegistry(settings, lambda provider, model: 1000)
    assert set(registry.providers) == {"openai", "anthropic", "mock", "local"}
    assert isinstance(registry.get("mock", "mock-fast"), MockProvider)
    local = registry.get("local", "llama")
    assert isinstance(local, OpenAICompatProvider)
    assert local.client.url("/chat/completions").path == "/v1/chat/completions"


def test_timeouts_follow_timeout_s_with_connect_capped() -> None:
    t = timeouts(42)
    assert (t.total, t.connect, t.sock_read, t.sock_connect) == (None, 42, 42, 10.0)
    t = timeouts(3)
    assert (t.total, t.connect, t.sock_read, t.sock_connect) == (None, 3, 3, 3)


async def test_registry_lifecycle(tmp_path: Path, upstream: FakeUpstream) -> None:
    settings = make_settings(tmp_path, CONFIG.format(url=upstream.url))
    registry = ProviderRegistry(settings, lambda provider, model: 1000)
    local = registry.get("local", "llama")
    assert isinstance(local, OpenAICompatProvider)
    await registry.open()
    session = local.client.session()
    await registry.open()  # idempotent
    assert local.client.session() is session
    assert (
        session.connector is not None and session.connector.limit == 10_000
    )  # [providers.X] max_connections
    assert session.trust_env is False
    upstream.add(json={"object": "list", "data": [], "usage": {"prompt_tokens": 1}})
    await local.embeddings({"model": "e", "input": "x"})
    await registry.aclose()
    assert session.closed
    with pytest.raises(UpstreamFailure) as info:
        await local.chat({"model": "llama", "messages": []})
    assert info.value.kind == "connect"
    # Started again (a gateway stopped and started anew): a fresh pool.
    await registry.open()
    assert local.client.session() is not session
    upstream.add(json={"object": "list", "data": [], "usage": {"prompt_tokens": 2}})
    assert (await local.embeddings({"model": "e", "input": "x"})).usage.input_tokens == 2
    await registry.aclose()


async def test_a_client_opens_itself_on_first_use(upstream: FakeUpstream) -> None:
    settings = ProviderSettings(name="local", kind="openai", base_url=upstream.url, api_key=None)
    client = UpstreamClient(settings)
    provider = OpenAICompatProvider(settings, client)
    upstream.add(json={"object": "list", "data": [], "usage": {"prompt_tokens": 1}})
    result = await provider.embeddings({"model": "e", "input": "x"})
    assert result.usage.input_tokens == 1
    assert "authorization" not in upstream.requests[0].headers
    await client.aclose()
    await client.aclose()
