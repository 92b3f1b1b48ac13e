"""Live model output of running tasks: ``TokenBuffer``, a bounded buffer of token events per task.

The path of a token (message-driven mode): a provider streams a model call's text to the turn's
sink; the AgentActor batches the deltas (about 20 publishes a second per turn) into the one
buffer of the cluster, hosted by a named actor (``actors/token_hub.py``); the API's
``GET /v1/tasks/{name}/stream`` reads it with long polls and sends server-sent events.

Nothing is streamed that nobody watches: a read marks its task *watched* (until
``watch_ttl_s`` after the last read) and the agent actors follow the set of watched tasks with
one long poll each (``watched_changes``), so a turn of an unwatched task makes a plain model
call and costs no call to the buffer at all. A watcher joining mid-task gets what is buffered
first (``read(after=0)``): the turns streamed since someone first watched.

Memory is bounded: per task the newest ``max_events`` events and ``max_chars`` characters of
text; at most ``max_streams`` tasks (the least recently used is dropped first); a task's
buffer goes ``linger_s`` after ``finish`` (the API calls it when the task has ended) or
``idle_ttl_s`` after its last read or write. The buffer is a cache of what is being said, not
a record: the trace keeps every model call's text, and a restarted host starts empty.

Events are ``{"seq", "event", "data"}``: ``seq`` counts from 1 per task, ``event`` is
``token`` (``data``: ``agent``, ``message_id``, ``step``, ``delta``; ``restart: true`` with an
empty delta when a retried call starts its text again) or ``turn_end`` (``agent``,
``message_id``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

TOKEN = "token"
TURN_END = "turn_end"


def token_key(namespace: str, task: str) -> str:
    """The buffer's key of one task."""
    return f"{namespace or 'default'}/{task}"


@dataclass(frozen=True)
class TokenLimits:
    """Bounds of a ``TokenBuffer``; each default stated here. ``ValueError`` names a bad field."""

    max_events: int = 4096
    """Newest events kept per task. Default 4096."""
    max_chars: int = 256 * 1024
    """Characters of text kept per task (older events are dropped first). Default 256 Ki."""
    max_streams: int = 1000
    """Tasks buffered at once; the least recently used goes first. Default 1000."""
    watch_ttl_s: float = 30.0
    """A task stays watched this long after its last read (readers poll well within it). Default 30 s."""
    idle_ttl_s: float = 600.0
    """A task's buffer is dropped this long after its last read or write. Default 10 min."""
    linger_s: float = 30.0
    """A finished task's buffer stays this long, for late readers. Default 30 s."""

    def __post_init__(self) -> None:
        for name in ("max_events", "max_chars", "max_streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("watch_ttl_s", "idle_ttl_s", "linger_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class _Stream:
    touched: float
    events: deque = field(default_factory=deque)
    chars: int = 0
    seq: int = 0
    watched_until: float = 0.0
    ended_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class TokenBuffer:
    """Token events per task, readers that wait for them, and the set of watched tasks.

    Single-threaded (one event loop): every method but the two waits returns at once."""

    def __init__(self, limits: TokenLimits | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.limits = limits or TokenLimits()
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._version = 0
        self._watched: frozenset[str] = frozenset()
        self._watch_changed = asyncio.Event()
        self._swept = float("-inf")

    # -- writers --------------------------------------------------------------------------

    def publish(self, key: str, events: list[dict]) -> None:
        """Append ``{"event", "data"}`` items (a turn's batch) and wake the readers."""
        stream = self._stream(key)
        limits = self.limits
        for item in events:
            stream.seq += 1
            event = {"seq": stream.seq, "event": str(item.get("event") or TOKEN), "data": dict(item.get("data") or {})}
            stream.events.append(event)
            stream.chars += len(str(event["data"].get("delta") or ""))
        while stream.events and (len(stream.events) > limits.max_events or stream.chars > limits.max_chars):
            stream.chars -= len(str(stream.events.popleft()["data"].get("delta") or ""))
        self._wake(stream)

    async def finish(self, key: str) -> None:
        """The task has ended: no more watching; the buffer stays ``linger_s`` for late readers.
        (async, as ``read``: the API calls both the same way on a buffer here or in the hub)"""
        stream = self._streams.get(key)
        if stream is None or stream.ended_at is not None:
            return
        stream.ended_at = self._clock()
        stream.watched_until = 0.0
        self._wake(stream)
        self._sweep(force=True)

    # -- readers --------------------------------------------------------------------------

    async def read(self, key: str, after: int = 0, timeout_s: float = 0.0) -> dict:
        """Events with ``seq > after``, waiting up to ``timeout_s`` for one; marks the task
        watched. ``{"events", "cursor", "ended"}``: ``cursor`` is the ``after`` of the next read."""
        stream = self._stream(key)
        if stream.ended_at is None:
            stream.watched_until = self._clock() + max(self.limits.watch_ttl_s, timeout_s + 5.0)
            if key not in self._watched:
                self._sweep(force=True)  # the agent actors learn of a new watcher now
        if after > stream.seq:
            after = 0  # a cursor from before this buffer (its host restarted, or it was dropped)
        if timeout_s > 0 and stream.ended_at is None and stream.seq <= after:
            try:
                await asyncio.wait_for(stream.changed.wait(), timeout_s)
            except asyncio.TimeoutError:
                pass
            stream = self._streams.get(key) or stream
        events = [e for e in stream.events if e["seq"] > after]
        return {"events": events, "cursor": events[-1]["seq"] if events else after,
                "ended": stream.ended_at is not None}

    def watched(self) -> tuple[int, list[str]]:
        """``(version, keys)``: the tasks someone is reading now; ``version`` changes with the set."""
        self._sweep()
        return self._version, sorted(self._watched)

    async def watched_changes(self, version: int, timeout_s: float = 30.0) -> tuple[int, list[str]]:
        """``watched()`` once it differs from ``version`` (at once if it does), or after ``timeout_s``."""
        current = self.watched()
        if current[0] != version or timeout_s <= 0:
            return current
        try:
            await asyncio.wait_for(self._watch_changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        return self.watched()

    def stats(self) -> dict:
        return {"streams": len(self._streams), "watched": len(self._watched),
                "events": sum(len(s.events) for s in self._streams.values()),
                "chars": sum(s.chars for s in self._streams.values())}

    # -- bookkeeping ----------------------------------------------------------------------

    def _stream(self, key: str) -> _Stream:
        now = self._clock()
        stream = self._streams.get(key)
        if stream is None:
            self._sweep()
            while len(self._streams) >= self.limits.max_streams:
                oldest = min(self._streams, key=lambda k: self._streams[k].touched)
                self._wake(self._streams.pop(oldest))
            stream = self._streams[key] = _Stream(touched=now)
        stream.touched = now
        return stream

    @staticmethod
    def _wake(stream: _Stream) -> None:
        stream.changed.set()
        stream.changed = asyncio.Event()

    def _sweep(self, force: bool = False) -> None:
        """Drop idle and finished buffers; recompute the watched set (at most once a second)."""
        now = self._clock()
        if not force and now - self._swept < 1.0:
            return
        self._swept = now
        limits = self.limits
        for key in [k for k, s in self._streams.items()
                    if now - s.touched > limits.idle_ttl_s
                    or (s.ended_at is not None and now - s.ended_at > limits.linger_s)]:
            self._wake(self._streams.pop(key))
        watched = frozenset(k for k, s in self._streams.items() if s.watched_until > now)
        if watched != self._watched:
            self._watched = watched
            self._version += 1
            self._watch_changed.set()
            self._watch_changed = asyncio.Event()
