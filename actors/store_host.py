"""StoreHost: one named actor hosting the store (memory or PostgreSQL), and RemoteStore, its client.

Every process (Serve replicas, the Supervisor, drivers) reaches the same data through
``RemoteStore``, which implements the Store protocol by forwarding to the actor. With the
memory store, if the StoreHost dies its data is gone: the embedded default survives agent and
supervisor deaths, not its own. With ``store: postgres`` the data is in PostgreSQL and the
host is restarted by Ray; it stays the one gateway so the cluster holds one connection pool.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from collections.abc import Collection

import ray
from ray.exceptions import RayActorError, RayTaskError

from actors import RAY_NAMESPACE, STORE_ACTOR
from orloj_ray.config import ServerConfig
from orloj_ray.errors import OrlojError, Unavailable
from orloj_ray.store import open_store
from orloj_ray.store.base import Event, LabelSelector, ListPage


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)
class StoreHost:
    """Hosts the store ``config.store`` names, opened on the first call (``ping``), with its
    Secrets encrypted at rest (``open_store``)."""

    def __init__(self, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self._store = None
        self._opening: asyncio.Lock | None = None
        self._actor_calls = 0
        self._store_calls: collections.Counter[str] = collections.Counter()

    async def _opened(self):
        if self._store is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._store is None:
                    # calls arrive and answers leave serialized by Ray: copies already
                    self._store = await open_store(self.config, copy_values=False)
        return self._store

    async def call(self, method: str, *args, **kwargs):
        self._actor_calls += 1
        self._store_calls[_label(method, args)] += 1
        try:
            return await getattr(await self._opened(), method)(*args, **kwargs)
        except OrlojError as exc:  # an answer (NotFound, Conflict, ...), not a crash: see _Raised
            return _Raised(exc)

    async def call_many(self, calls: list[tuple[str, tuple, dict]]) -> list:
        """Several calls in one actor call (``RemoteStore`` batches). They start in the order
        given, so the memory store, which never awaits inside a write, applies them in order;
        each answer (or its error) comes back in its place."""
        self._actor_calls += 1
        self._store_calls.update(_label(method, args) for method, args, _ in calls)
        store = await self._opened()

        async def one(method: str, args: tuple, kwargs: dict):
            try:
                return await getattr(store, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - handed back to that call's caller
                return _Raised(exc)

        return await asyncio.gather(*(one(*call) for call in calls))

    async def ping(self) -> str:
        await self._opened()
        return "ok"

    async def stats(self) -> dict:
        """Calls served so far: actor calls (a batch is one) and store calls by method and kind."""
        return {"actor_calls": self._actor_calls, "store_calls": dict(self._store_calls)}

    async def store_kind(self) -> str:
        store = await self._opened()
        return type(getattr(store, "inner", store)).__name__


def _label(method: str, args: tuple) -> str:
    """``list Task``: the method and, for calls about one kind, the kind."""
    return f"{method} {args[0]}" if args and isinstance(args[0], str) else method


class _Raised:
    """A store error sent back as a value. Raised through Ray, every NotFound or Conflict would
    have its traceback formatted (source lines parsed) in the store actor: on a busy server
    (watch streams reading just-deleted tasks) that was a tenth of the actor's CPU."""

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error


def start_store_host(config: ServerConfig | None = None, *, detached: bool = True,
                     name: str = STORE_ACTOR) -> ray.actor.ActorHandle:
    options = {"name": name, "namespace": RAY_NAMESPACE, "get_if_exists": True}
    if detached:
        options["lifetime"] = "detached"
    if config is not None and config.store == "postgres":
        options["max_restarts"] = -1  # the data is in PostgreSQL: a restarted host loses nothing
    handle = StoreHost.options(**options).remote(config)
    try:
        ray.get(handle.ping.remote())
    except RayTaskError as exc:  # e.g. the secrets it holds need a key that was not given
        ray.kill(handle, no_restart=True)
        raise exc.cause if isinstance(exc.cause, Exception) else exc from None
    return handle


MAX_BATCHES_IN_FLIGHT = 1
"""Per process and event loop: while this many batches are on their way to the StoreHost, new
calls wait and leave together in the next one. The actor call, not the store work, is what
costs (about 0.7 ms of CPU on each side here), so under load one call carries many."""


