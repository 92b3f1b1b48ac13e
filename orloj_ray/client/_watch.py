"""Change streams over SSE: ``watch`` (resources), ``events`` (control-plane events) and
``task_stream`` (a task's model output, live)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from orloj_ray.client._docs import name_of, resource_version
from orloj_ray.client._resources import ResourceAPI
from orloj_ray.client._transport import StreamUnsupported
from orloj_ray.errors import InvalidResource, NotFound
from orloj_ray.resources.kinds import KindInfo


class WatchAPI(ResourceAPI):
    def _watch_once(self, info: KindInfo, namespace, name, read_timeout: float, until: float | None = None):
        for _event, data in self._stream(f"/v1/{info.plural}/watch", {"namespace": namespace, "name": name},
                                         read_timeout, until):
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if isinstance(msg, dict) and "resource" in msg:
                yield str(msg.get("type", "")), msg.get("resource") or {}

    def watch(self, kind: str, namespace: str | None = None, name: str | None = None, *,
              reconnect: bool = True, timeout: float | None = None) -> Iterator[tuple[str, dict]]:
        """``(type, resource)`` for each change (``added``/``updated``/``deleted``) of a
        watchable kind (agents, tasks, task-schedules, task-webhooks), starting with a
        snapshot. Reconnects when the server ends the stream (without repeating versions
        already seen) unless ``reconnect=False``; stops after ``timeout`` seconds if given."""
        info = self.kind(kind)
        if not info.watchable:
            raise InvalidResource(f"{info.plural} cannot be watched: watchable kinds are agents, "
                                  f"tasks, task-schedules, task-webhooks", field="kind")
        until = time.monotonic() + timeout if timeout is not None else None
        seen: dict[tuple[str, str], str] = {}
        while until is None or time.monotonic() < until:
            try:
                for etype, res in self._watch_once(info, namespace, name, 60.0, until):
                    key = ((res.get("metadata") or {}).get("namespace", ""), name_of(res))
                    if etype == "deleted":
                        seen.pop(key, None)
                    elif seen.get(key) == resource_version(res):
                        continue
                    else:
                        seen[key] = resource_version(res)
                    yield etype, res
            except StreamUnsupported as exc:
                raise NotFound(f"server has no watch stream for {info.plural}") from exc
            except httpx.ReadTimeout:
                pass
            if not reconnect:
                return

    def events(self, since: int | None = None, *, reconnect: bool = True, timeout: float | None = None,
               **filters: str | None) -> Iterator[dict]:
        """Control-plane events (``/v1/events/watch``), replaying those after ``since``.
        Filters: ``source``, ``type``, ``kind``, ``name``, ``namespace`` (exact, any case).
        Reconnects from the last id when the stream ends unless ``reconnect=False``; stops
        after ``timeout`` seconds if given."""
        unknown = set(filters) - {"source", "type", "kind", "name", "namespace"}
        if unknown:
            raise TypeError(f"unknown event filter(s): {', '.join(sorted(unknown))}")
        until = time.monotonic() + timeout if timeout is not None else None
        last = since
        while until is None or time.monotonic() < until:
            try:
                for _event, data in self._stream("/v1/events/watch", {"since": last, **filters}, 60.0, until):
                    try:
                        ev = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(ev, dict) and isinstance(ev.get("id"), int):
                        last = ev["id"]
                    yield ev
            except StreamUnsupported as exc:
                raise NotFound("server has no event stream (/v1/events/watch)") from exc
            except httpx.ReadTimeout:
                pass
            if not reconnect:
                return

    def task_stream(self, name: str, namespace: str = "default", *,
                    timeout: float | None = None) -> Iterator[tuple[str, dict]]:
        """A task's model output as it is written (``GET /v1/tasks/{name}/stream``): ``(event,
        data)`` for ``token`` (``agent``, ``message_id``, ``step``, ``delta``; ``restart`` when a
        retried call starts over), ``turn_end``, and last ``end`` (``phase``). Reconnects after
        the last event seen when the connection drops; stops after ``timeout`` seconds if given.
        NotFound when the task is missing or the server has no such stream."""
        until = time.monotonic() + timeout if timeout is not None else None
        after = 0
        while until is None or time.monotonic() < until:
            try:
                for event, raw in self._stream(f"/v1/tasks/{name}/stream",
                                               {"namespace": namespace, "after": after or None}, 60.0, until):
                    try:
                        data = json.loads(raw)
                    except ValueError:
                        continue
                    if not isinstance(data, dict):
                        continue
                    if isinstance(data.get("seq"), int):
                        after = data["seq"]
                    yield event, data
                    if event == "end":
                        return
            except StreamUnsupported as exc:
                raise NotFound(f"task {name!r} not found in namespace {namespace!r} "
                               f"(or the server has no /v1/tasks/{{name}}/stream)") from exc
            except httpx.ReadTimeout:
                pass
            except httpx.TransportError:
                time.sleep(0.5)
