"""``MemoryStore``: the default, in-process Store.

Data lives in this process only (the runtime hosts one instance in a named actor); it is lost
when that process dies. All methods run on one asyncio event loop and never await while
changing state, so each write is atomic.

Stored objects are never changed in place: a write stores a new object (sharing the parts it
did not change), so an object or event handed out earlier keeps the state it had. In-process
callers get copies (``copy_values=True``, the default) so they cannot change the stored state
by accident; behind the store actor Ray's serialization already copies every argument and
answer, and copying again was a fifth of that actor's CPU (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Collection

from orloj_ray.errors import Conflict, InvalidResource, NotFound
from orloj_ray.store.base import Event, LabelSelector, ListPage
from orloj_ray.store.events import DEFAULT_CAPACITY, EventLog, resource_event
from orloj_ray.store.util import (
    clamp_limit, clean_rv, clone, incoming, now_rfc3339, object_key, quote, required_rv, rv_conflict, same,
)


_Key = tuple[str, str]  # (namespace, name)


class MemoryStore:
    """Objects keyed by (kind, namespace, name); copied on the way in and out unless ``copy_values=False``
    (for a caller that copies anyway: the store actor, whose calls arrive and leave serialized)."""

    def __init__(self, *, event_capacity: int = DEFAULT_CAPACITY, copy_values: bool = True):
        self._kinds: dict[str, dict[_Key, dict]] = {}
        self._copy = clone if copy_values else same
        self._events = EventLog(event_capacity, copy_values=copy_values)
        self._audit: list[dict] = []

    async def create(self, obj: dict, *, source: str = "apiserver") -> dict:
        kind, key, body = incoming(obj, self._copy)
        if key in self._kinds.get(kind, {}):
            raise Conflict(f"{kind.lower()} {quote(key[1])} already exists")
        return self._insert(kind, key, body, source)

    async def upsert(self, obj: dict, *, source: str = "apiserver") -> tuple[dict, bool]:
        kind, key, body = incoming(obj, self._copy)
        current = self._kinds.get(kind, {}).get(key)
        if current is None:
            return self._insert(kind, key, body, source), True
        body_rv = clean_rv(body["metadata"].get("resourceVersion"))
        if body_rv:
            _check_rv(kind, body_rv, current)
        return self._replace(kind, key, current, body, source), False

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        return self._copy(self._current(kind, namespace, name))

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: LabelSelector | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> ListPage:
        return page_of(self._kinds.get(kind, {}), namespace, selector, limit, after, self._copy)

    async def update(self, obj: dict, expected_rv: str, *, source: str = "apiserver") -> dict:
        kind, key, body = incoming(obj, self._copy)
        current = self._current(kind, *key)
        _check_rv(kind, required_rv(expected_rv), current)
        return self._replace(kind, key, current, body, source)

    async def update_status(
        self, kind: str, namespace: str, name: str, status: dict, expected_rv: str,
        *, source: str = "apiserver",
    ) -> dict:
        if not isinstance(status, dict):
            raise InvalidResource("status must be an object", field="status")
        current = self._current(kind, namespace, name)
        _check_rv(kind, required_rv(expected_rv), current)
        meta = current["metadata"]
        status = self._copy(status)
        if not status.get("observedGeneration"):
            status = {**status, "observedGeneration": meta["generation"]}
        stored = {**current, "metadata": {**meta, "resourceVersion": _next_rv(meta["resourceVersion"])},
                  "status": status}
        self._kinds[kind][object_key(namespace, name)] = stored
        self._events.append(resource_event("status", stored, source))
        return self._copy(stored)

    async def claim(self, kind: str, namespace: str, name: str, decide, *, source: str = "apiserver") -> dict | None:
        current = self._current(kind, namespace, name)  # no await until written: atomic
        status = decide(clone(current))
        if status is None:
            return None
        return await self.update_status(kind, namespace, name, status, "*", source=source)

    async def delete(self, kind: str, namespace: str, name: str, *, source: str = "apiserver") -> dict:
        current = self._current(kind, namespace, name)
        del self._kinds[kind][object_key(namespace, name)]
        self._events.append(resource_event("deleted", current, source))
        return current

    async def publish(self, event: Event) -> Event:
        return self._events.append(event)

    async def events_after(self, after_id: int, timeout_s: float = 0.0, limit: int = 1000,
                           kinds: Collection[str] | None = None) -> list[Event]:
        return await self._events.wait_after(after_id, timeout_s, limit, kinds)

    async def last_event_id(self) -> int:
        return self._events.last_id

    async def append_audit(self, record: dict) -> dict:
        stored = {**self._copy(record), "id": len(self._audit) + 1}
        self._audit.append(stored)
        return self._copy(stored)

    async def list_audit(self, namespace: str | None = None, *, task: str | None = None, agent: str | None = None,
                         decision: str | None = None, code: str | None = None, subject: str | None = None,
                         after: int = 0, limit: int | None = None) -> list[dict]:
        limit = clamp_limit(limit)
        wanted = {k: v for k, v in (("namespace", namespace), ("task", task), ("agent", agent),
                                    ("decision", decision), ("code", code), ("subject", subject)) if v}
        out = []
        for record in self._audit[max(0, int(after or 0)):]:
            if all(record.get(k) == v for k, v in wanted.items()):
                out.append(self._copy(record))
                if len(out) >= limit:
                    break
        return out

    # -- internals ---------------------------------------------------------------------------

    def _bucket(self, kind: str) -> dict[_Key, dict]:
        return self._kinds.setdefault(kind, {})

    def _current(self, kind: str, namespace: str, name: str) -> dict:
        found = self._kinds.get(kind, {}).get(object_key(namespace, name))
        if found is None:
            raise NotFound(f"{kind.lower()} {quote(name)} not found")
        return found

    def _insert(self, kind: str, key: _Key, body: dict, source: str) -> dict:
        meta = body["metadata"]
        body_rv = clean_rv(meta.get("resourceVersion"))
        if body_rv not in ("", "0"):
            raise rv_conflict(kind, body_rv, "")
        meta.update(resourceVersion="1", generation=1, createdAt=now_rfc3339())
        status = body.pop("status", None)
        body["status"] = status if isinstance(status, dict) else {}
        self._bucket(kind)[key] = body
        self._events.append(resource_event("created", body, source))
        return self._copy(body)

    def _replace(self, kind: str, key: _Key, current: dict, body: dict, source: str) -> dict:
        """Replace metadata and spec, keep status; bump generation only when the spec changed."""
        old = current["metadata"]
        generation = old.get("generation") or 1
        if body.get("spec") != current.get("spec"):
            generation += 1
        body["metadata"].update(
            resourceVersion=_next_rv(old["resourceVersion"]), generation=generation, createdAt=old.get("createdAt")
        )
        body.pop("status", None)
        body["status"] = current.get("status", {})
        self._bucket(kind)[key] = body
        self._events.append(resource_event("updated", body, source))
        return self._copy(body)


def page_of(items: dict[_Key, dict], namespace: str | None, selector: LabelSelector | None,
            limit: int | None, after: str | None, copy=clone) -> ListPage:
    """``Store.list`` over objects keyed by (namespace, name): copies, sorted, filtered, cut."""
    limit = clamp_limit(limit)
    keys = sorted(k for k in items if not namespace or k[0] == namespace)
    if after:
        keys = [k for k in keys if _after(k, after)]
    if selector and selector.terms:
        keys = [k for k in keys if selector.matches(items[k]["metadata"].get("labels"))]
    page = keys[:limit]
    cont = None
    if page and len(page) == limit:
        ns, name = page[-1]
        cont = name if namespace else f"{ns}/{name}"
    return ListPage(items=[copy(items[k]) for k in page], continue_=cont)


def _after(key: _Key, cursor: str) -> bool:
    """Keyset filter: a ``namespace/name`` cursor compares the pair, a bare name the name."""
    if "/" in cursor:
        return key > tuple(cursor.split("/", 1))
    return key[1] > cursor


def _check_rv(kind: str, expected: str, current: dict) -> None:
    current_rv = current["metadata"]["resourceVersion"]
    if expected != "*" and expected != current_rv:
        raise rv_conflict(kind, expected, current_rv)


def _next_rv(rv: str) -> str:
    return str(int(rv) + 1)
