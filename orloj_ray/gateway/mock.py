"""The ``mock`` provider: deterministic, offline, and honest about who wrote what.

Each reply names the agent, step and model, restates the agent's role (first line of its
prompt) and the topic, and quotes the start of what upstream agents handed over, so a reader
of a trace can follow the work. When tools are offered and none has been called yet, it asks
for one the way upstream's mock does: the first tool whose name matches a keyword in the
context (``vector``, ``search``, ``web``, ``db``, ``echo``), else the first tool; an offered
tool named in the task's topic is picked before any of those.

The endpoint option ``latency_ms`` makes every reply take that long (slow-model demos, fault
tests, benchmarks). Streamed (``stream``), the same reply's text comes word by word, the words
spread evenly over ``latency_ms`` (all at once without it); a tool call comes whole at the end.
"""

from __future__ import annotations

import asyncio
import json
import re

from orloj_ray.gateway.base import CompletionReply, CompletionRequest, Endpoint, TokenSink, ToolCall

_PATTERNS = ("vector", "search", "web", "db", "echo")
_QUOTE = 120


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _short(text: str, limit: int = _QUOTE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _latency_s(endpoint: Endpoint) -> float:
    return max(float(endpoint.options.get("latency_ms") or 0), 0.0) / 1000


def _words(text: str) -> list[str]:
    """``text`` in pieces that join back to it exactly: each word with the spaces after it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


class MockProvider:
    async def complete(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply:
        latency = _latency_s(endpoint)
        if latency > 0:
            await asyncio.sleep(latency)
        return self._reply(endpoint, request)

    async def stream(self, endpoint: Endpoint, request: CompletionRequest, sink: TokenSink) -> CompletionReply:
        reply, latency = self._reply(endpoint, request), _latency_s(endpoint)
        words = _words(reply.text)
        if not words and latency > 0:
            await asyncio.sleep(latency)
        for word in words:
            if latency > 0:
                await asyncio.sleep(latency / len(words))
            sink(word)
        return reply

    def _reply(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply:
        meta = request.metadata
        agent = meta.get("agent", "agent")
        step = meta.get("step", 1)
        system = next((m.content for m in request.messages if m.role == "system"), "")
        tool_results = [m for m in request.messages if m.role == "tool"]
        if request.tools and not tool_results:
            return CompletionReply(tool_calls=[self._pick_tool(request, system, meta)])

        parts = [f"{agent} (step {step}, model {endpoint.model}):"]
        role = _first_line(system)
        if role:
            parts.append(role)
        topic = meta.get("topic") or ""
        if topic:
            parts.append(f'Topic: "{_short(topic)}".')
        for source in meta.get("inbox") or []:
            parts.append(f'From {source["from"]}: "{_short(source["content"])}"')
        for result in tool_results:
            parts.append(f'Tool {result.name} returned: "{_short(result.content)}"')
        return CompletionReply(text=" ".join(parts))

    async def embed(self, endpoint: Endpoint, texts: list[str]) -> list[list[float]]:
        """Deterministic bag-of-words vectors (hashed tokens, L2-normalized): texts sharing words are near."""
        return [_hashed_vector(text) for text in texts]

    @staticmethod
    def _pick_tool(request: CompletionRequest, system: str, meta: dict) -> ToolCall:
        names = [t.name for t in request.tools]
        inbox = " ".join(s["content"] for s in meta.get("inbox") or [])
        haystack = " ".join([system, meta.get("topic") or "", inbox]).lower()
        chosen = names[0]
        topic = (meta.get("topic") or "").lower()
        named = next((n for n in names if n.lower() in topic), None)  # "run flag-issues on ..." picks it
        if named:
            return ToolCall(id=f"call_{meta.get('step', 1)}_{named}", name=named,
                            arguments=json.dumps({"input": inbox or meta.get("topic") or ""}))
        for pattern in _PATTERNS:
            if pattern in haystack:
                match = next((n for n in names if pattern in n.lower()), None)
                if match:
                    chosen = match
                    break
        payload = inbox or meta.get("topic") or f"agent={meta.get('agent')} step={meta.get('step')}"
        return ToolCall(id=f"call_{meta.get('step', 1)}_{chosen}", name=chosen,
                        arguments=json.dumps({"input": payload}))


EMBED_DIM = 64


def _hashed_vector(text: str) -> list[float]:
    import hashlib
    import math

    vector = [0.0] * EMBED_DIM
    for token in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.blake2s(token.encode(), digest_size=4).hexdigest(), 16) % EMBED_DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
