"""``GET /v1/tasks/{name}/stream``: a task's model output as it is written (server-sent events).

An orloj-ray extension (upstream has no token streaming). Events:

* ``token``: ``{agent, message_id, step, delta, seq}``, a piece of a model call's text;
  ``restart: true`` (with an empty delta) when a retried call starts its text again;
* ``turn_end``: ``{agent, message_id, step, seq}``, the agent's turn is over (its result is
  being recorded);
* ``end``: ``{phase}``, the task has finished (``phase`` is its terminal phase; ``deleted:
  true`` if it went away); the stream closes after it.

A stream opened mid-task first sends what is buffered (``?after=<seq>`` resumes after an event
already seen). Opening the stream is what makes a task's turns stream: turns that started
while nobody watched were plain calls, and their text is in the trace when they end.

Two waits run side by side: the token buffer (``app.state.tokens``: ``TokenBuffer`` in
process, ``RemoteTokenStreams`` on Ray) and the Store's event log for the task's own writes,
so the ``end`` event follows the task's last write at once and nothing is polled. An agent
actor hands a turn's last tokens to the buffer before the turn's result is recorded, so
everything streamed precedes ``end``.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from orloj_ray import lifecycle
from orloj_ray.errors import InvalidResource, NotFound
from orloj_ray.observability.tokens import token_key
from serve.routes_resources import item_namespace
from serve.sse import KEEP_ALIVE, SSE_HEADERS, StreamSettings, frame


def _after(request: Request) -> int:
    raw = (request.query_params.get("after") or "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidResource(f'invalid after "{raw}": expected the seq of an event already seen (an integer >= 0)',
                              field="after")
    return value


def register(app: FastAPI, store, settings: StreamSettings) -> None:
    async def task_stream(request: Request, name: str) -> StreamingResponse:
        namespace = item_namespace(request)
        after = _after(request)
        cursor = await store.last_event_id()  # before the read: a write in between is an event
        task = await store.get("Task", namespace, name)  # 404 before anything streams
        tokens = request.app.state.tokens
        key = token_key(namespace, name)

        async def events() -> AsyncIterator[bytes]:
            nonlocal task, cursor
            seq, ended = after, lifecycle.is_terminal(task.get("status") or {})
            reading = writes = None
            last_beat = time.monotonic()
            try:
                while not ended and not await request.is_disconnected():
                    reading = reading or asyncio.ensure_future(tokens.read(key, seq, settings.wait_s))
                    writes = writes or asyncio.ensure_future(
                        store.events_after(cursor, timeout_s=settings.wait_s, kinds=["Task"]))
                    done, _ = await asyncio.wait({reading, writes}, return_when=asyncio.FIRST_COMPLETED)
                    if reading in done:
                        got, reading = reading.result(), None
                        seq = got["cursor"]
                        if got["events"]:
                            yield b"".join(frame(e["event"], {**e["data"], "seq": e["seq"]}) for e in got["events"])
                    if writes in done:
                        batch, writes = writes.result(), None
                        cursor = max(cursor, getattr(batch, "cursor", 0))  # past what a scoped token may not see
                        if batch:
                            cursor = max(cursor, batch[-1].id)
                        if any(e.name == name and (e.namespace or "default") == namespace for e in batch):
                            try:
                                task = await store.get("Task", namespace, name)
                            except NotFound:
                                yield frame("end", {"phase": "", "deleted": True})
                                return
                            ended = lifecycle.is_terminal(task.get("status") or {})
                    if time.monotonic() - last_beat >= settings.heartbeat_s:
                        last_beat = time.monotonic()
                        yield KEEP_ALIVE
                if not ended:
                    return  # the client left
                got = await tokens.read(key, seq, 0.0)  # the last turn's tail, already with the buffer
                if got["events"]:
                    yield b"".join(frame(e["event"], {**e["data"], "seq": e["seq"]}) for e in got["events"])
                await tokens.finish(key)
                yield frame("end", {"phase": (task.get("status") or {}).get("phase") or ""})
            finally:
                for pending in (reading, writes):
                    if pending is not None:
                        pending.cancel()

        return StreamingResponse(events(), headers=SSE_HEADERS)

    app.add_api_route("/v1/tasks/{name}/stream", task_stream, methods=["GET"], name="task_stream", tags=["tasks"])
