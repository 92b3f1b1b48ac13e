"""Fake model providers and a fake tool, each a real HTTP/1.1 server on 127.0.0.1.

``FakeServer`` records every request (method, path, query, headers, JSON body, client port)
and answers with whatever its ``respond`` function returns. The ``*_text`` / ``*_tool_call``
helpers build answers in each provider's documented wire format, so a test can script a
multi-step tool-calling conversation:

* OpenAI / Azure OpenAI / OpenAI-compatible Chat Completions:
  ``{"choices": [{"message": {...}}], "usage": {"prompt_tokens", "completion_tokens"}}``
* Anthropic Messages: ``{"content": [{"type": "text"|"tool_use", ...}], "usage": {...}}``
* Ollama ``/api/chat``: ``{"message": {...}, "done": true, "prompt_eval_count", "eval_count"}``

A request that asks for a stream (``"stream": true``) gets the same answer streamed in its
provider's documented format (``stream_chunks``): OpenAI ``chat.completion.chunk`` events with
``data: [DONE]`` (and the usage chunk when ``stream_options.include_usage``), Anthropic's
``message_start`` ... ``message_stop`` events, Ollama's NDJSON lines; chunked, with
``Reply.chunk_delay_s`` between chunks, cut off (connection closed mid-body) after
``Reply.cut_after`` chunks, or answered as plain JSON when ``Reply.stream`` is False.
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
    chunk_delay_s: float = 0.0
    """Streamed answers: pause between chunks."""
    cut_after: int | None = None
    """Streamed answers: close the connection mid-body after this many chunks."""
    stream: bool = True
    """False: answer a streaming request with plain JSON (a server that ignores ``stream``)."""
    chunks: list[bytes] | None = None
    """Streamed answers: send these chunks instead of ``body`` translated (malformed streams)."""


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
                if (isinstance(rec.body, dict) and rec.body.get("stream") is True and reply.stream
                        and reply.status < 400 and isinstance(reply.body, dict)):
                    return self._stream(rec, reply)
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

            def _stream(self, rec: Recorded, reply: Reply) -> None:
                chunks = reply.chunks if reply.chunks is not None else stream_chunks(rec.path, rec.body, reply.body)
                ndjson = rec.path.endswith("/api/chat")
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/x-ndjson" if ndjson else "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    for i, chunk in enumerate(chunks):
                        if reply.cut_after is not None and i >= reply.cut_after:
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(2)  # mid-body: no terminating chunk
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        if reply.chunk_delay_s:
                            time.sleep(reply.chunk_delay_s)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError, OSError):
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
# The same answers streamed, as each provider documents its stream


def _pieces(text: str, n: int = 3) -> list[str]:
    """``text`` in ``n`` pieces (fewer when short) that join back to it."""
    if not text:
        return []
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)]


def _sse(data: dict | str, event: str = "") -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


def stream_chunks(path: str, request: dict, body: dict) -> list[bytes]:
    """The non-streaming answer ``body`` as the chunks of the provider's stream (by ``path``)."""
    if path.endswith("/api/chat"):
        return _ollama_stream(body)
    if path.endswith("/messages"):
        return _anthropic_stream(body)
    return _openai_stream(request, body)


def _openai_stream(request: dict, body: dict) -> list[bytes]:
    head = {"id": body.get("id", "chatcmpl-s"), "object": "chat.completion.chunk", "created": 0,
            "model": body.get("model", "")}
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}

    def chunk(delta: dict, finish=None) -> bytes:
        return _sse({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in _pieces(message.get("content") or "")]
    for i, call in enumerate(message.get("tool_calls") or []):
        out.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                          "function": {"name": call["function"]["name"], "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                for piece in _pieces(call["function"]["arguments"], 2)]
    out.append(chunk({}, choice.get("finish_reason") or "stop"))
    if (request.get("stream_options") or {}).get("include_usage"):
        out.append(_sse({**head, "choices": [], "usage": body.get("usage")}))
    out.append(_sse("[DONE]"))
    return out


def _anthropic_stream(body: dict) -> list[bytes]:
    usage = dict(body.get("usage") or {})
    start_usage = {**usage, "output_tokens": 1}
    message = {k: v for k, v in body.items() if k not in ("content", "usage", "stop_reason")}
    out = [_sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                       "usage": start_usage}}, "message_start"),
           _sse({"type": "ping"}, "ping")]
    for i, block in enumerate(body.get("content") or []):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(json.dumps(block["input"]), 2)]
        out.append(_sse({"type": "content_block_start", "index": i, "content_block": start}, "content_block_start"))
        out += [_sse({"type": "content_block_delta", "index": i, "delta": d}, "content_block_delta") for d in deltas]
        out.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    out.append(_sse({"type": "message_delta", "delta": {"stop_reason": body.get("stop_reason"), "stop_sequence": None},
                     "usage": {"output_tokens": usage.get("output_tokens", 0)}}, "message_delta"))
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return out


def _ollama_stream(body: dict) -> list[bytes]:
    message = body.get("message") or {}
    model = body.get("model", "")

    def line(doc: dict) -> bytes:
        return (json.dumps(doc) + "\n").encode()

    out = [line({"model": model, "message": {"role": "assistant", "content": p}, "done": False})
           for p in _pieces(message.get("content") or "")]
    if message.get("tool_calls"):
        out.append(line({"model": model, "message": {"role": "assistant", "content": "",
                                                     "tool_calls": message["tool_calls"]}, "done": False}))
    final = {k: v for k, v in body.items() if k != "message"}
    out.append(line({**final, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}))
    return out


# ---------------------------------------------------------------------------------------------
# A tool


def echo_tool(prefix: str = "RESULT") -> Responder:
    """An ``http`` tool answering ``<prefix>(<input>)`` in upstream's contract envelope."""

    def respond(rec: Recorded) -> Reply:
        text = rec.raw.decode()
        return Reply(body={"status": "ok", "output": {"result": f"{prefix}({text})"}})

    return respond
