"""StoreHost: one named actor hosting the store (memory or PostgreSQL), and RemoteStore, its client.

Every process (Serve replicas, the Supervisor, drivers) reaches the same data through
``RemoteStore``, which implements the Store protocol by forwarding to the actor. With the
memory store, if the StoreHost dies its data is gone: the embedded default survives agent and
supervisor deaths, not its own. With ``store: postgres`` the data is in PostgreSQL and the
host is restarted by Ray; it stays the one gateway so the cluster holds one connection pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import RAY_NAMESPACE, STORE_ACTOR
from orloj_ray.config import ServerConfig
from orloj_ray.errors import OrlojError, Unavailable
from orloj_ray.store import MemoryStore, open_store
from orloj_ray.store.base import Event, LabelSelector, ListPage


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)
class StoreHost:
    """Hosts the store ``config.store`` names; a PostgresStore is opened on the first call (``ping``)."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self._store = MemoryStore() if self.config.store == "memory" else None
        self._opening: asyncio.Lock | None = None

    async def _opened(self):
        if self._store is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._store is None:
                    self._store = await open_store(self.config)
        return self._store

    async def call(self, method: str, *args, **kwargs):
        try:
            return await getattr(await self._opened(), method)(*args, **kwargs)
        except OrlojError as exc:  # an answer (NotFound, Conflict, ...), not a crash: see _Raised
            return _Raised(exc)

    async def ping(self) -> str:
        await self._opened()
        return "ok"

    async def store_kind(self) -> str:
        return type(await self._opened()).__name__


class _Raised:
    """A store error sent back as a value. Raised through Ray, every NotFound or Conflict would
    have its traceback formatted (source lines parsed) in the store actor: on a busy server
    (watch streams reading just-deleted tasks) that was a tenth of the actor's CPU."""

    __slots__ = ("error",)

    def __init__(self, error: OrlojError):
        self.error = error


def start_store_host(config: ServerConfig | None = None, *, detached: bool = True,
                     name: str = STORE_ACTOR) -> ray.actor.ActorHandle:
    options = {"name": name, "namespace": RAY_NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    if config is not None and config.store == "postgres":
        options["max_restarts"] = -1  # the data is in PostgreSQL: a restarted host loses nothing
    handle = StoreHost.options(**options).remote(config)
    ray.get(handle.ping.remote())
    return handle


class RemoteStore:
    """The Store protocol over the StoreHost actor; errors come back as the store raised them."""

    def __init__(self, handle: ray.actor.ActorHandle | None = None):
        self._handle = handle

    @property
    def handle(self) -> ray.actor.ActorHandle:
        if self._handle is None:
            self._handle = ray.get_actor(STORE_ACTOR, namespace=RAY_NAMESPACE)
        return self._handle

    async def _call(self, method: str, *args, **kwargs):
        try:
            result = await self.handle.call.remote(method, *args, **kwargs)
        except RayTaskError as exc:
            cause = exc.cause
            raise (cause if isinstance(cause, Exception) else exc) from None
        except (RayActorError, ValueError) as exc:
            raise Unavailable(f"store unavailable: {exc}") from None
        if isinstance(result, _Raised):
            raise result.error
        return result

    async def create(self, obj: dict, *, source: str = "apiserver") -> dict:
        return await self._call("create", obj, source=source)

    async def upsert(self, obj: dict, *, source: str = "apiserver") -> tuple[dict, bool]:
        return await self._call("upsert", obj, source=source)

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        return await self._call("get", kind, namespace, name)

    async def list(self, kind: str, namespace: str | None = None, selector: LabelSelector | None = None,
                   limit: int | None = None, after: str | None = None) -> ListPage:
        return await self._call("list", kind, namespace, selector, limit, after)

    async def update(self, obj: dict, expected_rv: str, *, source: str = "apiserver") -> dict:
        return await self._call("update", obj, expected_rv, source=source)

    async def update_status(self, kind: str, namespace: str, name: str, status: dict, expected_rv: str,
                            *, source: str = "apiserver") -> dict:
        return await self._call("update_status", kind, namespace, name, status, expected_rv, source=source)

    async def claim(self, kind: str, namespace: str, name: str, decide, *, source: str = "apiserver") -> dict | None:
        return await self._call("claim", kind, namespace, name, decide, source=source)

    async def delete(self, kind: str, namespace: str, name: str, *, source: str = "apiserver") -> dict:
        return await self._call("delete", kind, namespace, name, source=source)

    async def publish(self, event: Event) -> Event:
        return await self._call("publish", event)

    async def events_after(self, after_id: int, timeout_s: float = 0.0, limit: int = 1000,
                           kinds: Collection[str] | None = None) -> list[Event]:
        return await self._call("events_after", after_id, timeout_s, limit, kinds)

    async def last_event_id(self) -> int:
        return await self._call("last_event_id")

    async def append_audit(self, record: dict) -> dict:
        return await self._call("append_audit", record)

    async def list_audit(self, namespace: str | None = None, **filters) -> list[dict]:
        return await self._call("list_audit", namespace, **filters)
