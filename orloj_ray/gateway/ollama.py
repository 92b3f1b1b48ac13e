"""Ollama chat API: the ``ollama`` provider.

``POST <base_url>/api/chat`` (base URL default ``http://127.0.0.1:11434``; option ``base_url``
overrides it, as upstream) with ``{model, messages, stream: false, tools?}``, no key. Tools in
OpenAI function form; the assistant's tool calls go back as ``tool_calls[{function: {name,
arguments}}]`` with arguments as a JSON object, results as ``{"role": "tool", "content",
"tool_name"}`` (Ollama has no call ids; ``tool_name`` is Ollama's own field, upstream omits
it). Model: ``default_model``, option ``default_model``, else ``llama3.1``. Options
``temperature`` and ``max_tokens`` (as ``num_predict``) go in Ollama's ``options``.
Usage: ``prompt_eval_count`` in, ``eval_count`` out. A key, if the endpoint has one (an Ollama
behind an authenticating proxy), is sent as ``Authorization: Bearer``; upstream sends none.

Streaming (``stream``): the same body with ``stream: true``; the NDJSON lines (``message.content``
pieces, ``message.tool_calls``, the last one ``done: true`` with the counts) are assembled by
``OllamaStream`` into the document ``ollama_reply`` parses.
"""

from __future__ import annotations

import json
from dataclasses import replace

from orloj_ray.gateway.base import (
    CompletionReply, CompletionRequest, Endpoint, Message, ModelError, TokenSink, Usage,
)
from orloj_ray.gateway.http import (
    HttpProvider, bad_response, base_url, float_option, int_option, normalized_options,
)
from orloj_ray.gateway.openai import function_calls, openai_tools
from orloj_ray.gateway.toolnames import ToolAliases

OLLAMA_BASE_URL = "http://127.0.0.1:11434"
OLLAMA_MODEL = "llama3.1"


def _arguments(text: str) -> dict:
    try:
        doc = json.loads(text or "{}")
    except ValueError:
        return {"input": text}
    return doc if isinstance(doc, dict) else {"input": doc}


def ollama_messages(messages: list[Message], aliases: ToolAliases) -> list[dict]:
    out: list[dict] = []
    for m in messages:
        content = m.content.strip()
        if m.role == "assistant" and m.tool_calls:
            out.append({"role": "assistant", "content": content, "tool_calls": [
                {"function": {"name": aliases.provider_name(c.name), "arguments": _arguments(c.arguments)}}
                for c in m.tool_calls]})
        elif m.role == "tool":
            item = {"role": "tool", "content": content}
            if m.name:
                item["tool_name"] = aliases.provider_name(m.name)
            out.append(item)
        elif content:
            out.append({"role": m.role if m.role in ("system", "user", "assistant") else "user", "content": content})
    return out


class OllamaProvider(HttpProvider):
    name = "ollama"

    @staticmethod
    def _base(endpoint: Endpoint, options: dict[str, str]) -> str:
        override = options.get("base_url")  # upstream: the option wins over spec.base_url
        return base_url(replace(endpoint, base_url=override) if override else endpoint, OLLAMA_BASE_URL)

    @staticmethod
    def _headers(endpoint: Endpoint) -> dict[str, str]:
        return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}

    def body(self, endpoint: Endpoint, request: CompletionRequest, options: dict[str, str],
             aliases: ToolAliases) -> dict:
        model = endpoint.model.strip() or options.get("default_model") or OLLAMA_MODEL
        body: dict = {"model": model, "messages": ollama_messages(request.messages, aliases), "stream": False}
        if request.tools:
            body["tools"] = openai_tools(request.tools, aliases)
        model_options = {}
        temperature = float_option(endpoint, options, "temperature")
        if temperature is not None:
            model_options["temperature"] = temperature
        max_tokens = int_option(endpoint, options, "max_tokens")
        if max_tokens is not None:
            model_options["num_predict"] = max_tokens
        if model_options:
            body["options"] = model_options
        return body

    async def complete(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply:
        return await self._chat(endpoint, request, None)

    async def stream(self, endpoint: Endpoint, request: CompletionRequest, sink: TokenSink) -> CompletionReply:
        return await self._chat(endpoint, request, sink)

    async def _chat(self, endpoint: Endpoint, request: CompletionRequest, sink: TokenSink | None) -> CompletionReply:
        options = normalized_options(endpoint)
        settings = self.settings_for(endpoint, options)
        aliases = ToolAliases.build([t.name for t in request.tools])
        body = self.body(endpoint, request, options, aliases)
        url = self._base(endpoint, options) + "/api/chat"
        headers = self._headers(endpoint)
        if sink is None:
            doc = await self._post(endpoint, url, headers, body, settings)
        else:
            body["stream"] = True
            doc = await self._post_stream(endpoint, url, headers, body, settings, OllamaStream, sink)
        try:
            return ollama_reply(doc, aliases, request)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise bad_response(endpoint, exc) from None


    async def embed(self, endpoint: Endpoint, texts: list[str]) -> list[list[float]]:
        """One vector per text: ``POST <base_url>/api/embed`` ``{model, input}`` (memory search)."""
        options = normalized_options(endpoint)
        settings = self.settings_for(endpoint, options)
        url = self._base(endpoint, options)
        model = endpoint.model.strip() or options.get("default_model") or OLLAMA_MODEL
        headers = self._headers(endpoint)
        doc = await self._post(endpoint, url + "/api/embed", headers, {"model": model, "input": list(texts)}, settings)
        try:
            vectors = [[float(x) for x in vector] for vector in doc["embeddings"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_response(endpoint, exc) from None
        if len(vectors) != len(texts):
            raise bad_response(endpoint, ValueError(f"{len(vectors)} vectors for {len(texts)} texts"))
        return vectors


class OllamaStream:
    """``/api/chat`` NDJSON lines -> the non-streaming document (``StreamAssembler``)."""

    framing = "ndjson"

    def __init__(self):
        self._text: list[str] = []
        self._calls: list = []
        self._last: dict = {}
        self._done = False

    def feed(self, data: str, event: str = "") -> str:
        line = json.loads(data)
        if str(line.get("error") or "").strip():
            self._last, self._done = line, True
            return ""
        message = line.get("message") or {}
        self._calls += message.get("tool_calls") or []
        text = message.get("content")
        text = text if isinstance(text, str) else ""
        self._text.append(text)
        if line.get("done"):
            self._last, self._done = line, True
        return text

    @property
    def ended(self) -> bool:
        return self._done

    @property
    def complete(self) -> bool:
        return self._done

    def doc(self) -> dict:
        if str(self._last.get("error") or "").strip():
            return self._last
        message = {"role": "assistant", "content": "".join(self._text)}
        if self._calls:
            message["tool_calls"] = self._calls
        return {**self._last, "message": message}


def ollama_reply(doc: dict, aliases: ToolAliases, request: CompletionRequest) -> CompletionReply:
    if str(doc.get("error") or "").strip():
        raise ModelError(f"model provider error: {str(doc['error']).strip()}", retryable=True,
                         code="model_provider_error")
    message = doc.get("message") or {}
    step = request.metadata.get("step", 1)
    calls = function_calls(message.get("tool_calls"), aliases, lambda i: f"ollama_{step}_{i}")
    return CompletionReply(text=str(message.get("content") or "").strip(), tool_calls=calls,
                           usage=Usage(input_tokens=max(0, int(doc.get("prompt_eval_count") or 0)),
                                       output_tokens=max(0, int(doc.get("eval_count") or 0))),
                           model=str(doc.get("model") or ""))
