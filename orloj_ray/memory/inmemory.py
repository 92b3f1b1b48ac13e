"""The ``in-memory`` provider: entries in a dict of the process hosting the MemoryService.

Search ranks by cosine similarity when the Memory has an embedder (vectors computed on
write), else lexically (``orloj_ray.memory.lexical``).
"""

from __future__ import annotations

import asyncio

from orloj_ray.memory import lexical
from orloj_ray.memory.base import Entry, SearchResult
from orloj_ray.memory.embeddings import Embedder, cosine

MAX_ENTRIES = 100_000
"""Per Memory; a write beyond it is refused (the in-memory provider is for development)."""


class InMemoryBackend:
    def __init__(self, embedder: Embedder | None = None, lexical_reason: str = ""):
        self._entries: dict[str, str] = {}
        self._vectors: dict[str, list[float]] = {}
        self._embedder = embedder
        self._lexical = "lexical" + (f" ({lexical_reason})" if lexical_reason else "")
        self._lock = asyncio.Lock()

    async def put(self, key: str, value: str) -> None:
        from orloj_ray.memory.base import MemoryBackendError

        if key not in self._entries and len(self._entries) >= MAX_ENTRIES:
            raise MemoryBackendError(f"in-memory provider holds at most {MAX_ENTRIES} entries per memory")
        vector = (await self._embedder.embed([f"{key}\n{value}"]))[0] if self._embedder else None
        async with self._lock:
            self._entries[key] = value
            if vector is not None:
                self._vectors[key] = vector

    async def get(self, key: str) -> str | None:
        return self._entries.get(key)

    async def list(self, prefix: str = "") -> list[Entry]:
        return [Entry(k, v) for k, v in sorted(self._entries.items()) if k.startswith(prefix)]

    async def search(self, query: str, top_k: int) -> SearchResult:
        if self._embedder is None:
            return SearchResult(lexical.rank(query, list(self._entries.items()), top_k), self._lexical)
        (qv,) = await self._embedder.embed([query])
        scored = [Entry(k, self._entries[k], cosine(qv, v)) for k, v in self._vectors.items() if k in self._entries]
        scored.sort(key=lambda e: (-e.score, e.key))
        return SearchResult(scored[:top_k], self._embedder.name)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
