"""The Mailbox: the DurableLog as the one delivery path of agent messages (message-driven mode).

An executor ``send``s an envelope (appended to the log, deduplicated by its idempotency key);
one fetch loop per supervisor (``run``) takes deliveries from the log and hands each to the
executor that runs the envelope's task, which acks it only after the Store has recorded what
the turn did. A delivery for a task this supervisor does not run is nak-ed with a delay (its
owner, or the next claimant, will take it) or termed when the task is finished or gone.

Each supervisor shard has its own durable consumer (``orloj-supervisor-s<k>``, over the shard's
subjects), so with JetStream the supervisor that takes a dead one's shard over picks up its
unacked messages; with the in-memory log the log lives and dies with its supervisor and the
Store's record of unfinished messages is what a successor resumes from.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Literal

from orloj_ray.errors import NotFound
from orloj_ray.lifecycle import is_terminal
from orloj_ray.messaging import Delivery, DurableLog, Envelope, shard_filter
from orloj_ray.retry import Backoff

log = logging.getLogger("orloj_ray.mailbox")

CONSUMER = "orloj-supervisor"
STRAY_NAK_S = 2.0
"""Delay before a delivery for a task nobody here runs is offered again."""
STALL_S = 60.0
_REMEMBER = 10_000

Verdict = Literal["take", "ack", "term"]
Route = Callable[[Delivery], Verdict]


class Mailbox:
    def __init__(self, log_: DurableLog, store=None, *, consumer: str = CONSUMER, batch: int = 256,
                 stall_s: float = STALL_S):
        self.log = log_
        self.stall_s = stall_s
        """A sent message the log has not delivered within this long is delivered from the Store's record."""
        self.store = store
        self.consumer = consumer
        self.batch = batch
        self._routes: dict[str, Route] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()  # recently finished task ids

    @property
    def ack_wait_s(self) -> float:
        return self.log.ack_wait_s

    async def send(self, env: Envelope) -> None:
        """Append ``env`` durably (a duplicate of an appended key is dropped by the log)."""
        await self.log.append(env)

    def open(self, task_id: str, route: Route) -> None:
        """Deliveries of ``task_id`` go to ``route`` until ``close``."""
        self._closed.pop(task_id, None)
        self._routes[task_id] = route

    def close(self, task_id: str) -> None:
        self._routes.pop(task_id, None)
        self._closed[task_id] = None
        while len(self._closed) > _REMEMBER:
            self._closed.popitem(last=False)

    async def ack(self, delivery: Delivery) -> None:
        await self._settle(self.log.ack, delivery)

    async def term(self, delivery: Delivery) -> None:
        await self._settle(self.log.term, delivery)

    async def nak(self, delivery: Delivery, delay_s: float = 0) -> None:
        await self._settle(self.log.nak, delivery, delay_s)

    async def in_progress(self, delivery: Delivery) -> None:
        await self._settle(self.log.in_progress, delivery)

    async def _settle(self, op, *args) -> None:
        """Settling is best effort: a lost ack means a redelivery, which the executor recognises."""
        try:
            await op(*args)
        except Exception as exc:
            log.warning("message log %s failed: %s", op.__name__, exc)

    async def run(self, stop: asyncio.Event, shards: Callable[[], Collection[int]] = lambda: (0,)) -> None:
        """Fetch and route until ``stop`` is set: one fetch loop per shard this supervisor owns
        now (``shards()``, checked every second), each on the shard's own durable consumer
        (``<consumer>-s<k>``, filter ``shard_filter(k)``), so a shard taken over from a dead
        supervisor brings its unacked messages along."""
        loops: dict[int, tuple[asyncio.Event, asyncio.Task]] = {}
        try:
            while not stop.is_set():
                wanted = set(shards())
                for shard in wanted - loops.keys():
                    done = asyncio.Event()
                    loops[shard] = (done, asyncio.create_task(self._fetch_loop(done, stop, shard),
                                                              name=f"mailbox:s{shard}"))
                for shard in loops.keys() - wanted:
                    loops.pop(shard)[0].set()
                try:
                    async with asyncio.timeout(1.0):
                        await stop.wait()
                except TimeoutError:
                    pass
        finally:
            for done, _ in loops.values():
                done.set()
            await asyncio.gather(*(task for _, task in loops.values()), return_exceptions=True)

    async def _fetch_loop(self, done: asyncio.Event, stop: asyncio.Event, shard: int) -> None:
        """Fetch one shard's deliveries and route them; an unreachable log is retried with backoff."""
        consumer, subject_filter = f"{self.consumer}-s{shard}", shard_filter(shard, self.log.prefix)
        backoff = Backoff(0.5, 10.0)
        while not (stop.is_set() or done.is_set()):
            try:
                deliveries = await self.log.fetch(consumer, subject_filter, self.batch, timeout_s=1.0)
                backoff.reset()
            except Exception as exc:
                wait = backoff.next()
                log.warning("fetching from the message log failed (retrying in %.1fs): %s", wait, exc)
                try:
                    async with asyncio.timeout(wait):
                        await stop.wait()
                except TimeoutError:
                    pass
                continue
            for delivery in deliveries:
                await self._route(delivery)

    async def _route(self, delivery: Delivery) -> None:
        task_id = delivery.envelope.task_id
        route = self._routes.get(task_id)
        if route is not None:
            try:
                verdict = route(delivery)
            except Exception:
                log.exception("routing message %s failed", delivery.envelope.message_id)
                verdict = None
            if verdict == "ack":
                await self.ack(delivery)
            elif verdict == "term":
                await self.term(delivery)
            elif verdict is None:
                await self.nak(delivery, STRAY_NAK_S)
            return
        if task_id in self._closed or await self._finished(task_id):
            await self.term(delivery)
        else:  # not claimed here (yet): its owner or the next claimant takes it
            await self.nak(delivery, STRAY_NAK_S)

    async def _finished(self, task_id: str) -> bool:
        if self.store is None:
            return False
        namespace, _, name = task_id.partition("/")
        try:
            task = await self.store.get("Task", namespace, name)
        except NotFound:
            return True
        except Exception:
            return False
        return is_terminal(task)
