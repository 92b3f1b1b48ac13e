"""maxTokensPerMinute: one token bucket per agent shared by every replica and task; a turn waits
for the window (``rate_limited``) and fails only when the wait would pass its timeout."""

from __future__ import annotations

import asyncio

from governance_support import Running, apply, mock_endpoint, runtime, task, wait_phase
from orloj_ray.governance import TokenBucket
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_reserves_queues_and_refills():
    clock = Clock()
    bucket = TokenBucket(window_s=60, clock=clock)
    assert bucket.reserve_now("ns/a", 50, 60, max_wait_s=0) == 0.0  # a full window to start with
    assert bucket.reserve_now("ns/a", 20, 60, max_wait_s=0) is None  # would wait 10 s: not taken
    assert bucket.level("ns/a", 60) == 10
    assert bucket.reserve_now("ns/a", 20, 60, max_wait_s=30) == 10.0  # queued: the bucket goes into debt
    assert bucket.reserve_now("ns/a", 10, 60, max_wait_s=30) == 20.0  # behind the previous caller
    assert bucket.reserve_now("ns/b", 10, 60, max_wait_s=0) == 0.0  # another agent: its own bucket
    clock.now += 30
    assert bucket.level("ns/a", 60) == 10
    bucket.settle_now("ns/a", -5, 60)  # the call used less than its estimate
    assert bucket.level("ns/a", 60) == 15
    clock.now += 1000
    assert bucket.level("ns/a", 60) == 60  # never more than one window


class Replicas:
    """Two replicas of the agent (two runtimes) that share one limiter, used in turn."""

    def __init__(self, limiter):
        self.replicas = [runtime(limiter=limiter), runtime(limiter=limiter)]
        self.turns = 0

    async def run_turn(self, request):
        self.turns += 1
        return await self.replicas[self.turns % 2].run_turn(request)


def _limited_agent(per_minute: int, timeout: str = "20s") -> list[dict]:
    return [mock_endpoint(),
            {"kind": "Agent", "metadata": {"name": "checker"},
             "spec": {"model_ref": "openai-default", "prompt": "Check.", "limits": {"timeout": timeout},
                      "governance": {"maxTokensPerMinute": per_minute, "auditLog": True}}},
            {"kind": "AgentSystem", "metadata": {"name": "sys"}, "spec": {"agents": ["checker"]}}]


async def test_two_tasks_on_two_replicas_share_one_budget_and_the_second_waits():
    store = MemoryStore()
    # a 2 s window keeps the test short: 40 tokens per window; one turn needs about 30
    await apply(store, _limited_agent(40))
    limiter = TokenBucket(window_s=2.0)
    for name in ("t1", "t2"):
        await store.create(normalize(task(name, "sys")))
    started = asyncio.get_running_loop().time()
    async with Running(store, runtime_=Replicas(limiter)):
        done = [await wait_phase(store, name, timeout=30) for name in ("t1", "t2")]
    elapsed = asyncio.get_running_loop().time() - started
    assert [d["status"]["phase"] for d in done] == ["Succeeded", "Succeeded"], [d["status"].get("lastError") for d in done]
    waits = [r for d in done for r in d["status"]["trace"] if r["type"] == "rate_limited"]
    assert len(waits) == 1 and waits[0]["error_code"] == "rate_limited" and waits[0]["wait_ms"] > 0
    assert waits[0]["error_reason"] == "AgentPolicy/checker-governance"
    assert elapsed >= waits[0]["wait_ms"] / 1000
    (record,) = await store.list_audit(decision="rate_limited")
    assert record["agent"] == "checker" and record["code"] == "rate_limited" and record["wait_ms"] > 0


async def test_a_wait_past_the_agent_timeout_fails_with_rate_limited_without_calling_the_model():
    store = MemoryStore()
    await apply(store, _limited_agent(40, timeout="1s"))
    limiter = TokenBucket()  # a real minute: the second turn would wait ~15 s, past its 1 s timeout
    for name in ("t1", "t2"):
        await store.create(normalize(task(name, "sys")))
    async with Running(store, runtime_=Replicas(limiter), parallel=1):
        done = {name: await wait_phase(store, name, timeout=30) for name in ("t1", "t2")}
    phases = sorted(d["status"]["phase"] for d in done.values())
    assert phases == ["Failed", "Succeeded"]
    failed = next(d for d in done.values() if d["status"]["phase"] == "Failed")["status"]
    assert failed["errorCode"] == "rate_limited" and "would pass the agent's timeout" in failed["lastError"]
    assert not any(r["type"] == "model_call" for r in failed["trace"])
    (denied,) = await store.list_audit(decision="denied", code="rate_limited")
    assert denied["task"] in ("t1", "t2")
