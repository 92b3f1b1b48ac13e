"""The message log as the mailbox (in-process, MemoryLog): append first, ack only after the
Store has the turn's record, duplicates replayed not re-run, slow turns not redelivered, a log
that loses a message does not hang the task."""

from __future__ import annotations

import asyncio

import pytest

from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mailbox import CONSUMER, Mailbox
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.messaging import shard_filter, Envelope, MemoryLog
from orloj_ray.store import MemoryStore
from tests_support import agent_ends, load

DONE = ("Succeeded", "Failed", "DeadLetter")


class RecordingLog(MemoryLog):
    """A MemoryLog that remembers appends and checks, at every ack, that the Store already
    records the message as finished (the ack-after-record rule)."""

    def __init__(self, store, **kwargs):
        super().__init__(**kwargs)
        self.store = store
        self.appended: list[str] = []
        self.acked: list[str] = []
        self.acked_before_record: list[str] = []
        self.deliveries: list[int] = []

    async def append(self, env):
        self.appended.append(env.message_id)
        return await super().append(env)

    async def fetch(self, *args, **kwargs):
        out = await super().fetch(*args, **kwargs)
        self.deliveries += [d.num_delivered for d in out]
        return out

    async def ack(self, delivery):
        env = delivery.envelope
        task = await self.store.get("Task", env.namespace, env.task)
        record = next(m for m in task["status"]["messages"] if m["message_id"] == env.message_id)
        if record["phase"] not in ("Succeeded", "DeadLetter"):
            self.acked_before_record.append(env.message_id)
        self.acked.append(env.message_id)
        await super().ack(delivery)


class CountingRuntime(LocalAgentRuntime):
    def __init__(self, delay_s: float = 0.0):
        super().__init__()
        self.calls: dict[str, int] = {}
        self.delay_s = delay_s

    async def run_turn(self, request):
        self.calls[request.key] = self.calls.get(request.key, 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await super().run_turn(request)


async def _run(store, runtime, mailbox, name="bp-pipeline-task", timeout=20.0) -> dict:
    controller = Controller(store, runtime, worker="test-worker#2", mailbox=mailbox)
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(timeout):
            while (task := await store.get("Task", "default", name))["status"].get("phase") not in DONE:
                await asyncio.sleep(0.02)
        return task
    finally:
        controller.stop()
        await loop


async def test_every_message_goes_through_the_log_and_is_acked_after_its_record():
    store = MemoryStore()
    await load(store, "hierarchical")
    log = RecordingLog(store, ack_wait_s=5.0)
    task = await _run(store, CountingRuntime(), Mailbox(log, store), "bp-hierarchical-task")
    assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
    recorded = [m["message_id"] for m in task["status"]["messages"]]
    assert sorted(log.appended) == sorted(recorded)  # every message was appended, once
    assert sorted(log.acked) == sorted(recorded)  # and acked, once
    assert log.acked_before_record == []
    assert await log.unacked(CONSUMER) == []
    assert all(m["phase"] == "Succeeded" for m in task["status"]["messages"])


class DuplicatingLog(MemoryLog):
    """Delivers every message twice (as a log redelivering after a lost ack would)."""

    async def append(self, env):
        first = await super().append(env)
        copy = Envelope.from_dict({**env.to_dict(), "idempotency_key": env.idempotency_key + "#dup"})
        await super().append(copy)
        return first


async def test_a_redelivered_message_is_replayed_not_run_again():
    store = MemoryStore()
    await load(store, "pipeline")
    runtime = CountingRuntime()
    log = DuplicatingLog(ack_wait_s=5.0)
    task = await _run(store, runtime, Mailbox(log, store))
    assert task["status"]["phase"] == "Succeeded"
    assert runtime.calls and set(runtime.calls.values()) == {1}, runtime.calls
    assert len(agent_ends(task)) == 3
    await asyncio.sleep(0.2)  # the duplicates of the last step may still be in flight: the mailbox terms them
    assert await log.unacked(CONSUMER) == []


async def test_a_slow_turn_is_kept_in_progress_not_redelivered():
    store = MemoryStore()
    await load(store, "pipeline")
    runtime = CountingRuntime(delay_s=0.6)
    log = RecordingLog(store, ack_wait_s=0.2)
    task = await _run(store, runtime, Mailbox(log, store))
    assert task["status"]["phase"] == "Succeeded"
    assert set(runtime.calls.values()) == {1}
    assert log.deliveries and set(log.deliveries) == {1}, log.deliveries  # never redelivered


class LosingLog(MemoryLog):
    """Loses the second message appended (a log that acked an append and then lost it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.appends = 0

    async def append(self, env):
        self.appends += 1
        if self.appends == 2:
            return True
        return await super().append(env)


async def test_a_message_the_log_loses_is_delivered_from_the_store_record():
    store = MemoryStore()
    await load(store, "pipeline")
    runtime = CountingRuntime()
    task = await _run(store, runtime, Mailbox(LosingLog(ack_wait_s=5.0), store, stall_s=0.5))
    assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
    assert set(runtime.calls.values()) == {1} and len(runtime.calls) == 3


async def test_deliveries_for_a_task_nobody_runs_wait_and_finished_ones_are_dropped():
    store = MemoryStore()
    await load(store, "pipeline")
    log = MemoryLog(ack_wait_s=5.0)
    mailbox = Mailbox(log, store)
    waiting = Envelope("default/bp-pipeline-task/a001/h001/system/x", "x", namespace="default",
                       task="bp-pipeline-task", shard=0)
    gone = Envelope("default/no-such-task/a001/h001/system/x", "x", namespace="default", task="no-such-task",
                    shard=0)
    other_shard = Envelope("default/elsewhere/a001/h001/system/x", "x", namespace="default", task="elsewhere",
                           shard=1)
    await log.append(other_shard)
    await log.append(waiting)
    await log.append(gone)
    stop = asyncio.Event()
    loop = asyncio.create_task(mailbox.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await loop
    pending = [e.message_id for e in await log.unacked(f"{CONSUMER}-s0")]
    assert pending == [waiting.message_id]  # kept for whoever claims the task; the other is termed
    # shard 1's message is not this supervisor's (shard 0's) to see at all
    assert await log.pending_count(f"{CONSUMER}-s1", shard_filter(1)) == 1


@pytest.mark.parametrize("via", ["direct", "log"])
async def test_drain_finishes_the_running_turn_releases_the_lease_and_the_next_owner_resumes(via):
    store = MemoryStore()
    await load(store, "pipeline")
    runtime = CountingRuntime(delay_s=0.4)
    first = Controller(store, runtime, worker="sup-a#1", lease_s=600,
                       mailbox=Mailbox(MemoryLog(), store) if via == "log" else None)
    loop = asyncio.create_task(first.run())
    async with asyncio.timeout(10):
        while not runtime.calls:  # the first turn is running
            await asyncio.sleep(0.01)
    assert await first.drain(timeout_s=10) == 1
    await loop
    task = await store.get("Task", "default", "bp-pipeline-task")
    status = task["status"]
    assert status["phase"] == "Running"  # not failed, not succeeded: handed over
    assert len(agent_ends(task)) == 1  # the running turn finished and was recorded, no new one began
    assert any(h.get("type") == "released" for h in status["history"])
    started = asyncio.get_running_loop().time()
    second = await _run(store, runtime, Mailbox(MemoryLog(), store) if via == "log" else None)
    assert second["status"]["phase"] == "Succeeded"
    assert asyncio.get_running_loop().time() - started < 5  # no waiting out a 600 s lease
    assert set(runtime.calls.values()) == {1} and len(runtime.calls) == 3
