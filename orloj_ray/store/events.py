"""The control-plane event log: a bounded ring of ``Event``s with long-poll reads.

Also builds the ``resource.*`` events that every store write appends, so every Store
implementation emits the same payloads (Secret values redacted to ``"***"``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection
from dataclasses import replace
from itertools import islice

from orloj_ray.store.base import Event
from orloj_ray.store.util import clone, now_rfc3339_nano, same

DEFAULT_CAPACITY = 8192
"""Events kept, as upstream ``orlojd``."""


class EventLog:
    """Ids increase by one per event from 1; the oldest events fall out past ``capacity``.

    Single event loop: appends never await, and waiters share one ``asyncio.Event`` per
    generation, set and dropped on the next append, so idle waiters hold no other memory.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, copy_values: bool = True):
        self._events: deque[Event] = deque(maxlen=capacity)
        self._copy = clone if copy_values else same
        """How event data is copied in and out (not at all where the caller copies: see MemoryStore)."""
        self._last_id = 0
        self._wakeup: asyncio.Event | None = None

    @property
    def last_id(self) -> int:
        return self._last_id

    def append(self, event: Event) -> Event:
        """Store a copy with the next id and the current timestamp; returns another copy."""
        self._last_id += 1
        stored = replace(event, id=self._last_id, timestamp=now_rfc3339_nano(), data=self._copy(event.data))
        self._events.append(stored)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None
        return replace(stored, data=self._copy(stored.data))

    def after(self, after_id: int, limit: int = 1000, kinds: Collection[str] | None = None) -> list[Event]:
        """Copies of up to ``limit`` kept events with ``id > after_id`` (of ``kinds``, if given), oldest first."""
        if not self._events:
            return []
        start = max(0, after_id + 1 - self._events[0].id)
        found = islice(self._events, start, None)
        if kinds is not None:
            found = (e for e in found if e.kind in kinds)
        events = list(islice(found, max(1, limit)))
        return [replace(e, data=clone(e.data)) for e in events] if self._copy is clone else events

    async def wait_after(self, after_id: int, timeout_s: float, limit: int = 1000,
                         kinds: Collection[str] | None = None) -> list[Event]:
        """Like ``after``, waiting up to ``timeout_s`` for the first matching event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            found = self.after(after_id, limit, kinds)
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return []


def resource_event(action: str, obj: dict, source: str) -> Event:
    """The event for a store write: ``action`` is ``created|updated|status|deleted``."""
    meta = obj["metadata"]
    if action == "status":
        data = {"metadata": meta, "status": obj.get("status")}
    elif action == "deleted":
        data = {"metadata": {k: meta.get(k) for k in ("name", "namespace", "resourceVersion")}}
    else:
        data = _redacted(obj)
    return Event(
        id=0,
        timestamp="",
        source=source,
        type=f"resource.{action}",
        kind=obj["kind"],
        name=meta["name"],
        namespace=meta["namespace"],
        action=action,
        data=data,
        resource_version=meta["resourceVersion"],
    )


def _redacted(obj: dict) -> dict:
    """The object as events may show it: Secret ``spec.data`` values masked, ``stringData`` dropped."""
    spec = obj.get("spec")
    if obj.get("kind") != "Secret" or not isinstance(spec, dict):
        return obj
    spec = {k: v for k, v in spec.items() if k != "stringData"}
    if isinstance(spec.get("data"), dict):
        spec["data"] = {k: "***" for k in spec["data"]}
    return {**obj, "spec": spec}
