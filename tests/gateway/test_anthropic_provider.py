"""The Anthropic adapter: OpenAI requests in, Messages API calls out, OpenAI shapes back."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.config import ProviderSettings
from gateway.providers.anthropic import (
    AnthropicProvider,
    StreamTranslator,
    to_anthropic_request,
    to_openai_completion,
)
from gateway.providers.base import StreamChunk, UpstreamFailure
from gateway.providers.upstream import UpstreamClient, UpstreamStream
from gateway.tokens import TokenUsage
from tests.fakes.fake_upstream import FakeUpstream, Seen

MESSAGES_PATH = "/v1/messages"
API_KEY = "sk-ant-test"
MODEL = "claude-sonnet-4-5"
SNAPSHOT = "claude-sonnet-4-5-20250929"

_stream_event = pydantic.TypeAdapter(RawMessageStreamEvent)


def default_max(model: str) -> int:
    return {"claude-sonnet-4-5": 64000}.get(model, 4096)


def translate(body: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    return to_anthropic_request({"model": MODEL, **body}, default_max, stream=stream)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake
    assert fake.unexpected == [], "requests nobody queued a reply for"
    assert fake.pending() == 0, "queued replies nobody asked for"


def settings_for(
    base_url: str, api_key: str | None = API_KEY, timeout_s: float = 5.0
) -> ProviderSettings:
    return ProviderSettings(
        name="anthropic", kind="anthropic", base_url=base_url, api_key=api_key, timeout_s=timeout_s
    )


@pytest.fixture
async def make_provider(upstream: FakeUpstream) -> AsyncIterator[Any]:
    """Providers on the fake upstream (or elsewhere); their sessions close with the test."""
    clients: list[UpstreamClient] = []

    def make(
        api_key: str | None = API_KEY, *, timeout_s: float = 5.0, base_url: str | None = None
    ) -> AnthropicProvider:
        settings = settings_for(base_url or upstream.url, api_key, timeout_s)
        clients.append(client := UpstreamClient(settings))
        return AnthropicProvider(settings, client, default_max)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def provider(make_provider: Any) -> AnthropicProvider:
    return make_provider()


def anthropic_message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": SNAPSHOT,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "output_tokens": 6,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    message.update(overrides)
    # Keeps the fixtures honest: each one must be a Message the real API could send.
    Message.model_validate(message)
    return message


def sse(*events: dict[str, Any]) -> list[bytes]:
    out = []
    for event in events:
        # ping and error are wire-only events the SDK's union does not model.
        if event["type"] not in ("ping", "error"):
            _stream_event.validate_python(event)
        out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    return out


def sent(upstream: FakeUpstream) -> Seen:
    assert len(upstream.requests) == 1
    return upstream.requests[0]


def sent_json(upstream: FakeUpstream) -> dict[str, Any]:
    return json.loads(sent(upstream).content)


def refused_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decoded(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [json.loads(c.data) for c in chunks]


async def collect(stream: Any) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


# --------------------------------------------------------------------- request translation
def test_system_and_developer_messages_become_top_level_system() -> None:
    out = translate(
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hi"},
            ]
        }
    )
    assert out["system"] == "You are terse.\n\nAnswer in French."
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_no_system_field_without_system_messages() -> None:
    out = translate({"messages": [{"role": "user", "content": "Hi"}]})
    assert "system" not in out


def test_consecutive_same_role_messages_are_merged() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "three"},
                {"role": "assistant", "content": "four"},
                {"role": "user", "content": "five"},
            ]
        }
    )
    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "five"}]},
    ]


def test_empty_turns_are_dropped_so_alternation_survives() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "b"},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_tools_and_tool_choice() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    out = translate({"messages": [{"role": "user", "content": "?"}], "tools": tools})
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out

    def choice(value: Any, **extra: Any) -> Any:
        body = {
            "messages": [{"role": "user", "content": "?"}],
            "tools": tools,
            "tool_choice": value,
        }
        return translate({**body, **extra}).get("tool_choice")

    assert choice("auto") == {"type": "auto"}
    assert choice("required") == {"type": "any"}
    assert choice("none") == {"type": "none"}
    assert choice({"type": "function", "function": {"name": "now"}}) == {
        "type": "tool",
        "name": "now",
    }
    assert choice("required", parallel_tool_calls=False) == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }
    assert choice(None, parallel_tool_calls=False) == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = translate({"messages": [{"role": "user", "content": "?"}], "tool_choice": "required"})
    assert "tools" not in out and "tool_choice" not in out


def test_assistant_tool_calls_and_tool_results() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{not json"},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {
                    "role": "tool",
                    "tool_call_id": "call_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"role": "user", "content": "Thanks"},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "21C"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_assistant_with_only_tool_calls_and_null_content() -> None:
    out = translate(
        {
            "messages": [
                {"role": "user", "content": "?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"x": 1.50}'},
                        }
                    ],
                },
            ]
        }
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_9", "name": "f", "input": {"x": Decimal("1.50")}}
        ],
    }


def test_tool_results_come_first_in_a_merged_user_turn() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "also this"},
                {"role": "tool", "tool_call_id": "c", "content": "done"},
            ]
        }
    )
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_result", "text"]


def test_images_data_and_http_urls() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What are these?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                        },
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What are these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_percent_encoded_data_url_is_reencoded_as_base64() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/svg+xml,%3Csvg%2F%3E"},
                        }
                    ],
                }
            ]
        }
    )
    source = out["messages"][0]["content"][0]["source"]
    assert source == {"type": "base64", "media_type": "image/svg+xml", "data": "PHN2Zy8+"}


def test_max_tokens_default_and_overrides() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert translate({"messages": messages})["max_tokens"] == 64000
    assert translate({"messages": messages, "max_tokens": None})["max_tokens"] == 64000
    assert translate({"messages": messages, "max_tokens": 100})["max_tokens"] == 100
    assert translate({"messages": messages, "max_completion_tokens": 50})["max_tokens"] == 50
    both = {"messages": messages, "max_tokens": 100, "max_completion_tokens": 50}
    assert translate(both)["max_tokens"] == 50
    both = {"messages": messages, "max_tokens": 30, "max_completion_tokens": 50}
    assert translate(both)["max_tokens"] == 30
    other = to_anthropic_request(
        {"model": "claude-x", "messages": messages}, default_max, stream=False
    )
    assert other["max_tokens"] == 4096


def test_sampling_stop_user_and_dropped_fields() -> None:
    out = translate(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": Decimal("0.7"),
            "top_p": Decimal("0.9"),
            "stop": "END",
            "user": "user-42",
            "n": 1,
            "stream_options": {"include_usage": True},
            "presence_penalty": Decimal("0.5"),
            "frequency_penalty": 0,
            "logprobs": False,
            "seed": 7,
            "response_format": {"type": "text"},
        },
        stream=True,
    )
    assert out == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 64000,
        "temperature": Decimal("0.7"),
        "top_p": Decimal("0.9"),
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }
    listed = translate({"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"]})
    assert listed["stop_sequences"] == ["a", "b"]
    assert "stream" not in listed


def test_temperature_is_clamped_to_anthropic_range() -> None:
    out = translate({"messages": [{"role": "user", "content": "x"}], "temperature": Decimal("1.6")})
    assert out["temperature"] == 1
    out = translate({"messages": [{"role": "user", "content": "x"}], "temperature": 0})
    assert out["temperature"] == 0


# -------------------------------------------------------------------- response translation
def test_text_response_translation_parses_with_openai_sdk() -> None:
    result = to_openai_completion(anthropic_message(), MODEL)
    body = result.body
    completion = ChatCompletion.model_validate(body)
    assert completion.id == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert completion.object == "chat.completion"
    assert completion.model == SNAPSHOT
    assert isinstance(body["created"], int)
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hello!"
    assert choice.message.tool_calls is None
    assert "tool_calls" not in body["choices"][0]["message"]
    assert choice.finish_reason == "stop"
    assert body["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 6,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert result.usage == TokenUsage(input_tokens=12, output_tokens=6)


def test_tool_use_response_translation() -> None:
    message = anthropic_message(
        content=[
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "get_weather",
                "input": {"city": "Paris", "days": 2, "metric": True},
            },
            {"type": "tool_use", "id": "toolu_02", "name": "now", "input": {}},
        ],
        stop_reason="tool_use",
    )
    completion = ChatCompletion.model_validate(to_openai_completion(message, MODEL).body)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 2
    assert calls[0].id == "toolu_01A09q90qw90lq917835lq9"
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 2, "metric": True}
    assert json.loads(calls[1].function.arguments) == {}


def test_tool_only_response_has_null_content() -> None:
    message = anthropic_message(
        content=[{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        stop_reason="tool_use",
    )
    body = to_openai_completion(message, MODEL).body
    assert body["choices"][0]["message"]["content"] is None
    ChatCompletion.model_validate(body)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: str | None, finish: str) -> None:
    body = to_openai_completion(anthropic_message(stop_reason=stop_reason), MODEL).body
    assert body["choices"][0]["finish_reason"] == finish
    ChatCompletion.model_validate(body)


def test_cache_usage_is_folded_into_prompt_tokens() -> None:
    usage = {
        "input_tokens": 20,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 300,
        "output_tokens": 50,
    }
    result = to_openai_completion(anthropic_message(usage=usage), MODEL)
    assert result.usage == TokenUsage(
        input_tokens=1320, cached_tokens=1000, cache_write_tokens=300, output_tokens=50
    )
    assert result.body["usage"] == {
        "prompt_tokens": 1320,
        "completion_tokens": 50,
        "total_tokens": 1370,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 300},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    completion = ChatCompletion.model_validate(result.body)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 1000


def test_null_cache_fields_count_as_zero() -> None:
    usage = {
        "input_tokens": 5,
        "output_tokens": 1,
        "cache_read_input_tokens": None,
        "cache_creation_input_tokens": None,
    }
    result = to_openai_completion(anthropic_message(usage=usage), MODEL)
    assert result.usage == TokenUsage(input_tokens=5, output_tokens=1)


# ----------------------------------------------------------------------- non-stream calls
async def test_chat_sends_headers_and_translated_body(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(json=anthropic_message())
    result = await provider.chat(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "temperature": Decimal("0.25"),
            # A non-streaming call must not ask Anthropic for SSE.
            "stream": True,
        }
    )
    request = sent(upstream)
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    body = json.loads(request.content)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 64000,
        "temperature": 0.25,
    }
    assert b"0.25" in request.content
    assert result.body["choices"][0]["message"]["content"] == "Hello!"
    assert result.usage.output_tokens == 6


async def test_chat_without_api_key_sends_no_key_header(
    make_provider: Any, upstream: FakeUpstream
) -> None:
    upstream.add(json=anthropic_message())
    await make_provider(api_key=None).chat({"model": MODEL, "messages": []})
    request = sent(upstream)
    assert "x-api-key" not in request.headers
    assert request.headers["anthropic-version"] == "2023-06-01"


async def test_base_url_path_is_kept(make_provider: Any, upstream: FakeUpstream) -> None:
    upstream.add(json=anthropic_message())
    await make_provider(base_url=upstream.url + "/proxy/").chat({"model": MODEL, "messages": []})
    assert sent(upstream).path == "/proxy/v1/messages"


def test_provider_basics(provider: AnthropicProvider) -> None:
    assert provider.name == "anthropic"
    assert provider.output_limit_param(MODEL) == "max_tokens"


async def test_embeddings_are_unsupported(provider: AnthropicProvider) -> None:
    with pytest.raises(UpstreamFailure) as info:
        await provider.embeddings({"model": MODEL, "input": "x"})
    assert info.value.kind == "unsupported"


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("status", "error_type", "message"),
    [
        (500, "api_error", "Internal server error"),
        (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."),
        (529, "overloaded_error", "Overloaded"),
        (400, "invalid_request_error", "messages: roles must alternate"),
        (401, "authentication_error", "invalid x-api-key"),
    ],
)
async def test_error_status_mapping(
    provider: AnthropicProvider,
    upstream: FakeUpstream,
    status: int,
    error_type: str,
    message: str,
) -> None:
    upstream.add(
        status=status,
        json={"type": "error", "error": {"type": error_type, "message": message}},
    )
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    failure = info.value
    assert (failure.kind, failure.status, failure.code, failure.message) == (
        "status",
        status,
        error_type,
        message,
    )


async def test_an_echoed_api_key_is_not_in_the_failure(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(
        status=401,
        json={
            "type": "error",
            "error": {"type": "authentication_error", "message": f"bad key {API_KEY}"},
        },
    )
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert info.value.status == 401
    assert API_KEY not in info.value.message and "[redacted]" in info.value.message


async def test_non_json_error_body(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    upstream.add(status=502, text="<html>Bad Gateway</html>")
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert info.value.kind == "status"
    assert info.value.status == 502
    assert info.value.code is None
    assert "502" in info.value.message
    assert "<html>" not in info.value.message


async def test_timeout_maps_to_timeout(make_provider: Any, upstream: FakeUpstream) -> None:
    upstream.add(hang=True)  # reads the request, never answers
    with pytest.raises(UpstreamFailure) as info:
        await make_provider(timeout_s=0.2).chat(
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        )
    assert info.value.kind == "timeout"
    assert info.value.status is None
    assert info.value.message.startswith("The Anthropic API timed out: ")


async def test_connect_error_maps_to_connect(make_provider: Any) -> None:
    provider = make_provider(base_url=f"http://127.0.0.1:{refused_port()}")
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert info.value.kind == "connect"
    assert info.value.message.startswith("The Anthropic API could not be reached: ")
    assert API_KEY not in info.value.message


async def test_garbage_success_body_is_a_protocol_failure(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(text="not json")
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert info.value.kind == "protocol"


async def test_huge_body_sent_in_small_pieces_is_read_whole(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    text = "word " * 400_000  # a 2 MB reply, written 4 KB at a time
    raw = json.dumps(anthropic_message(content=[{"type": "text", "text": text}])).encode()
    upstream.add(
        pieces=[raw[i : i + 4096] for i in range(0, len(raw), 4096)],
        headers={"content-type": "application/json"},
    )
    result = await provider.chat({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert result.body["choices"][0]["message"]["content"] == text
    assert result.usage.output_tokens == 6


async def test_stream_timeout_before_start(make_provider: Any, upstream: FakeUpstream) -> None:
    upstream.add(hang=True)
    with pytest.raises(UpstreamFailure) as info:
        await make_provider(timeout_s=0.2).chat_stream(
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
        )
    assert info.value.kind == "timeout"


async def test_stream_connect_refused(make_provider: Any) -> None:
    provider = make_provider(base_url=f"http://127.0.0.1:{refused_port()}")
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat_stream({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert info.value.kind == "connect"


async def test_stream_error_status_raises_before_returning(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(
        status=429,
        json={"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}},
    )
    with pytest.raises(UpstreamFailure) as info:
        await provider.chat_stream({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert (info.value.kind, info.value.status, info.value.code, info.value.message) == (
        "status",
        429,
        "rate_limit_error",
        "Slow down",
    )


# ------------------------------------------------------------------------------- streaming
def realistic_stream() -> list[dict[str, Any]]:
    """Text then a tool call, as Anthropic documents its SSE stream."""
    return [
        {
            "type": "message_start",
            "message": {
                "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                "type": "message",
                "role": "assistant",
                "model": SNAPSHOT,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 472,
                    "cache_creation_input_tokens": 100,
                    "cache_read_input_tokens": 2000,
                    "output_tokens": 2,
                },
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Okay, let me check"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " the weather."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"location": "San Fra'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {
                "type": "input_json_delta",
                "partial_json": 'ncisco, CA", "unit": "celsius"}',
            },
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        },
        {"type": "message_stop"},
    ]


async def test_stream_translation(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    raw = b"".join(sse(*realistic_stream()))
    # Network reads split lines anywhere; the parser must not care where.
    pieces = [raw[i : i + 37] for i in range(0, len(raw), 37)]
    upstream.add(pieces=pieces)

    stream = await provider.chat_stream(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Weather in SF?"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    chunks = await collect(stream)
    await stream.aclose()

    body = sent_json(upstream)
    assert body["stream"] is True
    assert "stream_options" not in body

    objs = decoded(chunks)
    for obj in objs:
        ChatCompletionChunk.model_validate(obj)
        assert obj["id"] == "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U"
        assert obj["object"] == "chat.completion.chunk"
        assert obj["model"] == SNAPSHOT
        assert obj["created"] == objs[0]["created"]

    deltas = [o["choices"][0]["delta"] if o["choices"] else None for o in objs]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Okay, let me check"},
        {"content": " the weather."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location": "San Fra'}}]},
        {
            "tool_calls": [
                {"index": 0, "function": {"arguments": 'ncisco, CA", "unit": "celsius"}'}}
            ]
        },
        {},
        None,
    ]
    finishes = [o["choices"][0]["finish_reason"] for o in objs if o["choices"]]
    assert finishes == [None] * 6 + ["tool_calls"]

    arguments = "".join(
        call["function"].get("arguments", "")
        for d in deltas
        if d and "tool_calls" in d
        for call in d["tool_calls"]
    )
    assert json.loads(arguments) == {"location": "San Francisco, CA", "unit": "celsius"}

    final = chunks[-1]
    assert objs[-1]["choices"] == []
    assert final.usage == TokenUsage(
        input_tokens=2572, cached_tokens=2000, cache_write_tokens=100, output_tokens=89
    )
    assert objs[-1]["usage"] == {
        "prompt_tokens": 2572,
        "completion_tokens": 89,
        "total_tokens": 2661,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.output_tokens > 0 for c in chunks] == [
        False,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
    ]


async def test_stream_with_two_tool_calls_numbers_them_from_zero() -> None:
    translator = StreamTranslator(MODEL)
    events = [
        realistic_stream()[0],
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_a", "name": "a", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_b", "name": "b", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"k": 1}'},
        },
    ]
    objs = [json.loads(c.data) for e in events for c in translator.feed(e)]
    calls = [o["choices"][0]["delta"]["tool_calls"][0] for o in objs[1:]]
    assert [(c["index"], c.get("id")) for c in calls] == [
        (0, "toolu_a"),
        (0, None),
        (1, "toolu_b"),
        (1, None),
    ]


async def test_stream_is_read_incrementally(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    pieces = sse(*realistic_stream())
    # The fake sends the first event, then holds the rest until the gate opens.
    reply = upstream.add(pieces=pieces, gate_after=1)
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    iterator = aiter(stream)
    first = await anext(iterator)
    assert json.loads(first.data)["choices"][0]["delta"]["role"] == "assistant"
    assert reply.served == 1 < len(pieces)
    upstream.open_gate()
    await stream.aclose()
    assert isinstance(stream, UpstreamStream) and stream.response_closed


async def test_stream_error_event_raises_from_iterator(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    events = [
        *realistic_stream()[:4],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    upstream.add(pieces=sse(*events))
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for chunk in stream:
            got.append(chunk)
    await stream.aclose()
    assert len(got) == 2  # role chunk and the one text delta before the error
    assert info.value.kind == "status"
    assert info.value.code == "overloaded_error"
    assert info.value.status == 529
    assert info.value.message == "Overloaded"


async def test_stream_broken_mid_way_raises_connect(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    # The connection drops mid-body (an incomplete chunked body), as a crashed upstream's does.
    upstream.add(pieces=sse(*realistic_stream()[:4]), end="cut")
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for chunk in stream:
            got.append(chunk)
    await stream.aclose()
    assert info.value.kind == "connect"
    assert info.value.message.startswith("The Anthropic API stream broke off: ")
    assert sum(c.output_tokens for c in got) > 0
    assert all(c.usage is None for c in got)


async def test_stream_ending_without_message_stop_raises_connect(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(pieces=sse(*realistic_stream()[:5]))
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    with pytest.raises(UpstreamFailure) as info:
        await collect(stream)
    await stream.aclose()
    assert info.value.kind == "connect"


async def test_stream_read_timeout_mid_way(make_provider: Any, upstream: FakeUpstream) -> None:
    upstream.add(pieces=sse(*realistic_stream()[:4]), end="hang")  # then silence
    stream = await make_provider(timeout_s=0.2).chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    got: list[StreamChunk] = []
    with pytest.raises(UpstreamFailure) as info:
        async for chunk in stream:
            got.append(chunk)
    await stream.aclose()
    assert info.value.kind == "timeout"
    assert info.value.message.startswith("The Anthropic API stream timed out: ")
    # What arrived before the silence was relayed and counted, for the cut-stream charge.
    assert len(got) == 2 and got[1].output_tokens > 0


async def test_stream_stop_reason_and_output_usage_from_message_delta(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "model": SNAPSHOT,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 9, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"output_tokens": 16},
        },
        {"type": "message_stop"},
    ]
    upstream.add(pieces=sse(*events))
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    chunks = await collect(stream)
    await stream.aclose()
    objs = decoded(chunks)
    assert objs[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1].usage == TokenUsage(input_tokens=9, output_tokens=16)
    assert objs[-1]["usage"]["total_tokens"] == 25
    for obj in objs:
        ChatCompletionChunk.model_validate(obj)


async def test_stream_sends_headers(provider: AnthropicProvider, upstream: FakeUpstream) -> None:
    upstream.add(pieces=sse(*realistic_stream()))
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    await collect(stream)
    await stream.aclose()
    request = sent(upstream)
    assert request.method == "POST"
    assert request.path == MESSAGES_PATH
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"


async def test_closing_an_unread_stream_releases_the_response(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    upstream.add(pieces=sse(*realistic_stream()))
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    await stream.aclose()
    await stream.aclose()
    assert isinstance(stream, UpstreamStream) and stream.response_closed


async def test_stream_with_a_huge_event_in_small_pieces(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    text = "x" * 1_000_000  # one 1 MB text delta, its bytes split over 250 writes
    events = realistic_stream()
    events[3] = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    raw = b"".join(sse(*events))
    upstream.add(pieces=[raw[i : i + 4096] for i in range(0, len(raw), 4096)])
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    chunks = await collect(stream)
    await stream.aclose()
    objs = decoded(chunks)
    assert objs[1]["choices"][0]["delta"]["content"] == text
    assert chunks[1].output_tokens == 250_000
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 89


async def test_stream_with_crlf_line_endings(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    raw = b"".join(sse(*realistic_stream())).replace(b"\n", b"\r\n")
    # Split so that some CRLFs straddle two reads.
    upstream.add(pieces=[raw[i : i + 7] for i in range(0, len(raw), 7)])
    stream = await provider.chat_stream(
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    chunks = await collect(stream)
    await stream.aclose()
    assert len(chunks) == 8 and chunks[-1].usage is not None


def test_pdf_file_part_becomes_a_document_block() -> None:
    out = translate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "a.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                            },
                        },
                        {"type": "file", "file": {"file_id": "file-abc"}},
                    ],
                }
            ]
        }
    )
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        }
    ]
