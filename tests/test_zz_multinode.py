"""Placement on a real multi-node Ray cluster: a head (region default), an eu-west node and a
fake-GPU node supporting gpt-4o, all on loopback (``cluster.multinode``).

Named to run last: a process can attach to one Ray cluster only, so this module first tears
down the suite's shared cluster (the Serve app and actors of ``orloj_api``, then
``ray_cluster``) through those fixtures' own teardown, then starts its own.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from actors import RAY_NAMESPACE
from actors.placement import nodes, placed_actor_name
from cluster.multinode import LocalCluster, plan, start
from orloj_ray.engine.placement import Requirements, placement_class
from orloj_ray.engine.turn import TurnRequest
from orloj_ray.errors import OrlojError
from orloj_ray.gateway.base import Endpoint

pytestmark = pytest.mark.slow
NS = "placement"


def _stop_shared_ray() -> None:
    """Shut the suite's shared cluster down first (conftest's teardowns then do nothing)."""
    import ray

    if not ray.is_initialized():
        return
    from ray import serve

    from cluster.local import undeploy

    undeploy()
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def multinode(request):
    import ray

    _stop_shared_ray()
    started = time.monotonic()
    local = start(plan(["default", "eu-west"], gpu_node=True, gpu_models=("gpt-4o",), head_cpus=1))
    try:
        ray.init(address=local.address, namespace=RAY_NAMESPACE, logging_level="warning", log_to_driver=False)
        print(f"multi-node cluster up in {time.monotonic() - started:.1f}s")
        yield local
    finally:
        local.shutdown()


@pytest.fixture
def runtime(multinode):
    from actors.supervisor import RayAgentRuntime

    return RayAgentRuntime(placement_timeout_s=20)


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
async def test_agent_actor_lands_on_a_node_meeting_the_requirements(multinode, runtime, req, expected):
    import ray

    handle = await asyncio.wait_for(runtime.handle(NS, "writer", req), timeout=30)
    info = await asyncio.wait_for(handle.ping.remote(), timeout=10)
    names = {v: k for k, v in multinode.node_ids.items()}
    assert names[info["node_id"]] in expected
    # named by its placement class, so another class of the same agent is another actor
    assert ray.get_actor(placed_actor_name(NS, "writer", placement_class(req)), namespace=RAY_NAMESPACE)


async def test_a_turn_runs_on_the_placed_actor(multinode, runtime):
    agent = {"metadata": {"name": "eu-agent", "namespace": NS}, "spec": {"prompt": "be brief"}}
    request = TurnRequest(namespace=NS, task="t1", attempt=1, agent=agent,
                          endpoint=Endpoint("mock", "mock", "", "gpt-4o"), input={"topic": "placement"},
                          key=f"{NS}/t1/a001/eu-agent/b001", requirements={"region": "EU-West"})
    result = await asyncio.wait_for(runtime.run_turn(request), timeout=30)
    assert result.ok and result.output, result.error
    eu = multinode.node_ids["region-eu-west"]
    assert runtime._node_of[(NS, "eu-agent", "region=eu-west", 0)] == eu
    assert runtime.current_tasks() == {}  # nothing in flight any more


async def test_an_infeasible_requirement_fails_within_seconds_with_the_reason(multinode, runtime):
    agent = {"metadata": {"name": "mars-agent", "namespace": NS}, "spec": {"requirements": {"gpu": True}}}
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
