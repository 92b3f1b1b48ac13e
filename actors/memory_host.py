"""MemoryHost: one named actor hosting the MemoryService, and RemoteMemoryService, its client.

The ``in-memory`` provider keeps entries in the process that runs the memory operations, so
every agent actor and the API must reach the same one: this actor (created on first use,
detached). pgvector Memories run here too (one connection point, the database is the truth).
If the actor dies, Ray restarts it and in-memory entries are gone, as with the StoreHost.
"""

from __future__ import annotations

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import RAY_NAMESPACE
from orloj_ray.gateway import default_gateway
from orloj_ray.memory import LocalMemoryService, MemoryBackendError, MemoryRef

MEMORY_ACTOR = "orloj:memory"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=10_000)
class MemoryHost:
    def __init__(self):
        self._service = LocalMemoryService(default_gateway())

    async def execute(self, ref: MemoryRef, op: str, args: dict) -> dict:
        return await self._service.execute(ref, op, args)

    async def entries(self, ref: MemoryRef, query: str, prefix: str, limit: int) -> dict:
        return await self._service.entries(ref, query, prefix, limit)

    async def ping(self) -> str:
        return "ok"


class RemoteMemoryService:
    """The MemoryService protocol over the named MemoryHost actor (created on first use)."""

    def __init__(self, handle: ray.actor.ActorHandle | None = None):
        self._handle = handle

    @property
    def handle(self) -> ray.actor.ActorHandle:
        if self._handle is None:
            self._handle = MemoryHost.options(name=MEMORY_ACTOR, namespace=RAY_NAMESPACE, get_if_exists=True,
                                              lifetime="detached").remote()
        return self._handle

    async def _call(self, method: str, *args):
        try:
            return await getattr(self.handle, method).remote(*args)
        except RayTaskError as exc:
            cause = exc.cause
            raise (cause if isinstance(cause, Exception) else exc) from None
        except RayActorError as exc:
            self._handle = None
            raise MemoryBackendError(f"memory host unavailable: {exc}", retryable=True) from None

    async def execute(self, ref: MemoryRef, op: str, args: dict) -> dict:
        return await self._call("execute", ref, op, args)

    async def entries(self, ref: MemoryRef, query: str = "", prefix: str = "", limit: int = 100) -> dict:
        return await self._call("entries", ref, query, prefix, limit)
