"""Resolve a Memory resource into a ``MemoryRef`` (provider, DSN, password, embedding endpoint)."""

from __future__ import annotations

from typing import Awaitable, Callable

from orloj_ray.gateway import Endpoint
from orloj_ray.memory.base import MemoryRef, canonical_provider
from orloj_ray.memory.embeddings import LOCAL_MODEL

SecretLookup = Callable[[str], Awaitable[str]]
EndpointLookup = Callable[[str], Awaitable[Endpoint]]


async def memory_ref(memory: dict, secrets: SecretLookup, endpoints: EndpointLookup) -> MemoryRef:
    """Raises MemoryBackendError (unsupported provider) or LookupError (the password secret is missing).

    A missing embedding endpoint does not fail: search falls back to lexical and says why.
    """
    meta, spec = memory["metadata"], memory.get("spec") or {}
    provider = canonical_provider(spec.get("provider") or "")
    password = ""
    ref = ((spec.get("auth") or {}).get("secretRef") or "").strip()
    if ref:
        try:
            password = await secrets(ref)
        except LookupError as exc:
            raise LookupError(f"auth secret resolution failed: {exc}") from None
    model = (spec.get("embedding_model") or "").strip()
    embedding, error = None, ""
    if model and model.lower() != LOCAL_MODEL:
        try:
            embedding = await endpoints(model)
        except LookupError as exc:
            error = f"embedding model resolution failed: {exc}"
    return MemoryRef(namespace=meta.get("namespace") or "default", name=meta["name"], provider=provider,
                     endpoint=(spec.get("endpoint") or "").strip(), password=password, embedding_model=model,
                     embedding=embedding, embedding_error=error)
