"""``GET /v1/memories/{name}/entries``: what a Memory's backend holds (upstream's ``handleMemoryEntries``).

Query: ``q`` (search, ``limit`` = top_k), else ``prefix`` (list, then cut at ``limit``),
``limit`` (default 100), ``namespace``. A missing Memory is 404; a Memory whose provider or
configuration cannot serve entries (stored before providers were checked at apply) is 409; a
backend that fails is 503 (upstream: 500 for both).
Entries come from the MemoryService on ``app.state.memory`` when the deployment sets one (the
named actor that agent actors share, in Ray mode), else from this process's own service.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from orloj_ray.engine.resolve import resolve_memory
from orloj_ray.errors import Conflict, Unavailable
from orloj_ray.gateway import default_gateway
from orloj_ray.memory import LocalMemoryService, MemoryBackendError, MemoryService
from serve.errors import JSONResponse
from serve.routes_resources import item_namespace

_CONFIG_CODES = frozenset({"memory_provider_unsupported", "memory_config_invalid"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _limit(raw: str | None) -> int:
    try:
        n = int(str(raw).strip())
    except (TypeError, ValueError):
        return DEFAULT_LIMIT
    return min(n, MAX_LIMIT) if n > 0 else DEFAULT_LIMIT


def register(app: FastAPI, store, service: MemoryService | None = None) -> None:
    local = service

    def memory_service(request: Request) -> MemoryService:
        nonlocal local
        configured = getattr(request.app.state, "memory", None)
        if configured is not None:
            return configured
        if local is None:
            local = LocalMemoryService(default_gateway())
        return local

    async def entries(request: Request, name: str) -> JSONResponse:
        memory = await store.get("Memory", item_namespace(request), name)  # NotFound -> 404
        params = request.query_params
        try:
            try:
                ref = await resolve_memory(store, memory)
            except LookupError as exc:
                raise MemoryBackendError(f'memory "{name}": {exc}', code="memory_config_invalid") from None
            out = await memory_service(request).entries(ref, params.get("q") or "", params.get("prefix") or "",
                                                        _limit(params.get("limit")))
        except MemoryBackendError as exc:
            if exc.code in _CONFIG_CODES:
                raise Conflict(exc.message, code=exc.code) from None
            raise Unavailable(exc.message, code=exc.code) from None
        return JSONResponse(out)

    app.add_api_route("/v1/memories/{name}/entries", entries, methods=["GET"], name="memory_entries",
                      tags=["memories"])
