"""Leases, takeover and fencing (in-process): a crashed or deposed owner loses no work and
gets no late write in."""

from __future__ import annotations

import asyncio
from collections import Counter

from orloj_ray.lifecycle import claimable, takeover_reason
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.store import MemoryStore
from orloj_ray.store.util import mutate_status
from tests_support import agent_ends, load

WRITER = "bp-pipeline-writer-agent"


class CountingRuntime(LocalAgentRuntime):
    """Counts turns per agent; the first turn of ``block`` hangs until ``release`` is set."""

    def __init__(self, calls: Counter, block: str | None = None):
        super().__init__()
        self.calls, self.block = calls, block
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def run_turn(self, request):
        self.calls[request.agent_name] += 1
        if request.agent_name == self.block:
            self.entered.set()
            await self.release.wait()
        return await super().run_turn(request)


async def wait_phase(store, name, phases=("Succeeded", "Failed"), timeout=10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            task = await store.get("Task", "default", name)
            if task["status"].get("phase") in phases:
                return task
            await asyncio.sleep(0.02)


async def kill(controller: Controller, loop: asyncio.Task) -> None:
    """Simulate the death of a supervisor process: no further writes, nothing cleaned up."""
    controller.stop()
    for run in list(controller.running.values()):
        run.cancel()
    loop.cancel()
    await asyncio.gather(loop, *controller.running.values(), return_exceptions=True)


async def test_restarted_supervisor_resumes_at_once_without_rerunning_finished_steps():
    store, calls = MemoryStore(), Counter()
    await load(store, "pipeline")
    first = CountingRuntime(calls, block=WRITER)
    a = Controller(store, first, worker="orloj:supervisor#1", lease_s=600)
    loop_a = asyncio.create_task(a.run())
    await asyncio.wait_for(first.entered.wait(), 10)
    await kill(a, loop_a)

    b = Controller(store, CountingRuntime(calls), worker="orloj:supervisor#2", lease_s=600)
    loop_b = asyncio.create_task(b.run())
    try:
        task = await wait_phase(store, "bp-pipeline-task", timeout=5)  # far less than the 600 s lease
    finally:
        b.stop()
        await loop_b
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert calls == Counter({"bp-pipeline-planner-agent": 1, "bp-pipeline-research-agent": 1, WRITER: 2})
    assert [r["agent"] for r in agent_ends(task)] == ["bp-pipeline-planner-agent", "bp-pipeline-research-agent",
                                                      WRITER]
    assert status["attempts"] == 1 and status["leaseEpoch"] == 2
    assert [h["type"] for h in status["history"]] == ["claim", "takeover", "succeeded"]
    writer_msg = next(m for m in status["messages"] if m["to_agent"] == WRITER)
    assert writer_msg["attempts"] == 2 and writer_msg["phase"] == "Succeeded"
    assert any(r["type"] == "task_resumed" for r in status["trace"])


async def test_expired_lease_is_taken_over_and_the_old_owners_late_writes_are_refused():
    store, calls = MemoryStore(), Counter()
    await load(store, "pipeline")
    slow = CountingRuntime(calls, block=WRITER)
    a = Controller(store, slow, worker="worker-a#1", lease_s=600)
    loop_a = asyncio.create_task(a.run())
    await asyncio.wait_for(slow.entered.wait(), 10)

    def expire(status):
        status["leaseUntil"] = "2000-01-01T00:00:00Z"
        return status

    await mutate_status(store, "Task", "default", "bp-pipeline-task", expire)
    b = Controller(store, CountingRuntime(calls), worker="worker-b#1", lease_s=600, lease_scan_s=0.1)
    loop_b = asyncio.create_task(b.run())
    try:
        task = await wait_phase(store, "bp-pipeline-task")
        slow.release.set()  # the deposed owner's turn finishes now; its result must not land
        await asyncio.sleep(0.3)
        task = await store.get("Task", "default", "bp-pipeline-task")
    finally:
        for c, loop in ((a, loop_a), (b, loop_b)):
            c.stop()
            await loop
    status = task["status"]
    assert status["phase"] == "Succeeded"
    assert status["history"][1]["type"] == "takeover"
    assert "worker lease expired; task reassigned from worker-a#1 to worker-b#1" in status["history"][1]["message"]
    writers = [r for r in agent_ends(task) if r["agent"] == WRITER]
    assert len(writers) == 1
    assert calls[WRITER] == 2 and calls["bp-pipeline-planner-agent"] == 1


class TaskReads:
    """The store, counting lists of Tasks and gets of each Task."""

    def __init__(self, store):
        self.store, self.lists, self.gets = store, 0, Counter()

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def list(self, kind, *args, **kwargs):
        self.lists += kind == "Task"
        return await self.store.list(kind, *args, **kwargs)

    async def get(self, kind, namespace, name):
        if kind == "Task":
            self.gets[name] += 1
        return await self.store.get(kind, namespace, name)


async def test_the_lease_scan_finds_a_silently_expired_lease_without_listing_finished_tasks():
    store, calls = MemoryStore(), Counter()
    await load(store, "pipeline")
    for i in range(30):  # history: the scan must not read these every few seconds
        await store.create({"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": f"old-{i}"},
                            "spec": {"system": "gone"}, "status": {"phase": "Succeeded"}})
    slow = CountingRuntime(calls, block=WRITER)
    a = Controller(store, slow, worker="worker-a#1", lease_s=1.0)
    loop_a = asyncio.create_task(a.run())
    await asyncio.wait_for(slow.entered.wait(), 10)
    reads = TaskReads(store)
    b = Controller(reads, CountingRuntime(calls), worker="worker-b#1", lease_s=600, lease_scan_s=0.1,
                   resync_s=3600)
    loop_b = asyncio.create_task(b.run())  # its start-up resync sees A's live lease and leaves it
    try:
        await asyncio.sleep(0.3)
        await kill(a, loop_a)  # A's lease now runs out with no write, so no event tells B
        task = await wait_phase(store, "bp-pipeline-task", timeout=10)
    finally:
        b.stop()
        await loop_b
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert [h["type"] for h in status["history"]] == ["claim", "takeover", "succeeded"]
    assert reads.lists <= 2  # at start-up: the resync and the retention sweep; 10+ scans listed nothing
    assert not any(name.startswith("old-") for name in reads.gets)


def test_takeover_rules():
    running = {"spec": {}, "status": {"phase": "Running", "claimedBy": "x#1", "leaseUntil": "2999-01-01T00:00:00Z"}}
    assert not claimable(running, "y#1")  # live lease of another owner
    assert takeover_reason(running, "x#2").startswith("previous incarnation")
    assert not claimable(running, "x#1")  # never re-claim your own live task
    expired = {"spec": {}, "status": {**running["status"], "leaseUntil": "2000-01-01T00:00:00Z"}}
    assert claimable(expired, "y#1")
    assert not claimable({"spec": {"mode": "template"}, "status": {}}, "y#1")
