"""Placement without a Ray cluster: requirements, placement classes, feasibility, actor options,
the Worker mirror, and an infeasible requirement failing a task at once."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from actors.placement import (
    MODEL_RESOURCE_PREFIX,
    NODE_ID_LABEL,
    REGION_LABEL,
    Infeasible,
    actor_options,
    node_info,
    node_labels,
    node_resources,
    placed_actor_name,
)
from actors.workers import NODE_ID_ANNOTATION, SOURCE_LABEL, mirror_workers, worker_doc, worker_name
from cluster.multinode import plan
from orloj_ray.engine.placement import NodeInfo, Requirements, feasible, placement_class, worker_liveness
from orloj_ray.errors import NotFound
from orloj_ray.store import MemoryStore
from tests_support import load

HEAD = NodeInfo("a" * 56, region="")
EU = NodeInfo("b" * 56, region="eu-west", labels={REGION_LABEL: "eu-west"})
GPU = NodeInfo("c" * 56, region="", gpus=1.0, models=("gpt-4o", "openai/gpt-4o-mini"))
DEAD_MARS = NodeInfo("d" * 56, alive=False, region="mars")
CLUSTER = [HEAD, EU, GPU, DEAD_MARS]


# -- requirements -------------------------------------------------------------------------------------

def test_requirements_merge_the_agents_fields_over_the_tasks():
    task = {"region": " eu-west ", "gpu": True, "model": "gpt-4o"}
    assert Requirements.from_dict(task) == Requirements("eu-west", True, "gpt-4o")
    assert Requirements.merge(task, {"region": "us-east"}) == Requirements("us-east", True, "gpt-4o")
    assert Requirements.merge(task, {"gpu": False, "model": ""}) == Requirements("eu-west", False, "gpt-4o")
    assert Requirements.merge(None, {"gpu": "true"}) == Requirements(gpu=True)
    assert Requirements.merge({}, None).empty
    agent = {"metadata": {"name": "a"}, "spec": {"requirements": {"model": "llama3"}}}
    assert Requirements.for_agent({"region": "eu-west"}, agent) == Requirements("eu-west", False, "llama3")
    assert Requirements.for_agent({}, {"metadata": {"name": "a"}, "spec": {}}).empty


def test_placement_class_is_short_stable_and_ignores_region_case():
    assert placement_class(Requirements()) == ""
    assert placement_class(Requirements("EU-West", True, "gpt-4o")) == "region=eu-west,gpu,model=gpt-4o"
    assert placement_class(Requirements(model="openai/gpt-4o")) == "model=openai/gpt-4o"
    assert placement_class(Requirements("eu-west")) == placement_class(Requirements("EU-WEST"))


def test_actor_names_keep_the_plain_name_for_no_requirements():
    assert placed_actor_name("default", "writer") == "orloj:agent:default:writer"
    assert placed_actor_name("default", "writer", "region=eu-west,gpu") == (
        "orloj:agent:default:writer:region=eu-west,gpu")


# -- feasibility ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("req", [
    Requirements(), Requirements("eu-west"), Requirements("EU-WEST"), Requirements("default"), Requirements(gpu=True),
    Requirements(model="gpt-4o"), Requirements(model="anything"),  # the head has no model list: any model
    Requirements("default", True, "openai/gpt-4o-mini"), Requirements("eu-west", model="claude"),
])
def test_feasible_requirements(req):
    assert feasible(req, CLUSTER) == (True, "")


@pytest.mark.parametrize("req,reason", [
    (Requirements("mars"), 'no alive node has region "mars" (regions: default, eu-west)'),
    (Requirements("eu-west", gpu=True),
     'no alive node in region "eu-west" has a GPU (regions with GPU nodes: default)'),
    (Requirements(gpu=True, model="claude"),
     'no alive node with a GPU supports model "claude" (models: gpt-4o, openai/gpt-4o-mini)'),
])
def test_infeasible_requirements_name_what_is_missing_and_what_is_offered(req, reason):
    assert feasible(req, CLUSTER) == (False, reason)


def test_no_gpu_anywhere_and_no_nodes_at_all():
    assert feasible(Requirements(gpu=True), [HEAD, EU]) == (False, "no alive node has a GPU (no node has a GPU)")
    assert feasible(Requirements(), [DEAD_MARS]) == (False, "no alive node in the cluster")


def test_model_lists_restrict_only_the_nodes_that_have_one():
    only_gpu = [GPU]
    assert feasible(Requirements(model="gpt-4o"), only_gpu)[0]
    assert feasible(Requirements(model="claude"), only_gpu) == (
        False, 'no alive node supports model "claude" (models: gpt-4o, openai/gpt-4o-mini)')


# -- Ray node conventions and actor options --------------------------------------------------------------

def test_node_info_reads_ray_nodes_entries():
    raw = {"NodeID": "e" * 56, "Alive": True, "NodeManagerAddress": "127.0.0.1",
           "Labels": {REGION_LABEL: "eu-west", NODE_ID_LABEL: "e" * 56},
           "Resources": {"CPU": 2.0, "GPU": 1.0, f"{MODEL_RESOURCE_PREFIX}gpt-4o": 1000.0,
                         f"{MODEL_RESOURCE_PREFIX}llama3:8b": 1000.0}}
    node = node_info(raw)
    assert (node.node_id, node.alive, node.region, node.gpus, node.models, node.cpus) == (
        "e" * 56, True, "eu-west", 1.0, ("gpt-4o", "llama3:8b"), 2.0)
    local = node_info({"NodeID": "f" * 56, "Alive": False, "Resources": {"CPU": 1.0}})
    assert (local.alive, local.effective_region, local.gpus, local.models) == (False, "default", 0.0, ())
    assert node_labels("eu-west") == {REGION_LABEL: "eu-west"} and node_labels("default") == {}
    assert node_resources(["gpt-4o"]) == {f"{MODEL_RESOURCE_PREFIX}gpt-4o": 1000.0}


def _selector(req, nodes=CLUSTER) -> dict:
    from ray._private.label_utils import validate_label_selector

    options = actor_options(req, nodes)
    selector = options.get("label_selector", {})
    assert validate_label_selector(selector) is None, selector
    assert set(options) <= {"label_selector"}  # no resources consumed: never a slice of a GPU
    return selector


def test_actor_options_select_by_region_label():
    assert actor_options(Requirements(), CLUSTER) == {}
    assert _selector(Requirements("eu-west")) == {REGION_LABEL: "in(eu-west)"}
    mixed = [HEAD, EU, NodeInfo("g" * 56, region="EU-West")]
    assert _selector(Requirements("eu-west"), mixed) == {REGION_LABEL: "in(EU-West,eu-west)"}
    # default: the nodes without a region label, i.e. not any other region
    assert _selector(Requirements("default")) == {REGION_LABEL: "!in(eu-west)"}
    assert _selector(Requirements("default"), [HEAD, GPU]) == {}


def test_actor_options_exclude_nodes_without_gpu_or_model():
    assert _selector(Requirements(gpu=True)) == {NODE_ID_LABEL: f"!in({'a' * 56},{'b' * 56})"}
    # the head and eu nodes take any model, the GPU node only its list
    assert _selector(Requirements(model="claude")) == {NODE_ID_LABEL: f"!in({'c' * 56})"}
    assert _selector(Requirements(model="gpt-4o")) == {}
    assert _selector(Requirements("default", True, "gpt-4o")) == {
        REGION_LABEL: "!in(eu-west)", NODE_ID_LABEL: f"!in({'a' * 56})"}


def test_actor_options_refuse_infeasible_requirements():
    with pytest.raises(Infeasible, match='no alive node has region "mars"'):
        actor_options(Requirements("mars"), CLUSTER)


# -- Worker mirror -----------------------------------------------------------------------------------------

def test_worker_doc_mirrors_a_node():
    doc = worker_doc(GPU, max_concurrent_tasks=8)
    assert doc["metadata"]["name"] == worker_name(GPU.node_id) == "node-cccccccccccc"
    assert doc["metadata"]["namespace"] == "default"
    assert doc["metadata"]["annotations"][NODE_ID_ANNOTATION] == GPU.node_id
    assert doc["spec"] == {"region": "default", "capabilities": {"gpu": True,
                           "supported_models": ["gpt-4o", "openai/gpt-4o-mini"]}, "max_concurrent_tasks": 8}
    eu = worker_doc(NodeInfo("h" * 56, region="eu-west", labels={"orloj.dev/max-concurrent-tasks": "3"}))
    assert eu["spec"] == {"region": "eu-west", "capabilities": {}, "max_concurrent_tasks": 3}


async def test_mirror_workers_upserts_heartbeats_and_marks_vanished_nodes_not_ready():
    store = MemoryStore()
    manual = {"apiVersion": "orloj.dev/v1", "kind": "Worker", "metadata": {"name": "by-hand", "namespace": "default"},
              "spec": {"region": "default"}, "status": {"phase": "Ready"}}
    await store.create(manual)
    report = await mirror_workers(store, CLUSTER, current_tasks={GPU.node_id: 4}, now="2026-01-01T00:00:00Z")
    assert sorted(report.ready) == sorted(worker_name(n.node_id) for n in (HEAD, EU, GPU))
    gpu = await store.get("Worker", "default", "node-cccccccccccc")
    assert gpu["metadata"]["labels"] == {SOURCE_LABEL: "ray-node"}
    assert gpu["status"]["phase"] == "Ready" and gpu["status"]["currentTasks"] == 4
    assert gpu["status"]["lastHeartbeat"] == "2026-01-01T00:00:00Z"
    with pytest.raises(NotFound):
        await store.get("Worker", "default", worker_name(DEAD_MARS.node_id))  # never seen alive: not created

    # a steady heartbeat writes status only; the spec (and generation) stay
    cursor = await store.last_event_id()
    report = await mirror_workers(store, CLUSTER, now="2026-01-01T00:00:10Z")
    events = await store.events_after(cursor)
    assert {e.type for e in events} == {"resource.status"} and report.written == 3
    gpu = await store.get("Worker", "default", "node-cccccccccccc")
    assert gpu["metadata"]["generation"] == 1 and gpu["status"]["currentTasks"] == 0

    # the eu node dies (still listed, not alive) and the GPU node vanishes
    report = await mirror_workers(store, [HEAD, NodeInfo(EU.node_id, alive=False, region="eu-west")],
                                  now="2026-01-01T00:00:20Z")
    assert sorted(report.not_ready) == ["node-bbbbbbbbbbbb", "node-cccccccccccc"]
    for name in report.not_ready:
        status = (await store.get("Worker", "default", name))["status"]
        assert (status["phase"], status["lastError"], status["currentTasks"]) == ("NotReady", "worker stopped", 0)
        assert status["lastHeartbeat"] == "2026-01-01T00:00:10Z"  # the last one it gave
    assert (await store.get("Worker", "default", "by-hand"))["status"] == {"phase": "Ready"}  # not ours

    # marking again writes nothing; a node that comes back is Ready again
    assert (await mirror_workers(store, [HEAD], now="2026-01-01T00:00:30Z")).written == 1
    await mirror_workers(store, [HEAD, GPU], now="2026-01-01T00:00:40Z")
    status = (await store.get("Worker", "default", "node-cccccccccccc"))["status"]
    assert status["phase"] == "Ready" and "lastError" not in status


def test_worker_liveness_follows_upstreams_heartbeat_rules():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    beat = lambda s: (now - timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert worker_liveness({"lastHeartbeat": beat(5)}, now) == ("Ready", "")
    assert worker_liveness({"lastHeartbeat": "2025-12-31T23:59:59.123456789Z"}, now) == ("Ready", "")
    assert worker_liveness({"lastHeartbeat": beat(25)}, now) == ("NotReady", "worker heartbeat stale")
    assert worker_liveness({}, now) == ("NotReady", "no heartbeat received")
    assert worker_liveness({"lastHeartbeat": "yesterday"}, now) == ("NotReady", "invalid heartbeat timestamp")
    stopped = {"phase": "NotReady", "lastError": "worker stopped", "lastHeartbeat": beat(1)}
    assert worker_liveness(stopped, now) == ("NotReady", "worker stopped")


def test_multinode_plan():
    specs = plan(["default", "eu-west"], gpu_node=True, gpu_models=("gpt-4o",))
    assert [(s.name, s.region, s.gpus, s.models) for s in specs] == [
        ("head", "default", 0, ()), ("region-eu-west", "eu-west", 0, ()), ("gpu", "default", 1, ("gpt-4o",))]


# -- an infeasible requirement fails the task at once, on the real control plane -----------------------

def test_infeasible_requirement_fails_the_task_within_seconds_with_the_reason(orloj_api):
    import httpx

    from tests_support import apply_all, wait_for_phase

    ns = "placement-mars"
    docs = [{"kind": "ModelEndpoint", "metadata": {"name": "m"}, "spec": {"provider": "mock", "default_model": "x"}},
            {"kind": "Agent", "metadata": {"name": "rover"}, "spec": {"model_ref": "m"}},
            {"kind": "AgentSystem", "metadata": {"name": "s"}, "spec": {"agents": ["rover"]}},
            {"kind": "Task", "metadata": {"name": "t"}, "spec": {
                "system": "s", "requirements": {"region": "mars"}, "message_retry": {"max_attempts": 3, "backoff": "1s"}}}]
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        started = time.monotonic()
        apply_all(http, ns, docs)
        task = wait_for_phase(http, "tasks", "t", ns, timeout=30)
    status = task["status"]
    assert time.monotonic() - started < 10
    assert status["phase"] == "Failed" and status["errorCode"] == "placement_infeasible"
    assert 'no alive node has region "mars" (regions: default)' in status["lastError"]
    assert status["messages"][0]["attempts"] == 1  # not retried: no node will appear by waiting
