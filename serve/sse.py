"""Server-sent event streams: resource watches (api.md section 7) and the event stream (section 8).

Both are built from the store's one ordered event log (``store.events_after``) rather than
upstream's 1 s poll-and-diff: the cursor is taken *before* the snapshot is read, so a write
racing the snapshot shows up as an event whose resourceVersion is compared with what the
stream already sent (nothing lost, nothing sent twice).

Deliberate difference: upstream streams end when the 30 s request deadline fires; these run
until the client goes away. Each wait on the log is bounded (``wait_s``), and between waits
the stream checks ``request.is_disconnected()``, so a gone client is noticed within about a
second even on servers that do not cancel the response task.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from orloj_ray.errors import InvalidResource, NotFound
from orloj_ray.resources.kinds import KINDS, KindInfo
from orloj_ray.store import Event
from serve.codec import Presenter, redact_event_data
from orloj_ray.store.util import list_all
from serve.routes_resources import query_namespace

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "Connection": "keep-alive",
    "X-Accel-Buffering": "no",
}

RESOURCE_WRITES = ("resource.created", "resource.updated", "resource.status")


@dataclass(frozen=True)
class StreamSettings:
    heartbeat_s: float = 15.0
    """Interval of the ``: keep-alive`` comment. Default 15 s, as upstream."""
    wait_s: float = 1.0
    """Longest single wait on the event log between disconnect checks. Default 1 s."""
    gather_s: float = 0.02
    """After a read that found events, pause this long before the next one, so a busy log is
    read in fewer, larger pieces (fewer store calls, more writes coalesced). Default 20 ms."""


def frame(event: str, data: object) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode("utf-8")


KEEP_ALIVE = b": keep-alive\n\n"


def _rv(value: object) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _key(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "default", meta.get("name") or "")


def _stream(gen: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(gen, headers=SSE_HEADERS)


def _coalesce(events: list[Event]) -> list[Event]:
    """Drop a resource write that a later write of the same object in the same batch supersedes
    (a delete in between keeps both). A busy watch then sends each object's latest state once
    per read of the log instead of once per write, as upstream's 1 s poll-and-diff does.

    A status event carries no spec: when it supersedes the write that did, it keeps that
    write's spec, so the watch sends the object without reading it."""
    keep: list[Event] = []
    latest: dict[tuple[str, str, str], int] = {}  # object -> index in ``keep`` of its latest write
    for event in reversed(events):
        key = (event.kind, event.namespace or "default", event.name)
        if event.type == "resource.deleted":
            latest.pop(key, None)
        elif event.type in RESOURCE_WRITES:
            index = latest.get(key)
            if index is None:
                latest[key] = len(keep)
            else:
                keep[index] = _with_spec(keep[index], event)
                continue
        keep.append(event)
    keep.reverse()
    return keep


def _rest(obj: dict) -> dict:
    """What a status write leaves unchanged and its event lacks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _with_status(rest: dict, data: dict) -> dict:
    """The object: its unchanged ``rest`` with a status event's metadata and status."""
    return {**rest, "metadata": data["metadata"], "status": data.get("status") or {}}


def _with_spec(status: Event, earlier: Event) -> Event:
    """``status`` (a status write) completed with the spec of an ``earlier`` write of the object."""
    data, body = status.data, earlier.data
    if (status.type != "resource.status" or not isinstance(data, dict) or "spec" in data or "metadata" not in data
            or not isinstance(body, dict) or "spec" not in body):
        return status
    return replace(status, data=_with_status(_rest(body), data))


async def _follow(request: Request, store, cursor: int, settings: StreamSettings,
                  coalesce: bool = False, kinds: list[str] | None = None) -> AsyncIterator[list[Event] | None]:
    """Batches of events after ``cursor`` (of ``kinds``, if given) until the client leaves;
    ``None`` when a heartbeat is due. Callers send one batch as one chunk: every chunk of a
    streamed response is a message from the replica to the HTTP proxy."""
    last_beat = time.monotonic()
    while not await request.is_disconnected():
        due_in = settings.heartbeat_s - (time.monotonic() - last_beat)
        events = await store.events_after(cursor, timeout_s=max(0.0, min(settings.wait_s, due_in)), kinds=kinds)
        cursor = max(cursor, getattr(events, "cursor", 0))  # past events a scoped token does not see (serve.tenancy)
        if events:
            cursor = max(cursor, events[-1].id)
            yield _coalesce(events) if coalesce else events
        if time.monotonic() - last_beat >= settings.heartbeat_s:
            last_beat = time.monotonic()
            yield None
        if events and settings.gather_s > 0:
            await asyncio.sleep(settings.gather_s)


