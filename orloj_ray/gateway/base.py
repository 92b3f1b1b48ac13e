"""Provider-neutral chat completion types and the ModelGateway.

Every model call, the ``mock`` provider's included, goes through ``ModelGateway.complete``:
endpoint resolution, timing, token accounting (provider numbers, else an estimate) and error
classification live here once; providers only translate the wire format.

Streaming: ``complete(endpoint, request, sink=...)`` asks the provider for a streamed answer
and hands each text delta to ``sink`` as it arrives; the reply it returns is the one the
non-streaming call would have returned (providers assemble the stream into the same document
and parse it with the same code). Without a sink, or with a provider that cannot stream, the
call is the plain non-streaming one: streaming costs nothing unless someone asked for it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("orloj_ray.gateway")

from orloj_ray.errors import OrlojError


class ModelError(OrlojError):
    """A model call failed. ``retryable`` says whether the same call may succeed later."""

    code = "model_error"
    status = 502

    def __init__(self, message: str, *, retryable: bool = False, code: str | None = None):
        super().__init__(message, code=code)
        self.retryable = retryable

    def __reduce__(self):
        return (_rebuild_model_error, (self.message, self.retryable, self.code))


def _rebuild_model_error(message, retryable, code):
    return ModelError(message, retryable=retryable, code=code)


@dataclass
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {
        "type": "object",
        "properties": {"input": {"type": "string"}},
        "additionalProperties": True,
    })


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text, as providers send it."""


@dataclass
class Message:
    role: str
    """``system``, ``user``, ``assistant`` or ``tool``."""
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""
    name: str = ""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    source: str = "provider"

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Endpoint:
    """What a provider needs from a ModelEndpoint resource, secrets already resolved."""

    name: str
    provider: str
    base_url: str
    model: str
    options: dict[str, str] = field(default_factory=dict)
    api_key: str = ""

    def __repr__(self) -> str:  # never print the key
        return f"Endpoint(name={self.name!r}, provider={self.provider!r}, model={self.model!r})"


@dataclass
class CompletionRequest:
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    """Who is asking: ``agent``, ``namespace``, ``task``, ``step``. Never sent to a provider."""


@dataclass
class CompletionReply:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    latency_ms: int = 0


class TokenSink(Protocol):
    """Receives a streaming call's text as it arrives.

    ``sink(delta)`` for each piece of text; ``sink("", restart=True)`` when the stream broke and
    the call is being retried: the text so far is void, the retry streams from the start.
    Called on the event loop of the call; it must not block (append and return)."""

    def __call__(self, delta: str, *, restart: bool = False) -> None: ...


class Provider(Protocol):
    async def complete(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply: ...

    # optional: async def stream(self, endpoint, request, sink: TokenSink) -> CompletionReply
    # the same reply as ``complete``, its text handed to ``sink`` while it arrives


class _SafeSink:
    """A sink that never breaks the model call: the first exception is logged, the rest dropped."""

    def __init__(self, sink: TokenSink):
        self._sink, self._broken = sink, False

    def __call__(self, delta: str, *, restart: bool = False) -> None:
        if self._broken:
            return
        try:
            self._sink(delta, restart=restart)
        except Exception:  # noqa: BLE001 - a watcher's problem is not the model call's
            self._broken = True
            log.warning("token sink failed; the rest of this call is not streamed", exc_info=True)


def estimate_tokens(request: CompletionRequest, reply: CompletionReply) -> Usage:
    prompt = sum(len(m.content) for m in request.messages)
    out = len(reply.text) + sum(len(c.name) + len(c.arguments) for c in reply.tool_calls)
    return Usage(input_tokens=12 + prompt // 4, output_tokens=max(1, out // 4), source="estimated")


class ModelGateway:
    """Routes a completion to the endpoint's provider; one instance per process."""

    def __init__(self, providers: dict[str, Provider] | None = None):
        self._providers: dict[str, Provider] = dict(providers or {})

    def register(self, name: str, provider: Provider) -> None:
        self._providers[name] = provider

    async def aclose(self) -> None:
        """Close the providers' HTTP clients (each instance once, aliases share one)."""
        for provider in {id(p): p for p in self._providers.values()}.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    def can_embed(self, provider: str) -> bool:
        """Whether ``provider`` offers embeddings (an ``embed(endpoint, texts)`` method)."""
        return callable(getattr(self._providers.get(provider), "embed", None))

    async def embed(self, endpoint: Endpoint, texts: list[str]) -> list[list[float]]:
        """One vector per text from the endpoint's provider (memory search)."""
        if not self.can_embed(endpoint.provider):
            raise ModelError(f'model endpoint "{endpoint.name}": provider "{endpoint.provider}" offers no embeddings',
                             code="model_embeddings_unsupported")
        return await self._providers[endpoint.provider].embed(endpoint, texts)

    def can_stream(self, provider: str) -> bool:
        """Whether ``provider`` streams (a ``stream(endpoint, request, sink)`` method)."""
        return callable(getattr(self._providers.get(provider), "stream", None))

    async def complete(self, endpoint: Endpoint, request: CompletionRequest,
                       sink: TokenSink | None = None) -> CompletionReply:
        """One completion. ``sink``: stream the answer's text to it (when the provider streams)."""
        provider = self._providers.get(endpoint.provider)
        if provider is None:
            raise ModelError(
                f'unsupported model endpoint provider "{endpoint.provider}" on endpoint "{endpoint.name}": '
                f"expected one of {', '.join(sorted(self._providers))}",
                code="model_provider_unsupported",
            )
        started = time.monotonic()
        if sink is not None and self.can_stream(endpoint.provider):
            reply = await provider.stream(endpoint, request, _SafeSink(sink))
        else:
            reply = await provider.complete(endpoint, request)
        reply.latency_ms = int((time.monotonic() - started) * 1000)
        reply.model = reply.model or endpoint.model
        if not reply.text and not reply.tool_calls:
            raise ModelError("model response missing message content", retryable=True)
        if reply.usage.total == 0:
            reply.usage = estimate_tokens(request, reply)
        return reply
