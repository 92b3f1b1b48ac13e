"""``CachedReads``: reads of a few kinds served from memory, kept current from the event log.

The engine reads the same configuration on every task and every turn (systems, agents,
endpoints, tools, roles, policies, permissions, approvals). Those objects change rarely, so
the engine reads them here instead of asking the store each time, as a Kubernetes informer does.

Freshness is explicit: ``sync()`` returns once everything the store had committed when it was
called is in the cache, so a caller that syncs before reading sees what a direct read would
have seen then; ``sync(after=id)`` asks only for everything up to a known store event, which
a recent sync may already hold. Concurrent callers share syncs (one in flight at a time),
which is what makes this cheaper than reading: under load one sync serves many turns.

Kinds whose events are redacted (``Secret``) must not be cached: their events mask values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from orloj_ray.errors import NotFound
from orloj_ray.store.base import Event, LabelSelector, ListPage
from orloj_ray.store.memory import page_of
from orloj_ray.store.util import clone, object_key, quote

REFILL_AFTER = 4096
"""Events behind at which ``sync`` reloads instead of replaying (the memory store keeps 8,192)."""

_PAGE = 1000


class CachedReads:
    """``get`` and ``list`` of ``kinds`` from memory; any other kind goes to ``store``."""

    def __init__(self, store, kinds: Collection[str]):
        self.store = store
        self.kinds = frozenset(kinds)
        if "Secret" in self.kinds:
            raise ValueError("Secret events are redacted: Secrets cannot be cached")
        self._objects: dict[str, dict[tuple[str, str], dict]] = {kind: {} for kind in self.kinds}
        self._cursor: int | None = None  # None: never loaded
        self._known = 0  # the store's last event id as the previous sync read it
        self._covered = 0  # every event up to this id is applied
        self._started = 0  # syncs begun
        self._done = 0  # syncs finished
        self._running: asyncio.Task | None = None

    async def sync(self, after: int | None = None) -> None:
        """Wait until the cache holds everything the store had committed when this was called,
        or, given a store event id ``after``, everything up to that event (which a sync already
        under way or done may cover: then there is no wait)."""
        wanted = self._started + 1  # a sync that begins after this call
        for _ in range(1000):  # bounded: each pass waits for one sync to finish
            if self._done >= wanted or (after is not None and self._covered >= after):
                return
            if self._running is None or self._running.done():
                self._running = asyncio.create_task(self._sync_once())
            await asyncio.shield(self._running)
        raise RuntimeError("CachedReads.sync did not converge")

    def sync_soon(self, after: int | None = None) -> asyncio.Future:
        """``sync(after)`` started now, as a future: started with a store call, it runs while
        that call is out, so a caller that needs both waits less than for one after the other.
        A failure nobody awaits is not reported as unretrieved."""
        sync = asyncio.ensure_future(self.sync(after))
        sync.add_done_callback(lambda done: done.cancelled() or done.exception())
        return sync

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        if kind not in self.kinds:
            return await self.store.get(kind, namespace, name)
        self._require_loaded()
        found = self._objects[kind].get(object_key(namespace, name))
        if found is None:
            raise NotFound(f"{kind.lower()} {quote(name)} not found")
        return clone(found)

    async def list(self, kind: str, namespace: str | None = None, selector: LabelSelector | None = None,
                   limit: int | None = None, after: str | None = None) -> ListPage:
        if kind not in self.kinds:
            return await self.store.list(kind, namespace, selector, limit, after)
        self._require_loaded()
        return page_of(self._objects[kind], namespace, selector, limit, after)

    # -- keeping current ---------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if self._cursor is None:
            raise RuntimeError("CachedReads read before its first sync()")

    async def _sync_once(self) -> None:
        """One round trip when nothing is behind: the store's last event id and this cache's
        kinds' events after the cursor, asked together (RemoteStore sends them in one batch).

        The events alone make the barrier: they hold everything of these kinds committed
        before they were read. The id read by the previous sync moves the cursor past other
        kinds' events (it was read before these events were), so reads do not rescan them."""
        self._started += 1
        generation = self._started
        if self._cursor is None:
            await self._reload(await self.store.last_event_id())
        else:
            last, events = await asyncio.gather(self.store.last_event_id(),
                                                self.store.events_after(self._cursor, 0.0, _PAGE, self.kinds))
            if last - self._cursor > REFILL_AFTER or last < self._cursor:  # fell behind the log, or a new store
                await self._reload(last)
            else:
                self._take(events, self._known)
                if len(events) == _PAGE:
                    await self._catch_up(last)
                self._covered, self._known = self._known, last  # these events were read after _known was
        self._done = max(self._done, generation)

    async def _reload(self, last: int) -> None:
        """Everything listed after ``last`` was read; replaying later events converges."""
        objects: dict[str, dict[tuple[str, str], dict]] = {}
        for kind in self.kinds:
            items, after = {}, None
            for _ in range(10_000):  # bounded: 10M objects
                page = await self.store.list(kind, None, None, _PAGE, after)
                for obj in page.items:
                    items[object_key(obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
                if not page.continue_:
                    break
                after = page.continue_
            objects[kind] = items
        self._objects = objects
        self._cursor = last
        await self._catch_up(last)
        self._covered = self._known = last

    async def _catch_up(self, last: int) -> None:
        """Apply this cache's kinds' events up to at least ``last`` (an id read before this call)."""
        for _ in range(10_000):  # bounded: 10M events
            events = await self.store.events_after(self._cursor, 0.0, _PAGE, self.kinds)
            if self._take(events, last):
                return

    def _take(self, events: list[Event], seen: int) -> bool:
        """Apply events read after the id ``seen`` was; True when they were all there were."""
        for event in events:
            self._apply(event)
        if len(events) < _PAGE:  # everything matching up to now was returned
            self._cursor = max(self._cursor, seen, events[-1].id if events else 0)
            return True
        self._cursor = events[-1].id
        return False

    def _apply(self, event: Event) -> None:
        if event.kind not in self.kinds or not event.type.startswith("resource."):
            return
        objects = self._objects[event.kind]
        key = object_key(event.namespace, event.name)
        data = event.data or {}
        if event.action == "deleted":
            objects.pop(key, None)
        elif event.action == "status":
            current = objects.get(key)
            if current is not None:  # else created later in the log, or deleted: those events decide
                current["metadata"] = data.get("metadata") or current["metadata"]
                current["status"] = data.get("status") or {}
        elif event.action in ("created", "updated"):
            objects[key] = data
