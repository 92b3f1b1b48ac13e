"""Memory on Ray: an AgentActor's memory.write lands in the named MemoryHost, where the API's
RemoteMemoryService (another process's view) reads it."""

from __future__ import annotations

import json

import pytest

from orloj_ray.engine.turn import TurnRequest
from orloj_ray.gateway import Endpoint
from orloj_ray.memory import MemoryRef, memory_tools

pytestmark = pytest.mark.slow


async def test_agent_actor_writes_to_the_shared_memory_host(ray_cluster):
    import ray

    from actors.agent_actor import agent_actor
    from actors.memory_host import RemoteMemoryService

    ref = MemoryRef("default", "ray-shared-memory")
    agent = {"apiVersion": "orloj.dev/v1", "kind": "Agent",
             "metadata": {"name": "ray-memory-agent", "namespace": "default"},
             "spec": {"prompt": "You remember things.", "limits": {"max_steps": 3}}}
    request = TurnRequest(
        namespace="default", task="ray-memory-task", attempt=1, agent=agent,
        endpoint=Endpoint(name="mock", provider="mock", base_url="", model="m"),
        tools=memory_tools(ref, ["write"]),
        # the mock model sends {"input": <topic>}: a JSON topic becomes memory.write's input
        input={"topic": json.dumps({"key": "from-actor", "value": "written inside an AgentActor"})},
        key="default/ray-memory-task/a1/n1",
    )
    handle = agent_actor("default", "ray-memory-agent")
    service = RemoteMemoryService()
    try:
        result = await handle.run_turn.remote(request)
        assert result.ok and result.tool_calls == 1, (result.error, result.trace)
        read = await service.execute(ref, "read", {"key": "from-actor"})
        assert read == {"found": True, "key": "from-actor", "value": "written inside an AgentActor"}
        listed = await service.entries(ref, prefix="from-")
        assert listed["count"] == 1
    finally:
        ray.kill(handle)
        ray.kill(service.handle)
