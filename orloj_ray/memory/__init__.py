"""Agent memory: Memory resources' backends, the built-in ``memory.*`` tools, embeddings.

Providers: ``in-memory`` (alias ``memory``) and ``pgvector`` (PostgreSQL + the ``vector``
extension). Search uses embeddings when the Memory names an ``embedding_model`` whose provider
offers them (through the model gateway), or ``local`` with the ``orloj-ray[embeddings]`` extra;
otherwise it is lexical, and every search result says which ranking it used.
"""

from orloj_ray.memory.base import (
    IN_MEMORY,
    PGVECTOR,
    Entry,
    MemoryBackend,
    MemoryBackendError,
    MemoryRef,
    SearchResult,
    canonical_provider,
)
from orloj_ray.memory.refs import memory_ref
from orloj_ray.memory.service import LocalMemoryService, MemoryService, chunk_text
from orloj_ray.memory.tools import (
    MEMORY_REF_KEY,
    MEMORY_TOOL_TYPE,
    MemoryToolRunner,
    is_memory_tool,
    memory_tools,
)


def register_memory(dispatcher, service: MemoryService) -> MemoryToolRunner:
    """Register the built-in memory tools' runner (``type: memory``) on a ToolDispatcher."""
    runner = MemoryToolRunner(service)
    dispatcher.register(MEMORY_TOOL_TYPE, runner)
    return runner


__all__ = [
    "Entry", "IN_MEMORY", "LocalMemoryService", "MEMORY_REF_KEY", "MEMORY_TOOL_TYPE", "MemoryBackend",
    "MemoryBackendError", "MemoryRef", "MemoryService", "MemoryToolRunner", "PGVECTOR", "SearchResult",
    "canonical_provider", "chunk_text", "is_memory_tool", "memory_ref", "memory_tools", "register_memory",
]