def register(app: FastAPI, store, settings: StreamSettings) -> None:
    """Add ``/v1/<c>/watch`` for watchable kinds (before the item routes) and ``/v1/events/watch``."""
    for info in KINDS:
        if info.watchable:
            _register_watch(app, store, info, settings)
    _register_events(app, store, settings)


def _register_watch(app: FastAPI, store, info: KindInfo, settings: StreamSettings) -> None:
    kind = info.kind

    async def watch(request: Request) -> StreamingResponse:
        q = request.query_params
        namespace = query_namespace(request)
        name = (q.get("name") or "").strip().lower()
        min_rv = _rv(q.get("resourceVersion")) if (q.get("resourceVersion") or "").strip() else None
        cursor = await store.last_event_id()  # before the snapshot: nothing can fall between
        snapshot = await list_all(store, kind, namespace)

        def wanted(ns: str, obj_name: str) -> bool:
            return (not namespace or ns == namespace) and (not name or obj_name.lower() == name)

        async def changes() -> AsyncIterator[bytes]:
            present = Presenter(store)
            seen: dict[tuple[str, str], int] = {}
            bodies: dict[tuple[str, str], dict] = {}  # what a status event lacks (spec, ...) per object sent

            async def emit(obj: dict) -> bytes | None:
                key = _key(obj)
                bodies[key] = _rest(obj)
                rv = _rv(obj["metadata"].get("resourceVersion"))
                previous = seen.get(key)
                if previous is not None and rv <= previous:
                    return None  # already sent (the snapshot raced this write)
                seen[key] = rv
                if min_rv is not None and rv <= min_rv:
                    return None
                kind_ = "added" if previous is None else "updated"
                return frame("resource", {"type": kind_, "resource": await present(obj)})

            async def change(event: Event) -> bytes | None:
                if event.kind.lower() != kind.lower() or not wanted(event.namespace or "default", event.name):
                    return None
                key = (event.namespace or "default", event.name)
                if event.type == "resource.deleted":
                    last = seen.pop(key, None)
                    bodies.pop(key, None)
                    if last is None:
                        return None
                    rv = event.resource_version or str(last)
                    meta = {"name": event.name, "namespace": key[0], "resourceVersion": rv}
                    return frame("resource", {"type": "deleted", "resource": {"metadata": meta}})
                if event.type not in RESOURCE_WRITES:
                    return None
                data = event.data
                has_spec = isinstance(data, dict) and "spec" in data  # also a status write _coalesce completed
                if (event.type == "resource.status" and not has_spec and key in bodies and isinstance(data, dict)
                        and "metadata" in data):  # the status write itself + the object's unchanged rest
                    data = _with_status(bodies[key], data)
                elif not has_spec:
                    try:
                        data = await store.get(kind, key[0], key[1])
                    except NotFound:
                        return None  # deleted since; its delete event follows
                return await emit(data)

            for obj in sorted(snapshot, key=_key):
                if wanted(*_key(obj)):
                    out = await emit(obj)
                    if out:
                        yield out

            async for batch in _follow(request, store, cursor, settings, coalesce=True, kinds=[kind]):
                if batch is None:
                    yield KEEP_ALIVE
                    continue
                frames = [out for event in batch if (out := await change(event))]
                if frames:
                    yield b"".join(frames)

        return _stream(changes())

    app.add_api_route(f"/v1/{info.plural}/watch", watch, methods=["GET"], name=f"watch_{info.plural}",
                      tags=[info.plural])


EVENT_FILTERS = ("source", "type", "kind", "name", "namespace")


def _register_events(app: FastAPI, store, settings: StreamSettings) -> None:
    async def watch_events(request: Request) -> StreamingResponse:
        q = request.query_params
        since_raw = (q.get("since") or "").strip()
        if since_raw:
            try:
                cursor = int(since_raw)
            except ValueError:
                raise InvalidResource(f'invalid since "{since_raw}": expected an event id', field="since") from None
            cursor = max(cursor, 0)
        else:
            cursor = await store.last_event_id()  # live events only
        filters = {f: (q.get(f) or "").strip().lower() for f in EVENT_FILTERS}
        filters = {f: v for f, v in filters.items() if v}

        async def events() -> AsyncIterator[bytes]:
            async for batch in _follow(request, store, cursor, settings):
                if batch is None:
                    yield KEEP_ALIVE
                    continue
                frames = []
                for event in batch:
                    if any(str(getattr(event, f) or "").lower() != v for f, v in filters.items()):
                        continue
                    body = event.to_dict()
                    body["data"] = redact_event_data(event.kind, body.get("data"))
                    frames.append(frame("event", body))
                if frames:
                    yield b"".join(frames)

        return _stream(events())

    app.add_api_route("/v1/events/watch", watch_events, methods=["GET"], name="watch_events", tags=["events"])
