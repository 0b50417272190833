"""A fake OpenAI + Anthropic upstream on loopback that records every request it serves.

Usage is deterministic: prompt tokens = characters of the user text; completion tokens
= min(max_tokens, PREFERRED) unless the text says `[tokens=N]`. `[sleep=S]` delays the
answer (for crash tests); `[fail=500]` answers with that status. Opt-in, for tests of
calls in flight: `[gate]` holds the answer until the test calls `gate.set()`;
`[chunk_sleep=S]` pauses S seconds before each event of a streamed answer.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFERRED = 50


def _text(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out += [p.get("text", "") for p in c if isinstance(p, dict)]
    return " ".join(out)


@dataclass
class FakeUpstream:
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None
    # Requests whose text says `[gate]` wait here (up to a minute) until the test sets it.
    gate: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeUpstream:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            chunk_sleep = 0.0

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with upstream.lock:
                    upstream.lock.notify_all()
                    upstream.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                text = _text(body.get("messages", []))
                if m := re.search(r"\[sleep=([\d.]+)\]", text):
                    time.sleep(float(m.group(1)))
                if "[gate]" in text:
                    upstream.gate.wait(60)
                self.chunk_sleep = 0.0  # per request: a kept-alive handler serves several
                if m := re.search(r"\[chunk_sleep=([\d.]+)\]", text):
                    self.chunk_sleep = float(m.group(1))
                if m := re.search(r"\[fail=(\d+)\]", text):
                    self._json(
                        int(m.group(1)), {"error": {"message": "injected", "type": "server_error"}}
                    )
                    return
                limit = body.get("max_tokens") or body.get("max_completion_tokens")
                tokens = PREFERRED
                if m := re.search(r"\[tokens=(\d+)\]", text):
                    tokens = int(m.group(1))
                out = min(tokens, limit) if limit else tokens
                prompt = max(1, len(text))
                if self.path.endswith("/messages"):
                    self._anthropic(body, prompt, out)
                else:
                    self._openai(body, prompt, out)

            def _json(self, status: int, obj: Any) -> None:
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _sse(self, events: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for e in events:
                    if self.chunk_sleep:
                        time.sleep(self.chunk_sleep)
                    self.wfile.write(e)
                    self.wfile.flush()
                self.close_connection = True

            def _openai(self, body: dict[str, Any], prompt: int, out: int) -> None:
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": out,
                    "total_tokens": prompt + out,
                    "prompt_tokens_details": {"cached_tokens": 0},
                }
                words = ["tok"] * out
                if not body.get("stream"):
                    self._json(
                        200,
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": 1,
                            "model": body.get("model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": " ".join(words)},
                                }
                            ],
                            "usage": usage,
                        },
                    )
                    return
                base = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body.get("model"),
                }

                def data(obj: dict[str, Any]) -> bytes:
                    return f"data: {json.dumps({**base, **obj})}\n\n".encode()

                def choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
                    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

                events = [data(choice({"content": w}, None)) for w in words]
                events.append(data(choice({}, "stop")))
                if (body.get("stream_options") or {}).get("include_usage"):
                    events.append(data({"choices": [], "usage": usage}))
                events.append(b"data: [DONE]\n\n")
                self._sse(events)

            def _anthropic(self, body: dict[str, Any], prompt: int, out: int) -> None:
                text = " ".join(["tok"] * out)
                if not body.get("stream"):
                    self._json(
                        200,
                        {
                            "id": "msg_fake",
                            "type": "message",
                            "role": "assistant",
                            "model": body.get("model"),
                            "stop_reason": "end_turn",
                            "stop_sequence": None,
                            "content": [{"type": "text", "text": text}],
                            "usage": {
                                "input_tokens": prompt,
                                "output_tokens": out,
                                "cache_read_input_tokens": 0,
                                "cache_creation_input_tokens": 0,
                            },
                        },
                    )
                    return

                def ev(name: str, data: dict[str, Any]) -> bytes:
                    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

                events = [
                    ev(
                        "message_start",
                        {
                            "type": "message_start",
                            "message": {
                                "id": "msg_fake",
                                "type": "message",
                                "role": "assistant",
                                "model": body.get("model"),
                                "content": [],
                                "stop_reason": None,
                                "stop_sequence": None,
                                "usage": {"input_tokens": prompt, "output_tokens": 1},
                            },
                        },
                    ),
                    ev(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": 0,
                            "content_block": {"type": "text", "text": ""},
                        },
                    ),
                ]
                events += [
                    ev(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": "tok "},
                        },
                    )
                    for _ in range(out)
                ]
                events += [
                    ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ev(
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": out},
                        },
                    ),
                    ev("message_stop", {"type": "message_stop"}),
                ]
                self._sse(events)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def wait_for(self, n: int, timeout_s: float = 10.0) -> int:
        """Block until the upstream has seen `n` requests (or the timeout); the count."""
        with self.lock:
            self.lock.wait_for(lambda: len(self.requests) >= n, timeout_s)
            return len(self.requests)
