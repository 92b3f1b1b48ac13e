"""``MemoryLog``: the DurableLog in one process, for the embedded default and for tests.

"Durable" here means: until the process ends. Memory stays bounded by what is unfinished: a
message is dropped once every consumer whose filter matches it has acked or termed it (a
consumer created later does not see dropped messages; messages no consumer matches yet are
kept). Idempotency keys are remembered for ``duplicate_window_s``.

Waiting is event-driven: a fetch sleeps until an append/nak wakes it, or until the earliest
redelivery deadline of its consumer, or its own timeout; there is no polling loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from orloj_ray.errors import Unavailable
from orloj_ray.messaging.base import (
    DEFAULT_PREFIX, Delivery, check_consumer_name, check_subject_filter, subject_for, subject_matches,
)
from orloj_ray.messaging.envelope import Envelope
from orloj_ray.store.util import clone


@dataclass
class _Message:
    subject: str
    data: dict


@dataclass
class _InFlight:
    due: float
    """Monotonic time at which the message is redelivered unless acked."""
    delivered: int


@dataclass
class _Consumer:
    subject_filter: str | None
    cursor: int = 0
    """Highest sequence delivered for the first time (or skipped as not matching)."""
    in_flight: dict[int, _InFlight] = field(default_factory=dict)

    def matches(self, subject: str) -> bool:
        return subject_matches(self.subject_filter, subject)


class MemoryLog:
    """In-process DurableLog. Not shared between processes: host it in one actor to share it."""

    def __init__(self, *, ack_wait_s: float = 30.0, duplicate_window_s: float = 120.0,
                 prefix: str = DEFAULT_PREFIX):
        if ack_wait_s <= 0:
            raise ValueError("ack_wait_s must be > 0")
        if duplicate_window_s < 0:
            raise ValueError("duplicate_window_s must be >= 0")
        self.ack_wait_s = ack_wait_s
        self.duplicate_window_s = duplicate_window_s
        self.prefix = prefix
        self._seq = 0
        self._messages: dict[int, _Message] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()  # idempotency key -> expiry, oldest first
        self._consumers: dict[str, _Consumer] = {}
        self._changed = asyncio.Event()
        self._closed = False

    # -- writing ------------------------------------------------------------------------------

    async def append(self, env: Envelope) -> bool:
        self._check_open()
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if env.idempotency_key in self._seen:
            return False
        data = json.loads(env.to_json())  # what a network log would store: JSON only
        self._seq += 1
        self._messages[self._seq] = _Message(subject_for(env.namespace, env.to_agent, self.prefix, env.shard), data)
        if self.duplicate_window_s:
            self._seen[env.idempotency_key] = now + self.duplicate_window_s
        self._wake()
        return True

    # -- reading ------------------------------------------------------------------------------

    async def fetch(self, consumer: str, subject_filter: str | None = None, batch: int = 10,
                    timeout_s: float = 2.0) -> list[Delivery]:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        c = self._consumer(consumer, subject_filter)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            self._check_open()
            changed = self._changed
            now = time.monotonic()
            out = self._take(consumer, c, batch, now)
            if out or now >= deadline:
                return out
            wait = deadline - now
            if c.in_flight:
                wait = min(wait, max(0.0, min(f.due for f in c.in_flight.values()) - now))
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                pass
            if self._closed:
                return []

    def _take(self, name: str, c: _Consumer, batch: int, now: float) -> list[Delivery]:
        out: list[Delivery] = []
        for seq in sorted(s for s, f in c.in_flight.items() if f.due <= now)[:batch]:
            f = c.in_flight[seq]
            f.delivered += 1
            f.due = now + self.ack_wait_s
            out.append(self._delivery(name, seq, f.delivered))
        while len(out) < batch and c.cursor < self._seq:
            c.cursor += 1
            msg = self._messages.get(c.cursor)
            if msg is not None and c.matches(msg.subject):
                c.in_flight[c.cursor] = _InFlight(now + self.ack_wait_s, 1)
                out.append(self._delivery(name, c.cursor, 1))
        return out

    def _delivery(self, consumer: str, seq: int, delivered: int) -> Delivery:
        data = clone(self._messages[seq].data)
        data["attempts"] = delivered
        return Delivery(Envelope.from_dict(data), f"{consumer}:{seq}:{delivered}", delivered)

    # -- settling -----------------------------------------------------------------------------

    async def ack(self, delivery: Delivery) -> None:
        self._settle(delivery)

    async def term(self, delivery: Delivery) -> None:
        self._settle(delivery)

    async def nak(self, delivery: Delivery, delay_s: float = 0) -> None:
        f = self._in_flight(delivery)
        if f is not None:
            f.due = time.monotonic() + max(delay_s, 0.0)
            self._wake()

    async def in_progress(self, delivery: Delivery) -> None:
        f = self._in_flight(delivery)
        if f is not None:
            f.due = time.monotonic() + self.ack_wait_s

    def _settle(self, delivery: Delivery) -> None:
        self._check_open()
        name, seq = self._parse(delivery)
        c = self._consumers.get(name)
        if c is None or c.in_flight.pop(seq, None) is None:
            return
        msg = self._messages.get(seq)
        if msg is not None and all(not o.matches(msg.subject) or (seq <= o.cursor and seq not in o.in_flight)
                                   for o in self._consumers.values()):
            del self._messages[seq]

    def _in_flight(self, delivery: Delivery) -> _InFlight | None:
        self._check_open()
        name, seq = self._parse(delivery)
        c = self._consumers.get(name)
        return None if c is None else c.in_flight.get(seq)

    @staticmethod
    def _parse(delivery: Delivery) -> tuple[str, int]:
        name, seq, _ = delivery.delivery_id.rsplit(":", 2)
        return name, int(seq)

    # -- inspection ---------------------------------------------------------------------------

    async def unacked(self, consumer: str, limit: int = 1000) -> list[Envelope]:
        self._check_open()
        c = self._consumers.get(consumer)
        if c is None:
            return []
        seqs = sorted(c.in_flight) + [s for s in range(c.cursor + 1, self._seq + 1)
                                      if s in self._messages and c.matches(self._messages[s].subject)]
        return [Envelope.from_dict(clone(self._messages[s].data)) for s in seqs[:limit]]

    async def pending_count(self, consumer: str, subject_filter: str | None = None) -> int:
        self._check_open()
        c = self._consumer(consumer, subject_filter)
        fresh = sum(1 for s, m in self._messages.items() if s > c.cursor and c.matches(m.subject))
        return len(c.in_flight) + fresh

    async def close(self) -> None:
        self._closed = True
        self._wake()

    # -- internals ----------------------------------------------------------------------------

    def _consumer(self, name: str, subject_filter: str | None) -> _Consumer:
        check_consumer_name(name)
        check_subject_filter(self.prefix, subject_filter)
        c = self._consumers.get(name)
        if c is None:
            c = self._consumers[name] = _Consumer(subject_filter)
        elif c.subject_filter != subject_filter:
            raise ValueError(f"consumer {name!r} filters {c.subject_filter!r}, not {subject_filter!r}")
        return c

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("message log is closed")
