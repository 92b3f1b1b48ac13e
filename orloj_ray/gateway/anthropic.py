"""Anthropic Messages API: the ``anthropic`` provider.

``POST <base_url>/messages`` (base URL default ``https://api.anthropic.com/v1``) with headers
``x-api-key`` and ``anthropic-version`` (option ``anthropic_version``, default ``2023-06-01``);
body ``{model, system?, messages, max_tokens, tools?}``. ``max_tokens`` is required by the API:
option ``max_tokens``, default 1024. System messages are joined into the top-level ``system``;
the assistant's tool calls become ``tool_use`` blocks and their results ``tool_result`` blocks
(``tool_use_id`` = the call's id) in the next user turn, consecutive results in one turn.
Tools are ``{name, description, input_schema}`` with sanitized names, mapped back on reply; when
no tool is offered any more but the history holds tool calls, the used tools are declared with
``tool_choice: {"type": "none"}`` (the API requires definitions for tool blocks).
Usage: input + cache-creation + cache-read tokens in, output tokens out. Default timeout 120 s
(upstream's, for tool-heavy turns).

Streaming (``stream``): the same body with ``stream: true``; the events (``message_start``,
``content_block_start``/``_delta`` (``text_delta``, ``input_json_delta``)/``_stop``,
``message_delta`` with the output usage, ``message_stop``, ``error``) are assembled by
``AnthropicStream`` into the Messages document ``anthropic_reply`` parses.
"""

from __future__ import annotations

import json

from orloj_ray.gateway.base import (
    CompletionReply, CompletionRequest, Endpoint, Message, ModelError, TokenSink, ToolCall, ToolSpec, Usage,
)
from orloj_ray.gateway.http import (
    HttpProvider, bad_response, base_url, config_error, float_option, int_option, normalized_options,
)
from orloj_ray.gateway.toolnames import ToolAliases

ANTHROPIC_BASE_URL = "https://api.anthropic.com/v1"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024


def _tool_input(arguments: str) -> dict:
    text = (arguments or "").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            return doc
    return {"input": text} if text else {}


def anthropic_messages(messages: list[Message], aliases: ToolAliases) -> tuple[str, list[dict]]:
    """``(system, messages)`` in Messages API form."""
    system: list[str] = []
    out: list[dict] = []
    for m in messages:
        content = m.content.strip()
        if m.role == "system":
            if content:
                system.append(content)
        elif m.role == "assistant" and m.tool_calls:
            blocks: list[dict] = [{"type": "text", "text": content}] if content else []
            blocks += [{"type": "tool_use", "id": c.id, "name": aliases.provider_name(c.name),
                        "input": _tool_input(c.arguments)} for c in m.tool_calls]
            out.append({"role": "assistant", "content": blocks})
        elif m.role == "tool" and m.tool_call_id:
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": content}
            last = out[-1] if out else None
            if last and last["role"] == "user" and isinstance(last["content"], list) and \
                    all(b.get("type") == "tool_result" for b in last["content"]):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif content:
            out.append({"role": m.role if m.role in ("user", "assistant") else "user", "content": content})
    return "\n".join(system), out


