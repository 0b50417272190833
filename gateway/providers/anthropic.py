"""Anthropic Messages API adapter: OpenAI chat-completions in, OpenAI chat-completions out.

Clients only ever see OpenAI's wire format, so this module translates requests into
`POST /v1/messages` bodies and translates both the JSON reply and the SSE event stream
back into `chat.completion` / `chat.completion.chunk` objects.
"""

from __future__ import annotations

import base64
import contextlib
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable
from decimal import Decimal
from typing import Any, TypeGuard

import aiohttp
import msgspec

from gateway import jsoncodec
from gateway.config import ProviderSettings
from gateway.providers.base import (
    ChatResult,
    ChatStream,
    Provider,
    StreamChunk,
    UpstreamFailure,
    token_count,
)
from gateway.providers.sse import event_data
from gateway.providers.upstream import TRANSPORT_ERRORS, UpstreamClient, UpstreamStream
from gateway.tokens import TokenUsage

ANTHROPIC_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"

# Decimal floats keep numbers in tool arguments exactly as the model wrote them when we
# re-serialise them into OpenAI's `arguments` string.
_decoder = msgspec.json.Decoder(float_hook=Decimal)

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # A paused server-tool turn is a normal end from an OpenAI client's point of view.
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic's documented HTTP status per error type, for errors that arrive inside a
# 200 stream and so carry no status of their own.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicProvider(Provider):
    def __init__(
        self,
        settings: ProviderSettings,
        client: UpstreamClient,
        max_output_tokens: Callable[[str], int],
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._client = client
        self._max_output_tokens = max_output_tokens
        self._headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"}
        if settings.api_key:
            self._headers["x-api-key"] = settings.api_key

    def output_limit_param(self, model: str) -> str:
        return "max_tokens"

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        payload = to_anthropic_request(body, self._max_output_tokens, stream=False)
        message = await self.create_message(payload)
        return to_openai_completion(message, str(body.get("model") or ""))

    async def chat_stream(self, body: dict[str, Any]) -> ChatStream:
        payload = to_anthropic_request(body, self._max_output_tokens, stream=True)
        return AnthropicChatStream(
            await self.open_stream(payload), self._client, str(body.get("model") or "")
        )

    async def create_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a Messages body; the reply as a dict. Raises UpstreamFailure."""
        try:
            resp = await self._client.post(MESSAGES_PATH, jsoncodec.encode(payload), self._headers)
            raw = await self._client.read(resp)
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._client, exc) from None
        if not 200 <= resp.status < 300:
            raise _status_failure(self._client, resp.status, raw)
        try:
            message = _decoder.decode(raw)
        except (msgspec.DecodeError, ValueError, RecursionError):
            raise UpstreamFailure(
                "protocol", "Anthropic returned a body that is not JSON."
            ) from None
        if not isinstance(message, dict) or message.get("type") != "message":
            raise UpstreamFailure("protocol", "Anthropic returned an unexpected response body.")
        return message

    async def open_stream(self, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        """Start a streamed Messages call; the open response once its status is 2xx."""
        try:
            resp = await self._client.post(MESSAGES_PATH, jsoncodec.encode(payload), self._headers)
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._client, exc) from None
        if not 200 <= resp.status < 300:
            try:
                raw = await self._client.read(resp)
            except TRANSPORT_ERRORS:
                raw = b""
            raise _status_failure(self._client, resp.status, raw)
        return resp

    @property
    def client(self) -> UpstreamClient:
        return self._client


# ---------------------------------------------------------------------- request translation
def to_anthropic_request(
    body: dict[str, Any], max_output_tokens: Callable[[str], int], *, stream: bool
) -> dict[str, Any]:
    """An OpenAI chat-completions body -> an Anthropic Messages body.

    Fields Anthropic has no equivalent for (n, seed, logprobs, penalties, response_format,
    stream_options...) are dropped rather than forwarded, since Anthropic rejects unknown
    fields.
    """
    model = str(body.get("model") or "")
    system, messages = _translate_messages(body.get("messages") or [])
    out: dict[str, Any] = {"model": model}
    if system:
        out["system"] = system
    out["messages"] = messages

    limits = [
        int(v) for v in (body.get("max_completion_tokens"), body.get("max_tokens")) if _is_number(v)
    ]
    # Anthropic requires max_tokens; OpenAI clients usually omit it. Given both, the
    # smaller wins so a cap the gateway set can never be widened by the other field.
    out["max_tokens"] = min(limits) if limits else max_output_tokens(model)

    temperature = body.get("temperature")
    if _is_number(temperature):
        # OpenAI accepts 0..2, Anthropic 0..1: clamping keeps "very random" requests
        # working instead of failing upstream with a 400.
        out["temperature"] = min(max(temperature, 0), 1)
    if _is_number(body.get("top_p")):
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        out["stop_sequences"] = stops
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}

    tools = [t for t in (_translate_tool(t) for t in body.get("tools") or []) if t is not None]
    if tools:
        out["tools"] = tools
        choice = _translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    if stream:
        out["stream"] = True
    return out


def _is_number(value: object) -> TypeGuard[int | float | Decimal]:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _translate_messages(raw: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    system_parts: list[str] = []
    messages: list[dict[str, Any]] = []
    for msg in raw:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"))
            if text:
                system_parts.append(text)
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"))
            target = "user"
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"))
            blocks.extend(_tool_use_blocks(msg.get("tool_calls")))
            target = "assistant"
        elif role == "tool":
            blocks = [_tool_result_block(msg)]
            target = "user"
        else:
            continue
        # Anthropic rejects empty content, so an empty turn is dropped, not sent.
        if not blocks:
            continue
        # Anthropic requires strict user/assistant alternation; OpenAI doesn't.
        if messages and messages[-1]["role"] == target:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": target, "content": blocks})
    for message in messages:
        if message["role"] == "user":
            # Anthropic wants tool results before any other block of the turn that answers.
            message["content"].sort(key=lambda b: b.get("type") != "tool_result")
    return "\n\n".join(system_parts), messages


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        # Anthropic rejects empty text blocks.
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str) and part["text"]:
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str) and url:
                blocks.append({"type": "image", "source": _media_source(url)})
        elif kind == "file":
            block = _document_block(part.get("file"))
            if block is not None:
                blocks.append(block)
    return blocks


def _media_source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        params = header.split(";")
        media_type = params[0] or "application/octet-stream"
        if "base64" not in params[1:]:
            # Anthropic only takes base64, so percent-encoded data URLs are re-encoded.
            data = base64.b64encode(urllib.parse.unquote_to_bytes(data)).decode("ascii")
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def _document_block(file: Any) -> dict[str, Any] | None:
    if not isinstance(file, dict):
        return None
    data = file.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        # OpenAI file ids point into OpenAI's storage, which Anthropic cannot read.
        return None
    return {"type": "document", "source": _media_source(data)}


def _tool_use_blocks(tool_calls: Any) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        return []
    blocks: list[dict[str, Any]] = []
    for call in tool_calls:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            continue
        fn = call["function"]
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": fn.get("name") or "",
                "input": _parse_arguments(fn.get("arguments")),
            }
        )
    return blocks


def _parse_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = _decoder.decode(arguments)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # Models do emit broken JSON; Anthropic needs an object, so send an empty one
        # rather than failing the whole conversation.
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_result_block(msg: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id") or ""}
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        parts = _content_blocks(content)
        if parts:
            block["content"] = parts
    return block


def _translate_tool(tool: Any) -> dict[str, Any] | None:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        return None
    fn = tool.get("function")
    if not isinstance(fn, dict) or not fn.get("name"):
        return None
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    schema = fn.get("parameters")
    # Anthropic requires input_schema; OpenAI allows parameter-less functions.
    out["input_schema"] = (
        schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    )
    return out


def _translate_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice == "none":
        # Tools stay in the request: Anthropic refuses tool_use blocks in the history of
        # a request that defines no tools.
        return {"type": "none"}
    if choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name") or ""}
    elif choice == "auto":
        out = {"type": "auto"}
    else:
        out = None
    if parallel is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


# --------------------------------------------------------------------- response translation
def to_openai_completion(message: dict[str, Any], requested_model: str) -> ChatResult:
    """An Anthropic Message -> (OpenAI chat.completion, billed usage)."""
    text_parts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text_parts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id") or "",
                    "type": "function",
                    "function": {
                        "name": block.get("name") or "",
                        "arguments": _arguments_json(block.get("input")),
                    },
                }
            )
    out_message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text_parts) if text_parts else None,
        "refusal": None,
    }
    if tool_calls:
        out_message["tool_calls"] = tool_calls
    usage = anthropic_usage(message.get("usage"))
    body = {
        "id": "chatcmpl-" + str(message.get("id") or ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or requested_model,
        "choices": [
            {
                "index": 0,
                "message": out_message,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(usage),
    }
    return ChatResult(body=body, usage=usage)


def _arguments_json(value: Any) -> str:
    return jsoncodec.encode(value if value is not None else {}).decode()


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _count(value: Any) -> int:
    return token_count(value) or 0


def anthropic_usage(usage: Any) -> TokenUsage:
    """Anthropic's usage -> TokenUsage; Anthropic's input_tokens exclude cache reads/writes."""
    if not isinstance(usage, dict):
        return TokenUsage()
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    return TokenUsage(
        input_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=_count(usage.get("output_tokens")),
    )


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


# ----------------------------------------------------------------------------------- errors
def _describe(what: str, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    return f"The Anthropic API {what}: {detail}"


def transport_failure(
    client: UpstreamClient, exc: BaseException, *, streaming: bool = False
) -> UpstreamFailure:
    """A transport error before the answer ("timed out" / "could not be reached") or while
    streaming it ("stream timed out" / "stream broke off")."""
    if streaming:
        return client.failure(
            exc, _describe("stream timed out", exc), _describe("stream broke off", exc)
        )
    return client.failure(exc, _describe("timed out", exc), _describe("could not be reached", exc))


def _error_of(payload: Any) -> tuple[str | None, str | None]:
    """(type, message) from Anthropic's `{"type": "error", "error": {...}}` envelope."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        return None, None
    kind = err.get("type") if isinstance(err.get("type"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else None
    return kind, message


def _status_failure(client: UpstreamClient, status: int, raw: bytes) -> UpstreamFailure:
    try:
        payload = _decoder.decode(raw) if raw else None
    except (msgspec.DecodeError, ValueError, RecursionError):
        # Proxies and load balancers in front of the API answer with HTML or plain text.
        payload = None
    code, message = _error_of(payload)
    return UpstreamFailure(
        "status",
        client.redact(message) if message else f"The Anthropic API answered HTTP {status}.",
        status=status,
        code=code,
    )


# -------------------------------------------------------------------------------- streaming
def _estimate_tokens(text: str) -> int:
    # Roughly four characters a token; only used to bill streams cut before usage arrives.
    return max(1, (len(text) + 3) // 4) if text else 0


class AnthropicChatStream(UpstreamStream):
    """Reads Anthropic's SSE events incrementally and yields OpenAI chunks."""

    def __init__(
        self, response: aiohttp.ClientResponse, client: UpstreamClient, requested_model: str
    ) -> None:
        super().__init__(response, client)
        self._model = requested_model

    @staticmethod
    def _decode_event(data: bytes) -> dict[str, Any]:
        try:
            event = _decoder.decode(data)
        except (msgspec.DecodeError, ValueError, RecursionError):
            raise UpstreamFailure(
                "protocol", "Anthropic sent a stream event that is not JSON."
            ) from None
        if not isinstance(event, dict):
            raise UpstreamFailure("protocol", "Anthropic sent an unexpected stream event.")
        return event

    async def chunks(self) -> AsyncGenerator[StreamChunk, None]:
        translator = StreamTranslator(self._model)
        try:
            async with contextlib.aclosing(self.events()) as events:
                async for block in events:
                    # `event:` names duplicate the payload's own `type`; comments are
                    # keep-alives; events without data carry nothing.
                    data = event_data(block)
                    if data is None:
                        continue
                    for out in translator.feed(self._decode_event(data)):
                        yield out
                    if translator.finished:
                        return
            raise UpstreamFailure(
                "connect",
                "The Anthropic stream ended before message_stop."
                if translator.started
                else "The Anthropic stream ended before it started.",
            )
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._client, exc, streaming=True) from None
        except UpstreamFailure as failure:  # an error event: its message is the upstream's
            raise self._client.redacted(failure) from None
        finally:
            # Hands the pooled connection back as soon as the stream is done.
            self.release(complete=translator.finished)


class StreamTranslator:
    """Turns Anthropic stream events, one at a time, into OpenAI chunks."""

    def __init__(self, requested_model: str) -> None:
        self.chunk_id = "chatcmpl-"
        self.created = int(time.time())
        self.model = requested_model
        self.usage: dict[str, Any] = {}
        # Anthropic numbers every content block; OpenAI numbers only the tool calls.
        self.tool_index: dict[int, int] = {}
        self.started = False
        self.finished = False

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return jsoncodec.encode(
            {
                "id": self.chunk_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": choices,
                **extra,
            }
        )

    def _delta(self, payload: dict[str, Any], finish: str | None = None) -> bytes:
        return self._chunk(
            [{"index": 0, "delta": payload, "logprobs": None, "finish_reason": finish}]
        )

    def feed(self, event: dict[str, Any]) -> list[StreamChunk]:
        kind = event.get("type")
        if kind == "message_start":
            return self._message_start(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            # Usage here is cumulative, so it supersedes what message_start reported.
            if isinstance(event.get("usage"), dict):
                self.usage.update({k: v for k, v in event["usage"].items() if v is not None})
            stop = (event.get("delta") or {}).get("stop_reason")
            return [StreamChunk(data=self._delta({}, finish_reason(stop)))]
        if kind == "message_stop":
            self.finished = True
            tokens = anthropic_usage(self.usage)
            return [StreamChunk(data=self._chunk([], usage=openai_usage(tokens)), usage=tokens)]
        if kind == "error":
            code, message = _error_of(event)
            raise UpstreamFailure(
                "status",
                message or "The Anthropic API reported an error mid-stream.",
                status=ERROR_STATUS.get(code or "", 502),
                code=code,
            )
        # ping, content_block_stop and event types added later carry nothing to relay.
        return []

    def _message_start(self, event: dict[str, Any]) -> list[StreamChunk]:
        message = event.get("message")
        message = message if isinstance(message, dict) else {}
        self.chunk_id = "chatcmpl-" + str(message.get("id") or "")
        self.model = message.get("model") or self.model
        if isinstance(message.get("usage"), dict):
            self.usage.update(message["usage"])
        self.started = True
        return [StreamChunk(data=self._delta({"role": "assistant", "content": ""}))]

    def _block_start(self, event: dict[str, Any]) -> list[StreamChunk]:
        block = event.get("content_block")
        block = block if isinstance(block, dict) else {}
        if block.get("type") == "tool_use":
            index = self.tool_index[event.get("index", -1)] = len(self.tool_index)
            call = {
                "index": index,
                "id": block.get("id") or "",
                "type": "function",
                "function": {"name": block.get("name") or "", "arguments": ""},
            }
            return [StreamChunk(data=self._delta({"tool_calls": [call]}), output_tokens=1)]
        if block.get("type") == "text" and block.get("text"):
            return [self._text(block["text"])]
        return []

    def _block_delta(self, event: dict[str, Any]) -> list[StreamChunk]:
        delta = event.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._text(delta["text"])]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
            index = self.tool_index.get(event.get("index", -1))
            if index is None:
                return []
            partial = delta["partial_json"]
            call = {"index": index, "function": {"arguments": partial}}
            return [
                StreamChunk(
                    data=self._delta({"tool_calls": [call]}),
                    output_tokens=_estimate_tokens(partial),
                )
            ]
        # thinking/signature/citation deltas have no chat-completions counterpart.
        return []

    def _text(self, text: str) -> StreamChunk:
        return StreamChunk(
            data=self._delta({"content": text}), output_tokens=_estimate_tokens(text)
        )
