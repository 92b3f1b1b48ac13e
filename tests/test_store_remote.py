"""RemoteStore over a real StoreHost actor: batched calls keep every caller's own answer and order."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from orloj_ray.errors import Conflict, NotFound, Unavailable


def agent(name: str, prompt: str = "hi") -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": name}, "spec": {"prompt": prompt}}


@pytest.fixture
def remote(ray_cluster):
    import ray

    from actors.store_host import RemoteStore, start_store_host

    handle = start_store_host(detached=False, name=f"orloj:store-test-{uuid.uuid4().hex[:8]}")
    yield RemoteStore(handle), handle
    ray.kill(handle, no_restart=True)


async def test_concurrent_calls_each_get_their_own_answer_or_error(remote):
    store, _ = remote
    for i in range(0, 40, 2):
        await store.create(agent(f"a{i:02d}"))
    results = await asyncio.gather(*(store.get("Agent", "default", f"a{i:02d}") for i in range(40)),
                                   return_exceptions=True)
    for i, result in enumerate(results):
        if i % 2:
            assert isinstance(result, NotFound) and f'"a{i:02d}" not found' in str(result)
        else:
            assert result["metadata"]["name"] == f"a{i:02d}"
    conflicts = await asyncio.gather(*(store.update_status("Agent", "default", "a00", {"n": n}, "1")
                                       for n in range(10)), return_exceptions=True)
    assert sum(isinstance(c, dict) for c in conflicts) == 1  # one write wins, nine see a Conflict
    assert sum(isinstance(c, Conflict) for c in conflicts) == 9


async def test_writes_issued_together_apply_in_the_order_issued(remote):
    store, _ = remote
    await store.create(agent("x", "v0"))
    since = await store.last_event_id()
    await asyncio.gather(*(store.update_status("Agent", "default", "x", {"n": n}, "*") for n in range(20)))
    events = await store.events_after(since, limit=100)
    assert [e.data["status"]["n"] for e in events] == list(range(20))
    assert (await store.get("Agent", "default", "x"))["status"]["n"] == 19


async def test_a_long_poll_holds_up_no_other_call(remote):
    store, _ = remote
    since = await store.last_event_id()
    waiter = asyncio.create_task(store.events_after(since + 1000, timeout_s=5))
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    await store.create(agent("quick"))
    assert asyncio.get_running_loop().time() - started < 2
    waiter.cancel()


async def test_a_dead_store_is_unavailable_to_every_waiting_caller(remote):
    import ray

    store, handle = remote
    ray.kill(handle, no_restart=True)  # asynchronous: wait until the actor is really gone
    for _ in range(100):
        try:
            await asyncio.wait_for(handle.ping.remote(), 2)
        except (ray.exceptions.RayActorError, asyncio.TimeoutError):
            break
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*(store.get("Agent", "default", "a") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results
