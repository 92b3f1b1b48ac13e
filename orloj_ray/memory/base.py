"""Memory seams: what a Memory resource resolves to, and the backend protocol.

``MemoryRef`` is a Memory resource with its secret (the pgvector password) and its embedding
endpoint resolved; it travels with the built-in memory tools to whichever process runs them,
so its ``repr`` hides the secret. A ``MemoryBackend`` stores ``key -> value`` entries of one
Memory; ``search`` returns the ranking it used (``embedding:<model>`` or ``lexical``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Protocol

from orloj_ray.errors import OrlojError
from orloj_ray.gateway import Endpoint

IN_MEMORY = "in-memory"
PGVECTOR = "pgvector"
PROVIDER_ALIASES = {"": IN_MEMORY, "memory": IN_MEMORY, "in-memory": IN_MEMORY, "inmemory": IN_MEMORY,
                    "pgvector": PGVECTOR}
SUPPORTED_PROVIDERS = (IN_MEMORY, PGVECTOR)


class MemoryBackendError(OrlojError):
    """A memory backend failed or cannot be used as declared; ``retryable`` for transient failures."""

    code = "memory_backend_failed"
    status = 500

    def __init__(self, message: str, *, retryable: bool = False, code: str | None = None):
        super().__init__(message, code=code)
        self.retryable = retryable

    def __reduce__(self):
        return (_rebuild, (self.message, self.retryable, self.code))


def _rebuild(message, retryable, code):
    return MemoryBackendError(message, retryable=retryable, code=code)


def canonical_provider(name: str) -> str:
    """``in-memory`` / ``pgvector``; raises MemoryBackendError naming the supported ones."""
    key = (name or "").strip().lower()
    if key not in PROVIDER_ALIASES:
        raise MemoryBackendError(f'unsupported memory provider "{name}": expected one of '
                                 f"{', '.join(SUPPORTED_PROVIDERS)} (alias memory)", code="memory_provider_unsupported")
    return PROVIDER_ALIASES[key]


@dataclass(frozen=True)
class MemoryRef:
    namespace: str
    name: str
    provider: str = IN_MEMORY
    endpoint: str = ""
    """PostgreSQL DSN for pgvector."""
    password: str = ""
    embedding_model: str = ""
    """``spec.embedding_model`` as written (``local`` selects the packaged local model)."""
    embedding: Endpoint | None = None
    """The ModelEndpoint of ``spec.embedding_model``, resolved; None means lexical search."""
    embedding_error: str = ""
    """Why a declared embedding model could not be resolved (search then says so)."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def fingerprint(self) -> str:
        emb = self.embedding
        doc = [self.provider, self.endpoint, self.password, self.embedding_model,
               [emb.provider, emb.base_url, emb.model, emb.api_key] if emb else None]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        model = self.embedding.model if self.embedding else ""
        return f"MemoryRef({self.key!r}, provider={self.provider!r}, embedding={model!r})"

    __str__ = __repr__


@dataclass
class Entry:
    key: str
    value: str
    score: float | None = None

    def to_dict(self) -> dict:
        out: dict = {"key": self.key, "value": self.value}
        if self.score is not None:
            out["score"] = round(self.score, 6)
        return out


@dataclass
class SearchResult:
    entries: list[Entry] = field(default_factory=list)
    ranking: str = "lexical"
    """``embedding:<model>`` or ``lexical`` (with the reason when an embedding model was declared)."""


class MemoryBackend(Protocol):
    async def put(self, key: str, value: str) -> None: ...
    async def get(self, key: str) -> str | None: ...
    async def search(self, query: str, top_k: int) -> SearchResult: ...
    async def list(self, prefix: str = "") -> list[Entry]: ...
    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...
