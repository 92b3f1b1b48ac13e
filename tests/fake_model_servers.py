"""Fake model providers and a fake tool, each a real HTTP/1.1 server on 127.0.0.1.

``FakeServer`` records every request (method, path, query, headers, JSON body, client port)
and answers with whatever its ``respond`` function returns. The ``*_text`` / ``*_tool_call``
helpers build answers in each provider's documented wire format, so a test can script a
multi-step tool-calling conversation:

* OpenAI / Azure OpenAI / OpenAI-compatible Chat Completions:
  ``{"choices": [{"message": {...}}], "usage": {"prompt_tokens", "completion_tokens"}}``
* Anthropic Messages: ``{"content": [{"type": "text"|"tool_use", ...}], "usage": {...}}``
* Ollama ``/api/chat``: ``{"message": {...}, "done": true, "prompt_eval_count", "eval_count"}``
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-cased names."""
    body: dict | None
    raw: bytes
    client_port: int

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int = 200
    body: dict | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Responder = Callable[[Recorded], Reply]


class FakeServer:
    """A threaded HTTP/1.1 server (keep-alive) on a free loopback port. Use as a context manager."""

    def __init__(self, respond: Responder):
        self.respond = respond
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # an idle keep-alive connection is dropped after this

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                parts = urlsplit(self.path)
                rec = Recorded("POST", parts.path, parse_qs(parts.query),
                               {k.lower(): v for k, v in self.headers.items()}, body, raw, self.client_address[1])
                with server._lock:
                    server.requests.append(rec)
                try:
                    reply = server.respond(rec)
                except Exception as exc:  # a broken script shows up as a 599 the test will see
                    reply = Reply(599, {"error": {"message": f"fake server script failed: {exc!r}"}})
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                payload = data.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout tests)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def scripted(*replies: Reply) -> Responder:
    """Answer with ``replies`` in order; a request past the end gets a 599 naming the overrun."""
    queue = list(replies)
    lock = threading.Lock()

    def respond(_: Recorded) -> Reply:
        with lock:
            if not queue:
                return Reply(599, {"error": {"message": "fake server: script exhausted"}})
            return queue.pop(0)

    return respond


# ---------------------------------------------------------------------------------------------
# Provider wire formats


def openai_text(text: str, *, prompt_tokens: int = 0, completion_tokens: int = 0, model: str = "") -> Reply:
    return Reply(body={"id": "chatcmpl-1", "object": "chat.completion", "model": model,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}})


def openai_tool_call(call_id: str, name: str, arguments: dict, *, prompt_tokens: int = 0,
                     completion_tokens: int = 0) -> Reply:
    return Reply(body={"id": "chatcmpl-2", "object": "chat.completion",
                       "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                           "role": "assistant", "content": None,
                           "tool_calls": [{"id": call_id, "type": "function",
                                           "function": {"name": name, "arguments": json.dumps(arguments)}}]}}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}})


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "invalid_request_error", "code": None}},
                 headers or {})


def anthropic_text(text: str, *, input_tokens: int = 0, output_tokens: int = 0, cache_read: int = 0,
                   cache_creation: int = 0) -> Reply:
    return Reply(body={"id": "msg_1", "type": "message", "role": "assistant", "model": "",
                       "stop_reason": "end_turn", "content": [{"type": "text", "text": text}],
                       "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                 "cache_read_input_tokens": cache_read,
                                 "cache_creation_input_tokens": cache_creation}})


def anthropic_tool_use(tool_id: str, name: str, tool_input: dict, *, text: str = "", input_tokens: int = 0,
                       output_tokens: int = 0) -> Reply:
    content = ([{"type": "text", "text": text}] if text else []) + [
        {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}]
    return Reply(body={"id": "msg_2", "type": "message", "role": "assistant", "stop_reason": "tool_use",
                       "content": content, "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}})


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": "api_error", "message": message}}, headers or {})


def ollama_text(text: str, *, prompt_eval_count: int = 0, eval_count: int = 0) -> Reply:
    return Reply(body={"model": "llama3.1", "done": True, "message": {"role": "assistant", "content": text},
                       "prompt_eval_count": prompt_eval_count, "eval_count": eval_count})


def ollama_tool_call(name: str, arguments: dict, *, prompt_eval_count: int = 0, eval_count: int = 0) -> Reply:
    return Reply(body={"model": "llama3.1", "done": True,
                       "message": {"role": "assistant", "content": "",
                                   "tool_calls": [{"function": {"name": name, "arguments": arguments}}]},
                       "prompt_eval_count": prompt_eval_count, "eval_count": eval_count})


# ---------------------------------------------------------------------------------------------
# A tool


def echo_tool(prefix: str = "RESULT") -> Responder:
    """An ``http`` tool answering ``<prefix>(<input>)`` in upstream's contract envelope."""

    def respond(rec: Recorded) -> Reply:
        text = rec.raw.decode()
        return Reply(body={"status": "ok", "output": {"result": f"{prefix}({text})"}})

    return respond
