"""Placement on a real multi-node Ray cluster: a head (region default), an eu-west node and a
fake-GPU node supporting gpt-4o, all on loopback (``cluster.multinode``), with the store and the
agent pool of orloj-ray on it.

Runs in a pytest process of its own (``own_process``): a process attaches to one Ray cluster.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from actors import RAY_NAMESPACE
from actors.placement import nodes, placed_actor_name
from cluster.multinode import LocalCluster, plan, start
from orloj_ray.config import ServerConfig
from orloj_ray.engine.placement import Requirements, placement_class
from orloj_ray.engine.turn import TurnRequest
from orloj_ray.errors import OrlojError
from orloj_ray.gateway.base import Endpoint

pytestmark = [pytest.mark.slow, pytest.mark.own_process]
NS = "placement"


@pytest.fixture(scope="module")
def multinode(request):
    import ray

    started = time.monotonic()
    local = start(plan(["default", "eu-west"], gpu_node=True, gpu_models=("gpt-4o",), head_cpus=1))
    try:
        ray.init(address=local.address, namespace=RAY_NAMESPACE, logging_level="warning", log_to_driver=False)
        print(f"multi-node cluster up in {time.monotonic() - started:.1f}s")
        yield local
    finally:
        local.shutdown()


@pytest.fixture(scope="module")
def pool(multinode):
    from actors.agent_pool import start_agent_pool
    from actors.store_host import start_store_host

    start_store_host(ServerConfig())
    return start_agent_pool(ServerConfig(), placement_timeout_s=20)


@pytest.fixture
def runtime(pool):
    from actors.agent_pool import PooledAgentRuntime

    return PooledAgentRuntime(pool)


async def _agent(name: str, requirements: dict | None = None) -> dict:
    from actors.store_host import RemoteStore

    doc = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": name, "namespace": NS},
           "spec": {"model_ref": "m", **({"requirements": requirements} if requirements else {})}}
    stored, _ = await RemoteStore().upsert(doc)
    return stored


def test_nodes_report_regions_gpus_and_models(multinode: LocalCluster):
    found = {n.node_id: n for n in nodes() if n.alive}
    assert set(found) == set(multinode.node_ids.values())
    eu, gpu, head = (found[multinode.node_ids[k]] for k in ("region-eu-west", "gpu", "head"))
    assert (eu.region, eu.gpus, eu.models) == ("eu-west", 0, ())
    assert (gpu.effective_region, gpu.gpus, gpu.models) == ("default", 1.0, ("gpt-4o",))
    assert (head.effective_region, head.gpus, head.models) == ("default", 0, ())


@pytest.mark.parametrize("req,expected", [
    (Requirements("eu-west"), {"region-eu-west"}),
    (Requirements(gpu=True), {"gpu"}),
    (Requirements(model="claude"), {"head", "region-eu-west"}),  # the GPU node serves gpt-4o only
])
async def test_agent_actor_lands_on_a_node_meeting_the_requirements(multinode, pool, req, expected):
    import ray

    await _agent("writer")
    task_requirements = {"region": req.region, "gpu": req.gpu, "model": req.model}
    handle = await asyncio.wait_for(pool.acquire.remote(NS, "writer", task_requirements), timeout=30)
    info = await asyncio.wait_for(handle.ping.remote(), timeout=10)
    names = {v: k for k, v in multinode.node_ids.items()}
    assert names[info["node_id"]] in expected
    # named by its placement class, so another class of the same agent is another actor
    assert ray.get_actor(placed_actor_name(NS, "writer", placement_class(req)), namespace=RAY_NAMESPACE)


async def test_a_turn_runs_on_the_placed_actor(multinode, runtime):
    import ray

    agent = await _agent("eu-agent")
    request = TurnRequest(namespace=NS, task="t1", attempt=1, agent=agent,
                          endpoint=Endpoint("mock", "mock", "", "gpt-4o"), input={"topic": "placement"},
                          key=f"{NS}/t1/a001/eu-agent/b001", requirements={"region": "EU-West"})
    result = await asyncio.wait_for(runtime.run_turn(request), timeout=30)
    assert result.ok and result.output, result.error
    actor = ray.get_actor(placed_actor_name(NS, "eu-agent", "region=eu-west"), namespace=RAY_NAMESPACE)
    stats = await actor.stats.remote()
    assert stats["node_id"] == multinode.node_ids["region-eu-west"] and stats["inflight"] == 0


async def test_an_infeasible_requirement_fails_within_seconds_with_the_reason(multinode, runtime):
    agent = await _agent("mars-agent", {"gpu": True})
    request = TurnRequest(namespace=NS, task="t2", attempt=1, agent=agent,
                          endpoint=Endpoint("mock", "mock", "", "gpt-4o"), requirements={"region": "eu-west"})
    started = time.monotonic()
    with pytest.raises(OrlojError) as caught:
        await asyncio.wait_for(runtime.run_turn(request), timeout=10)
    assert time.monotonic() - started < 10
    err = caught.value
    assert err.code == "placement_infeasible" and err.retryable is False
    assert 'no alive node in region "eu-west" has a GPU (regions with GPU nodes: default)' in err.message
    assert "requirements region=eu-west,gpu" in err.message
