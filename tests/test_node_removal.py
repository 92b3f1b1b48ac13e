"""A Ray node removed while it hosts an agent mid-turn: the actor comes back on another node
that meets the agent's requirements, the turn is redelivered, and the task succeeds with the
step recorded once and its tool call seen under one idempotency key (the counting tool).
Runs in a pytest process of its own (``own_process``), with a cluster of its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster.multinode import HEAD, NodeSpec, start
from counting_tool import CountingTool
from orloj_ray.config import ServerConfig
from orloj_ray.engine.controller import Controller

pytestmark = [pytest.mark.slow, pytest.mark.own_process]
NS = "node-removal"


@pytest.fixture(scope="module")
def cluster():
    import ray

    local = start([NodeSpec(HEAD, "default", cpus=1), NodeSpec("us-a", "us-east"), NodeSpec("us-b", "us-east")])
    try:
        ray.init(address=local.address, namespace="orloj", logging_level="warning", log_to_driver=False)
        yield local
    finally:
        local.shutdown()


async def test_agent_survives_the_removal_of_its_node(cluster):
    import ray

    from actors.agent_pool import PooledAgentRuntime, start_agent_pool
    from actors.store_host import RemoteStore, start_store_host

    config = ServerConfig(tool_allowed_networks=("127.0.0.0/8",))
    start_store_host(config)
    pool = start_agent_pool(config, placement_timeout_s=30)
    store = RemoteStore()
    tool = CountingTool().__enter__()
    docs = [
        {"kind": "ModelEndpoint", "metadata": {"name": "slow"},
         "spec": {"provider": "mock", "default_model": "gpt-4o", "options": {"latency_ms": "3000"}}},
        {"kind": "Tool", "metadata": {"name": "counter"}, "spec": {"type": "http", "endpoint": tool.url}},
        {"kind": "Agent", "metadata": {"name": "roamer"},
         "spec": {"model_ref": "slow", "requirements": {"region": "us-east"}, "tools": ["counter"],
                  "limits": {"max_steps": 4}}},
        {"kind": "AgentSystem", "metadata": {"name": "roam"}, "spec": {"agents": ["roamer"]}},
        {"kind": "Task", "metadata": {"name": "roam-task"}, "spec": {"system": "roam"}},
    ]
    for doc in docs:
        await store.create({"apiVersion": "orloj.dev/v1", **doc, "metadata": {**doc["metadata"], "namespace": NS},
                            "status": {"phase": "Pending"}})
    controller = Controller(store, PooledAgentRuntime(pool), worker="node-test#1")
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(60):  # until the turn is inside the 3 s model call
            while True:
                busy = [a for a in (await pool.info.remote())["actors"] if a["agent"] == "roamer" and a["inflight"]]
                if busy:
                    break
                await asyncio.sleep(0.1)
        (host,) = {a["node_id"] for a in busy}
        assert host in (cluster.node_ids["us-a"], cluster.node_ids["us-b"])
        victim = next(n for n in cluster.cluster.list_all_nodes() if n.node_id == host)
        await asyncio.sleep(0.5)
        cluster.cluster.remove_node(victim)
        removed_at = time.monotonic()
        async with asyncio.timeout(90):
            while (task := await store.get("Task", NS, "roam-task"))["status"].get("phase") not in (
                    "Succeeded", "Failed", "DeadLetter"):
                await asyncio.sleep(0.1)
    finally:
        controller.stop()
        await loop
        tool.__exit__(None, None, None)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert [r["agent"] for r in status["trace"] if r["type"] == "agent_end"] == ["roamer"]
    (message,) = status["messages"]
    assert message["attempts"] >= 2 and message["phase"] == "Succeeded"
    # the step's tool call: once, or (a crash between the call and its record) again with its key
    assert len(tool.calls) == 1 and sum(tool.calls.values()) in (1, 2), dict(tool.calls)
    survivor = ({cluster.node_ids["us-a"], cluster.node_ids["us-b"]} - {host}).pop()
    actor = ray.get_actor("orloj:agent:node-removal:roamer:region=us-east", namespace="orloj")
    assert (await actor.ping.remote())["node_id"] == survivor
    print(f"recovered {time.monotonic() - removed_at:.1f}s after the node was removed")