class _Batcher:
    """Sends the calls of one event loop to the StoreHost, several per actor call under load.

    A call goes at once while fewer than ``MAX_BATCHES_IN_FLIGHT`` batches are out; otherwise
    it waits for one to return and leaves with everything that queued meanwhile. Nothing waits
    on a timer, so an idle process sees no added latency.
    """

    def __init__(self, remote: "RemoteStore"):
        self.remote = remote
        self.queued: list[tuple[str, tuple, dict, asyncio.Future]] = []
        self.in_flight = 0

    def submit(self, method: str, args: tuple, kwargs: dict) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.queued.append((method, args, kwargs, future))
        if self.in_flight < MAX_BATCHES_IN_FLIGHT and len(self.queued) == 1:
            asyncio.get_running_loop().call_soon(self._flush)  # after this tick's other calls
        return future

    def _flush(self) -> None:
        if not self.queued or self.in_flight >= MAX_BATCHES_IN_FLIGHT:
            return
        batch, self.queued = self.queued, []
        self.in_flight += 1
        asyncio.ensure_future(self._send(batch))

    async def _send(self, batch: list) -> None:
        try:
            if len(batch) == 1:
                method, args, kwargs, _ = batch[0]
                answers = [await self.remote._remote_call(self.remote.handle.call, method, *args, **kwargs)]
            else:
                answers = await self.remote._remote_call(
                    self.remote.handle.call_many, [(m, a, k) for m, a, k, _ in batch])
        except Exception as exc:  # noqa: BLE001 - the transport failed: every call in the batch fails
            answers = [_Raised(exc)] * len(batch)
        finally:
            self.in_flight -= 1
            self._flush()
        for (_, _, _, future), answer in zip(batch, answers):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, _Raised):
                future.set_exception(answer.error)
            else:
                future.set_result(answer)


class RemoteStore:
    """The Store protocol over the StoreHost actor; errors come back as the store raised them.

    Calls from one event loop are batched under load (``_Batcher``); a long poll
    (``events_after`` with a timeout) always goes on its own, so it holds up no one.
    """

    def __init__(self, handle: ray.actor.ActorHandle | None = None):
        self._handle = handle
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()

    @property
    def handle(self) -> ray.actor.ActorHandle:
        if self._handle is None:
            self._handle = ray.get_actor(STORE_ACTOR, namespace=RAY_NAMESPACE)
        return self._handle

    async def _call(self, method: str, *args, **kwargs):
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher(self)
        return await batcher.submit(method, args, kwargs)

    async def _remote_call(self, remote_method, *args, **kwargs):
        """One actor call; Ray's failures become the store's errors (Unavailable when it is gone)."""
        try:
            result = await remote_method.remote(*args, **kwargs)
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
        if timeout_s > 0:  # a long poll: on its own, never in a batch
            return await self._remote_call(self.handle.call, "events_after", after_id, timeout_s, limit, kinds)
        return await self._call("events_after", after_id, timeout_s, limit, kinds)

    async def last_event_id(self) -> int:
        return await self._call("last_event_id")

    async def append_audit(self, record: dict) -> dict:
        return await self._call("append_audit", record)

    async def list_audit(self, namespace: str | None = None, **filters) -> list[dict]:
        return await self._call("list_audit", namespace, **filters)

    async def rotate_secret_key(self) -> dict:
        return await self._remote_call(self.handle.call, "rotate_secret_key")


class _OpenedOnFirstUse:
    """The store of this process (PostgreSQL), opened on its first call: actors build their
    store in a synchronous constructor. Opened by ``open_store``, so Secrets are encrypted at
    rest here as in the StoreHost (and migrations run under an advisory lock)."""

    def __init__(self, config: ServerConfig):
        self._config = config
        self._store = None
        self._opening: asyncio.Lock | None = None

    async def _opened(self):
        if self._store is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._store is None:
                    self._store = await open_store(self._config)
        return self._store

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        async def call(*args, **kwargs):
            return await getattr(await self._opened(), name)(*args, **kwargs)

        return call

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()


def process_store(config: ServerConfig):
    """The Store for one process of the control plane (a supervisor, an API replica, the pool).

    ``memory``: the StoreHost actor through ``RemoteStore`` (the data lives there; one process is
    the embedded default's ceiling). ``postgres``: a connection pool of this process's own, with
    its own LISTEN connection, so no single store process sits on every hop of every task.
    """
    if config.store == "postgres":
        return _OpenedOnFirstUse(config)
    return RemoteStore()