class AnthropicProvider(HttpProvider):
    name = "anthropic"
    default_timeout_s = 120.0

    def body(self, endpoint: Endpoint, request: CompletionRequest, options: dict[str, str],
             aliases: ToolAliases) -> dict:
        model = endpoint.model.strip()
        if not model:
            raise config_error(endpoint, "model is required (spec.default_model)")
        max_tokens = int_option(endpoint, options, "max_tokens") or DEFAULT_MAX_TOKENS
        system, messages = anthropic_messages(request.messages, aliases)
        body: dict = {"model": model, "max_tokens": max_tokens, "messages": messages}
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [{"name": aliases.provider_name(t.name),
                              "description": t.description or f"Invoke tool {t.name}",
                              "input_schema": t.parameters} for t in request.tools]
        else:
            # The API refuses tool_use/tool_result blocks without tool definitions, and the
            # turn stops offering a tool once it succeeded: declare the used ones, unusable.
            used = dict.fromkeys(c.name for m in request.messages if m.role == "assistant" for c in m.tool_calls)
            if used:
                body["tools"] = [{"name": aliases.provider_name(n), "description": f"Invoke tool {n}",
                                  "input_schema": ToolSpec(n).parameters} for n in used]
                body["tool_choice"] = {"type": "none"}
        temperature = float_option(endpoint, options, "temperature")
        if temperature is not None:
            body["temperature"] = temperature
        return body

    async def complete(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply:
        return await self._messages(endpoint, request, None)

    async def stream(self, endpoint: Endpoint, request: CompletionRequest, sink: TokenSink) -> CompletionReply:
        return await self._messages(endpoint, request, sink)

    async def _messages(self, endpoint: Endpoint, request: CompletionRequest,
                        sink: TokenSink | None) -> CompletionReply:
        options = normalized_options(endpoint)
        if not endpoint.api_key:
            raise config_error(endpoint, "an API key is required (set auth.secretRef)")
        settings = self.settings_for(endpoint, options)
        aliases = ToolAliases.build([t.name for t in request.tools])
        body = self.body(endpoint, request, options, aliases)
        headers = {"x-api-key": endpoint.api_key,
                   "anthropic-version": options.get("anthropic_version") or ANTHROPIC_VERSION}
        url = base_url(endpoint, ANTHROPIC_BASE_URL) + "/messages"
        if sink is None:
            doc = await self._post(endpoint, url, headers, body, settings)
        else:
            body["stream"] = True
            doc = await self._post_stream(endpoint, url, headers, body, settings, AnthropicStream, sink)
        try:
            return anthropic_reply(doc, aliases)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise bad_response(endpoint, exc) from None


class AnthropicStream:
    """Messages API stream events -> the non-streaming document (``StreamAssembler``)."""

    framing = "sse"

    def __init__(self):
        self._message: dict = {}
        self._usage: dict = {}
        self._blocks: dict[int, dict] = {}
        self._json: dict[int, list[str]] = {}
        self._error = None
        self._done = False

    def feed(self, data: str, event: str = "") -> str:
        item = json.loads(data)
        kind = str(item.get("type") or event)
        if kind == "message_start":
            self._message = dict(item["message"])
            self._usage.update(self._message.pop("usage", None) or {})
        elif kind == "content_block_start":
            self._blocks[int(item["index"])] = dict(item["content_block"])
        elif kind == "content_block_delta":
            block, delta = self._blocks[int(item["index"])], item["delta"]
            if delta.get("type") == "text_delta":
                block["text"] = str(block.get("text") or "") + str(delta.get("text") or "")
                return str(delta.get("text") or "")
            if delta.get("type") == "input_json_delta":
                self._json.setdefault(int(item["index"]), []).append(str(delta.get("partial_json") or ""))
        elif kind == "message_delta":
            self._usage.update({k: v for k, v in (item.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            self._error, self._done = item.get("error") or {"message": "stream error"}, True
        return ""

    @property
    def ended(self) -> bool:
        return self._done

    @property
    def complete(self) -> bool:
        return self._done

    def doc(self) -> dict:
        if self._error is not None:
            return {"error": self._error}
        content = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if block.get("type") == "tool_use" and "".join(self._json.get(index, [])).strip():
                block = {**block, "input": json.loads("".join(self._json[index]))}
            content.append(block)
        return {**self._message, "content": content, "usage": self._usage}


def anthropic_reply(doc: dict, aliases: ToolAliases) -> CompletionReply:
    if isinstance(doc.get("error"), dict):
        raise ModelError(f"model provider error: {str(doc['error'].get('message') or '').strip()}",
                         retryable=True, code="model_provider_error")
    texts, calls = [], []
    for block in doc.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = str(block.get("type") or "").strip().lower()
        if kind == "text" and str(block.get("text") or "").strip():
            texts.append(str(block["text"]).strip())
        elif kind == "tool_use" and str(block.get("name") or "").strip():
            calls.append(ToolCall(id=str(block.get("id") or "").strip(),
                                  name=aliases.runtime_name(str(block["name"]).strip()),
                                  arguments=json.dumps(block.get("input") or {})))
    usage = doc.get("usage") or {}
    tokens_in = sum(max(0, int(usage.get(k) or 0))
                    for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return CompletionReply(text="\n".join(texts).strip(), tool_calls=calls,
                           usage=Usage(input_tokens=tokens_in,
                                       output_tokens=max(0, int(usage.get("output_tokens") or 0))),
                           model=str(doc.get("model") or ""))
