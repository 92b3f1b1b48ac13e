"""OpenAI Chat Completions: the ``openai``, ``openai-compatible`` and ``azure-openai`` providers.

Wire format (execution.md §10): ``POST <base_url>/chat/completions`` with ``{model, messages,
tools?, tool_choice: "auto"}``; tools as ``{"type": "function", "function": {name,
description, parameters}}``; the assistant turn carries ``tool_calls[{id, type: "function",
function: {name, arguments}}]`` and each result goes back as ``{"role": "tool", "tool_call_id",
"content"}``; usage ``prompt_tokens``/``completion_tokens``.

* ``openai``: ``Authorization: Bearer <key>``, base URL default ``https://api.openai.com/v1``.
* ``openai-compatible`` (vLLM, LM Studio, llama.cpp, ...): the same, the key optional.
* ``azure-openai``: ``POST <base_url>/openai/deployments/<deployment>/chat/completions
  ?api-version=<v>`` with header ``api-key``; deployment = option ``deployment`` else
  ``default_model``; ``api_version`` option, default ``2024-10-21``; no default base URL.

``embed`` posts ``{model, input}`` to ``/embeddings`` (Azure: the deployment's) for memory search.

Streaming (``stream``): the same body with ``stream: true`` and ``stream_options:
{include_usage: true}``; the ``chat.completion.chunk`` events (``choices[0].delta.content``,
``delta.tool_calls[]`` by ``index`` with arguments in pieces, the usage chunk, ``data: [DONE]``)
are assembled by ``OpenAIStream`` into the Chat Completions document ``openai_reply`` parses.

Options beyond upstream's (docs/compatibility.md): ``temperature``, ``max_tokens`` (sent as
``max_completion_tokens`` to ``openai``, as ``max_tokens`` to the others) and
``reasoning_effort``.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from orloj_ray.gateway.base import (
    CompletionReply, CompletionRequest, Endpoint, Message, ModelError, TokenSink, ToolCall, ToolSpec, Usage,
)
from orloj_ray.gateway.http import (
    HttpProvider, bad_response, base_url, config_error, float_option, int_option, normalized_options,
)
from orloj_ray.gateway.toolnames import ToolAliases

OPENAI_BASE_URL = "https://api.openai.com/v1"
AZURE_API_VERSION = "2024-10-21"


def openai_tools(tools: list[ToolSpec], aliases: ToolAliases) -> list[dict]:
    return [{"type": "function", "function": {"name": aliases.provider_name(t.name),
                                              "description": t.description or f"Invoke tool {t.name}",
                                              "parameters": t.parameters}} for t in tools]


def openai_messages(messages: list[Message], aliases: ToolAliases) -> list[dict]:
    """The history in Chat Completions form; empty plain messages are dropped, as upstream does."""
    out: list[dict] = []
    for m in messages:
        content = m.content.strip()
        if m.role == "tool" and m.tool_call_id:
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": content})
        elif m.role == "assistant" and m.tool_calls:
            out.append({"role": "assistant", "content": content or None, "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": aliases.provider_name(c.name), "arguments": c.arguments or "{}"}}
                for c in m.tool_calls]})
        elif content:
            out.append({"role": m.role if m.role in ("system", "user", "assistant") else "user", "content": content})
    return out


def message_text(content) -> str:
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        parts = [str(p.get("text") or "").strip() for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if p).strip()
    return ""


def function_calls(items, aliases: ToolAliases, default_id) -> list[ToolCall]:
    """``[{id?, function: {name, arguments}}]`` (OpenAI and Ollama) as ToolCalls; entries without
    a name are skipped, arguments become a JSON string, ``default_id(n)`` names id-less calls."""
    calls = []
    for i, item in enumerate(items or []):
        fn = (item or {}).get("function") or {}
        name = str(fn.get("name") or "").strip()
        if not name:
            continue
        arguments = fn.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append(ToolCall(id=str(item.get("id") or default_id(i + 1)).strip(), name=aliases.runtime_name(name),
                              arguments=arguments))
    return calls


def openai_reply(doc: dict, aliases: ToolAliases) -> CompletionReply:
    """Parse a Chat Completions answer (also Azure's)."""
    if isinstance(doc.get("error"), dict):
        raise ModelError(f"model provider error: {str(doc['error'].get('message') or '').strip()}",
                         retryable=True, code="model_provider_error")
    choices = doc.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        raise ModelError("model response missing choices", retryable=True, code="model_bad_response")
    message = choices[0].get("message") or {}
    calls = function_calls(message.get("tool_calls"), aliases, lambda i: f"call_{i}")
    usage = doc.get("usage") or {}
    return CompletionReply(
        text=message_text(message.get("content")),
        tool_calls=calls,
        usage=Usage(input_tokens=max(0, int(usage.get("prompt_tokens") or 0)),
                    output_tokens=max(0, int(usage.get("completion_tokens") or 0))),
        model=str(doc.get("model") or ""),
    )


class OpenAIStream:
    """Chat Completions chunks -> the non-streaming document (``StreamAssembler``)."""

    framing = "sse"

    def __init__(self):
        self._model, self._text, self._usage, self._error = "", [], None, None
        self._calls: dict[int, dict] = {}
        self._done = self._finished = False

    def feed(self, data: str, event: str = "") -> str:
        if data.strip() == "[DONE]":
            self._done = True
            return ""
        chunk = json.loads(data)
        if isinstance(chunk.get("error"), dict):  # an error event mid-stream
            self._error, self._done = chunk["error"], True
            return ""
        self._model = str(chunk.get("model") or self._model)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        added = ""
        for choice in chunk.get("choices") or []:
            if int(choice.get("index") or 0) != 0:
                continue
            self._finished = self._finished or bool(choice.get("finish_reason"))
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                added += delta["content"]
            for item in delta.get("tool_calls") or []:
                call = self._calls.setdefault(int(item.get("index") or 0), {
                    "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                call["id"] = str(item.get("id") or call["id"])
                fn = item.get("function") or {}
                call["function"]["name"] += str(fn.get("name") or "")
                call["function"]["arguments"] += str(fn.get("arguments") or "")
        self._text.append(added)
        return added

    @property
    def ended(self) -> bool:
        return self._done

    @property
    def complete(self) -> bool:
        return self._done or self._finished  # some servers close after the last chunk without [DONE]

    def doc(self) -> dict:
        if self._error is not None:
            return {"error": self._error}
        message: dict = {"role": "assistant", "content": "".join(self._text) or None}
        if self._calls:
            message["tool_calls"] = [self._calls[i] for i in sorted(self._calls)]
        doc: dict = {"model": self._model, "choices": [{"index": 0, "message": message}]}
        if self._usage is not None:
            doc["usage"] = self._usage
        return doc


class OpenAIProvider(HttpProvider):
    name = "openai"
    default_base_url = OPENAI_BASE_URL
    max_tokens_field = "max_completion_tokens"

    def _url(self, endpoint: Endpoint, options: dict[str, str]) -> str:
        return base_url(endpoint, self.default_base_url) + "/chat/completions"

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}

    def _model(self, endpoint: Endpoint, options: dict[str, str]) -> str:
        return endpoint.model.strip()

    def _check_key(self, endpoint: Endpoint) -> None:
        if not endpoint.api_key:
            raise config_error(endpoint, "an API key is required (set auth.secretRef)")

    def body(self, endpoint: Endpoint, request: CompletionRequest, options: dict[str, str],
             aliases: ToolAliases) -> dict:
        model = self._model(endpoint, options)
        if not model:
            raise config_error(endpoint, "model is required (spec.default_model)")
        body: dict = {"model": model}
        if request.tools:
            body["tools"] = openai_tools(request.tools, aliases)
            body["tool_choice"] = "auto"
        body["messages"] = openai_messages(request.messages, aliases)
        temperature = float_option(endpoint, options, "temperature")
        if temperature is not None:
            body["temperature"] = temperature
        max_tokens = int_option(endpoint, options, "max_tokens")
        if max_tokens is not None:
            body[self.max_tokens_field] = max_tokens
        if options.get("reasoning_effort"):
            body["reasoning_effort"] = options["reasoning_effort"]
        return body

    async def complete(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply:
        return await self._chat(endpoint, request, None)

    async def stream(self, endpoint: Endpoint, request: CompletionRequest, sink: TokenSink) -> CompletionReply:
        return await self._chat(endpoint, request, sink)

    async def _chat(self, endpoint: Endpoint, request: CompletionRequest, sink: TokenSink | None) -> CompletionReply:
        options = normalized_options(endpoint)
        self._check_key(endpoint)
        settings = self.settings_for(endpoint, options)
        aliases = ToolAliases.build([t.name for t in request.tools])
        body = self.body(endpoint, request, options, aliases)
        url, headers = self._url(endpoint, options), self._headers(endpoint)
        if sink is None:
            doc = await self._post(endpoint, url, headers, body, settings)
        else:
            body.update(stream=True, stream_options={"include_usage": True})
            doc = await self._post_stream(endpoint, url, headers, body, settings, OpenAIStream, sink)
        try:
            return openai_reply(doc, aliases)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise bad_response(endpoint, exc) from None


    def _embeddings_url(self, endpoint: Endpoint, options: dict[str, str]) -> str:
        return base_url(endpoint, self.default_base_url) + "/embeddings"

    async def embed(self, endpoint: Endpoint, texts: list[str]) -> list[list[float]]:
        """One vector per text: ``POST <base_url>/embeddings`` ``{model, input}`` (memory search)."""
        options = normalized_options(endpoint)
        self._check_key(endpoint)
        settings = self.settings_for(endpoint, options)
        model = self._model(endpoint, options)
        if not model:
            raise config_error(endpoint, "model is required (spec.default_model)")
        doc = await self._post(endpoint, self._embeddings_url(endpoint, options), self._headers(endpoint),
                               {"model": model, "input": list(texts)}, settings)
        try:
            items = sorted(doc["data"], key=lambda item: int(item.get("index") or 0))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise bad_response(endpoint, exc) from None
        if len(vectors) != len(texts):
            raise bad_response(endpoint, ValueError(f"{len(vectors)} vectors for {len(texts)} texts"))
        return vectors


class OpenAICompatibleProvider(OpenAIProvider):
    """Any server speaking Chat Completions; the key is optional (sent as Bearer when set)."""

    name = "openai-compatible"
    max_tokens_field = "max_tokens"

    def _check_key(self, endpoint: Endpoint) -> None:
        return None


class AzureOpenAIProvider(OpenAIProvider):
    name = "azure-openai"
    default_base_url = ""
    max_tokens_field = "max_tokens"

    def _model(self, endpoint: Endpoint, options: dict[str, str]) -> str:
        return options.get("deployment") or endpoint.model.strip()

    def _url(self, endpoint: Endpoint, options: dict[str, str], operation: str = "chat/completions") -> str:
        deployment = self._model(endpoint, options)
        if not deployment:
            raise config_error(endpoint, "deployment is required (spec.default_model or option deployment)")
        version = options.get("api_version") or AZURE_API_VERSION
        return (f"{base_url(endpoint, '')}/openai/deployments/{quote(deployment, safe='')}/{operation}"
                f"?api-version={quote(version, safe='')}")

    def _embeddings_url(self, endpoint: Endpoint, options: dict[str, str]) -> str:
        return self._url(endpoint, options, "embeddings")

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        return {"api-key": endpoint.api_key}
