"""Delivery of one task attempt's messages: the message log as the mailbox.

A message is *sent* (recorded in the Store, appended to the log) until the log delivers it,
*active* while its delivery is processed, then *finished*. The delivery is acked only once the
processing is done, i.e. once the Store has recorded what the turn did; a redelivery of a
finished message is acked without running anything again; a slow turn sends in-progress
heartbeats so the log does not redeliver it; an append that fails is retried in the
background; a message the log has not delivered within the mailbox's stall limit is delivered
from the Store's record instead. Without a mailbox (sequential mode, direct tests) a message
is processed as soon as it is sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from orloj_ray.engine.mailbox import Mailbox, Verdict
from orloj_ray.messaging import Delivery, Envelope
from orloj_ray.retry import Backoff

log = logging.getLogger("orloj_ray.delivery")

Process = Callable[[Envelope], Awaitable[bool]]
"""Handle one message; True when it is settled (finished), False to leave it unfinished."""


def spawn(group: asyncio.TaskGroup | None, coro) -> None:
    """Start work in the attempt's task group, unless it is already failing (the task ends anyway)."""
    try:
        if group is None:
            raise RuntimeError("no task group")
        group.create_task(coro)
    except RuntimeError:
        coro.close()


class Deliveries:
    def __init__(self, mailbox: Mailbox | None, task_id: str, attempt: int, process: Process):
        self.mailbox = mailbox
        self.task_id = task_id
        self.attempt = attempt
        self._process = process
        self.group: asyncio.TaskGroup | None = None
        self.sent: dict[str, tuple[Envelope, float]] = {}
        self.active: dict[str, list[Delivery]] = {}
        self.finished: set[str] = set()
        self.changed = asyncio.Event()
        self.draining = False

    # -- the attempt's life ----------------------------------------------------------------------

    def open(self, group: asyncio.TaskGroup) -> None:
        self.group = group
        if self.mailbox is not None:
            self.mailbox.open(self.task_id, self.on_delivery)

    def close(self) -> None:
        self.group = None
        if self.mailbox is not None:
            self.mailbox.close(self.task_id)

    def drain(self) -> None:
        self.draining = True
        self.changed.set()

    def only(self, message_id: str) -> bool:
        """Nothing but ``message_id`` is in flight: when its turn sends nothing, the task is done."""
        return not self.draining and not self.sent and self.active.keys() == {message_id}

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, env: Envelope) -> None:
        """Hand a recorded message to its agent: through the log when there is one, else directly."""
        if self.mailbox is None:
            self.take(env)
            return
        self.sent[env.message_id] = (env, time.monotonic())
        self.changed.set()
        try:
            await self.mailbox.send(env)
        except Exception as exc:  # the log is down: the Store has the record; keep trying in the background
            log.warning("appending %s to the message log failed (%s); retrying", env.message_id, exc)
            spawn(self.group, self._append_later(env))

    async def _append_later(self, env: Envelope) -> None:
        """Retry an append until it lands; past ``stall_s``, ``until_idle`` delivers from the Store instead."""
        backoff = Backoff(0.25, 4.0)
        while env.message_id in self.sent:
            await asyncio.sleep(backoff.next())
            try:
                await self.mailbox.send(env)
                return
            except Exception as exc:
                log.debug("append of %s still failing: %s", env.message_id, exc)

    # -- receiving -------------------------------------------------------------------------------

    def on_delivery(self, delivery: Delivery) -> Verdict:
        """Called by the mailbox for every delivery of this task's messages."""
        env = delivery.envelope
        mid = env.message_id
        if mid in self.active:  # redelivered while still being processed: settle both at the end
            self.active[mid].append(delivery)
            return "take"
        if mid in self.finished:  # a redelivery of a recorded step: replayed, never re-run
            return "ack"
        if env.attempt != self.attempt or self.group is None:  # an earlier attempt's leftovers
            return "term"
        self.sent.pop(mid, None)
        self.take(env, delivery)
        return "take"

    def take(self, env: Envelope, delivery: Delivery | None = None) -> None:
        """Process ``env`` now (from the log, or from the Store's record)."""
        self.active[env.message_id] = [delivery] if delivery is not None else []
        self.changed.set()
        spawn(self.group, self._run(env))

    async def _run(self, env: Envelope) -> None:
        mid = env.message_id
        beat = asyncio.create_task(self._in_progress(mid)) if self.mailbox is not None else None
        settled = False
        try:
            settled = await self._process(env)
        except BaseException as exc:
            settled = getattr(exc, "settles", False)  # a dead-lettered message is done with
            raise
        finally:
            if beat is not None:
                beat.cancel()
            deliveries = self.active.pop(mid, [])
            if settled:
                self.finished.add(mid)
            self.changed.set()
            if self.mailbox is not None:
                for delivery in deliveries:  # ack only now: the Store has the turn's record
                    await (self.mailbox.ack(delivery) if settled else self.mailbox.nak(delivery))

    async def _in_progress(self, mid: str) -> None:
        """Keep the log from redelivering a message whose (slow) turn is still running."""
        interval = max(self.mailbox.ack_wait_s / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            for delivery in list(self.active.get(mid, [])):
                await self.mailbox.in_progress(delivery)

    async def until_idle(self) -> None:
        """Hold the attempt open while a message is on its way through the log or being processed.

        A sent message the log has not delivered within the mailbox's ``stall_s`` (a log that
        lost it) is delivered from the Store's record instead, so a task never hangs on the log.
        """
        stall_s = self.mailbox.stall_s if self.mailbox is not None else 60.0
        while (self.sent and not self.draining) or self.active:
            self.changed.clear()
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                async with asyncio.timeout(stall_s / 4):
                    await self.changed.wait()
            except TimeoutError:
                pass
            now = time.monotonic()
            for mid, (env, sent_at) in list(self.sent.items()):
                if now - sent_at >= stall_s:
                    log.warning("message %s was not delivered by the log within %.0fs; delivering it from "
                                "the Store's record", mid, stall_s)
                    del self.sent[mid]
                    self.take(env)
