"""The running system end to end: Ray Serve API, StoreHost, Supervisor and AgentActors on the
shared Ray cluster, over real HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from orloj_ray.resources import kind_info
from tests_support import apply_all, wait_for_phase

CONFORMANCE = Path(__file__).resolve().parent / "conformance"
pytestmark = pytest.mark.slow


def test_every_upstream_example_posts_201_and_reads_back_normalized(orloj_api):
    golden = [json.loads(line) for line in (CONFORMANCE / "upstream-examples-normalized.jsonl").read_text().splitlines()]
    assert len(golden) == 98
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        for row in golden:
            want = row["normalized"]
            plural = kind_info(want["kind"]).plural
            raw = (CONFORMANCE / "upstream-examples" / row["path"]).read_bytes()
            # raw YAML with a JSON content type, as upstream's load tester sends it
            resp = http.post(f"/v1/{plural}", content=raw, headers={"Content-Type": "application/json"})
            assert resp.status_code == 201, (row["path"], resp.text)
            got = http.get(f"/v1/{plural}/{want['metadata']['name']}",
                           params={"namespace": want["metadata"]["namespace"]}).json()
            meta = got["metadata"]
            assert meta["resourceVersion"].isdigit() and meta["generation"] >= 1 and meta["createdAt"], meta
            if want["kind"] == "Secret":
                assert got["spec"]["data"] == {k: "***" for k in want["spec"]["data"]}
            elif want["kind"] == "ToolApproval":
                continue
            else:
                assert got["spec"] == want["spec"], row["path"]


def test_bad_nested_type_is_a_400_json_error_and_stores_nothing(orloj_api):
    body = {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "bad-limits", "namespace": "e2e-bad"},
            "spec": {"model_ref": "m", "limits": {"max_steps": "ten"}}}
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        resp = http.post("/v1/agents", json=body)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["field"] == "spec.limits.max_steps" and "integer" in error["message"]
        assert http.get("/v1/agents/bad-limits", params={"namespace": "e2e-bad"}).status_code == 404


def test_watch_streams_do_not_starve_other_requests(orloj_api):
    """Several open SSE watches, then CRUD and a create seen on every stream."""
    seen: list[list[str]] = [[] for _ in range(8)]
    stop = threading.Event()

    def watch(i: int) -> None:
        with httpx.Client(base_url=orloj_api, timeout=httpx.Timeout(5, read=20)) as http:
            with http.stream("GET", "/v1/agents/watch", params={"namespace": "e2e-watch"}) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data:"):
                        doc = json.loads(line[5:])
                        seen[i].append(f'{doc["type"]}:{doc["resource"]["metadata"]["name"]}')
                    if stop.is_set() or any(s.endswith(":w-agent") for s in seen[i]):
                        return

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(len(seen))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    agent = {"apiVersion": "orloj.dev/v1", "kind": "Agent",
             "metadata": {"name": "w-agent", "namespace": "e2e-watch"}, "spec": {"model_ref": "m"}}
    with httpx.Client(base_url=orloj_api, timeout=10) as http:
        started = time.monotonic()
        for _ in range(20):
            assert http.get("/healthz").status_code == 200
        assert time.monotonic() - started < 10
        assert http.post("/v1/agents", json=agent).status_code == 201
    for t in threads:
        t.join(timeout=20)
    stop.set()
    assert all("added:w-agent" in s for s in seen), seen


def test_task_created_over_rest_returns_at_once_and_runs_on_agent_actors(orloj_api):
    import ray

    ns = "e2e-rest"
    docs = [
        {"kind": "ModelEndpoint", "metadata": {"name": "m"}, "spec": {"provider": "mock", "default_model": "gpt-4o"}},
        {"kind": "Agent", "metadata": {"name": "solo"}, "spec": {"model_ref": "m", "prompt": "You answer briefly."}},
        {"kind": "AgentSystem", "metadata": {"name": "solo-system"}, "spec": {"agents": ["solo"]}},
    ]
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        apply_all(http, ns, docs)
        started = time.monotonic()
        resp = http.post("/v1/tasks", json={"apiVersion": "orloj.dev/v1", "kind": "Task",
                                            "metadata": {"name": "t1", "namespace": ns},
                                            "spec": {"system": "solo-system", "input": {"topic": "tides"}}})
        assert resp.status_code == 201 and time.monotonic() - started < 2.0
        assert resp.json()["status"]["phase"] == "Pending"
        task = wait_for_phase(http, "tasks", "t1", ns)
        assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
        assert task["status"]["output"]["final_output"].startswith("solo (step 1, model gpt-4o)")
        logs = http.get("/v1/tasks/t1/logs", params={"namespace": ns}).json()["logs"]
        assert any("task claimed by worker=" in line for line in logs)
    actor = ray.get_actor(f"orloj:agent:{ns}:solo", namespace="orloj")
    assert ray.get(actor.ping.remote())["turns"] >= 1


def test_supervisor_killed_mid_task_is_restarted_and_finishes_without_rerunning_steps(orloj_api):
    import ray

    from actors import RAY_NAMESPACE, supervisor_name

    ns = "e2e-fault-supervisor"
    agents = ["f-one", "f-two", "f-three"]
    docs = [{"kind": "ModelEndpoint", "metadata": {"name": "slow"},
             "spec": {"provider": "mock", "default_model": "gpt-4o", "options": {"latency_ms": "1500"}}}]
    docs += [{"kind": "Agent", "metadata": {"name": a}, "spec": {"model_ref": "slow"}} for a in agents]
    docs += [{"kind": "AgentSystem", "metadata": {"name": "f-system"}, "spec": {"agents": agents}},
             {"kind": "Task", "metadata": {"name": "f-task"}, "spec": {"system": "f-system"}}]
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        apply_all(http, ns, docs)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            trace = http.get("/v1/tasks/f-task", params={"namespace": ns}).json()["status"].get("trace") or []
            if any(r["type"] == "agent_end" for r in trace):
                break
            time.sleep(0.1)
        ray.kill(ray.get_actor(supervisor_name(0), namespace=RAY_NAMESPACE), no_restart=False)
        task = wait_for_phase(http, "tasks", "f-task", ns, timeout=90)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    ends = [r["agent"] for r in status["trace"] if r["type"] == "agent_end"]
    assert ends == agents  # each step recorded once, in order
    assert "takeover" in [h["type"] for h in status["history"]]


def test_agent_actor_killed_mid_turn_is_redelivered_and_the_task_succeeds(orloj_api):
    import ray

    ns = "e2e-fault-actor"
    docs = [{"kind": "ModelEndpoint", "metadata": {"name": "slow"},
             "spec": {"provider": "mock", "default_model": "gpt-4o", "options": {"latency_ms": "2000"}}},
            {"kind": "Agent", "metadata": {"name": "victim"}, "spec": {"model_ref": "slow"}},
            {"kind": "AgentSystem", "metadata": {"name": "v-system"}, "spec": {"agents": ["victim"]}},
            {"kind": "Task", "metadata": {"name": "v-task"}, "spec": {"system": "v-system"}}]
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        apply_all(http, ns, docs)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the turn is inside the (2 s) model call
            try:
                actor = ray.get_actor(f"orloj:agent:{ns}:victim", namespace="orloj")
                if ray.get(actor.ping.remote(), timeout=5)["turns"] >= 1:
                    break
            except ValueError:
                pass
            time.sleep(0.05)
        ray.kill(actor, no_restart=False)
        task = wait_for_phase(http, "tasks", "v-task", ns, timeout=90)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert [r["agent"] for r in status["trace"] if r["type"] == "agent_end"] == ["victim"]
    assert any(r["type"] == "agent_message_retry_scheduled" for r in status["trace"])
    (message,) = status["messages"]
    assert message["phase"] == "Succeeded" and message["attempts"] >= 2


def test_ray_nodes_are_mirrored_as_ready_workers(orloj_api):
    with httpx.Client(base_url=orloj_api, timeout=10) as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            items = http.get("/v1/workers", params={"labelSelector": "orloj.dev/source=ray-node"}).json()["items"]
            if items and items[0]["status"].get("phase") == "Ready":
                break
            time.sleep(0.5)
    (worker,) = items
    assert worker["spec"]["region"] == "default" and worker["status"]["phase"] == "Ready"
    assert worker["status"]["lastHeartbeat"]


def _slow_agent_tasks(http: httpx.Client, ns: str, agent_spec: dict, tasks: int) -> list[dict]:
    docs = [{"kind": "ModelEndpoint", "metadata": {"name": "slow"},
             "spec": {"provider": "mock", "default_model": "gpt-4o", "options": {"latency_ms": "2000"}}},
            {"kind": "Agent", "metadata": {"name": "busy"}, "spec": {"model_ref": "slow", **agent_spec}},
            {"kind": "AgentSystem", "metadata": {"name": "busy-system"}, "spec": {"agents": ["busy"]}}]
    docs += [{"kind": "Task", "metadata": {"name": f"busy-{i}"}, "spec": {"system": "busy-system"}}
             for i in range(tasks)]
    apply_all(http, ns, docs)
    return [wait_for_phase(http, "tasks", f"busy-{i}", ns, timeout=90) for i in range(tasks)]


def _replica_turns(ns: str) -> dict[str, int]:
    import ray

    turns = {}
    for suffix in ("", "#1", "#2", "#3"):
        try:
            actor = ray.get_actor(f"orloj:agent:{ns}:busy{suffix}", namespace="orloj")
        except ValueError:
            continue
        turns[suffix or "#0"] = ray.get(actor.ping.remote(), timeout=10)["turns"]
    return turns


def test_two_replicas_of_one_agent_share_the_load(orloj_api):
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        done = _slow_agent_tasks(http, "e2e-replicas", {"replicas": 2}, tasks=2)
    assert all(t["status"]["phase"] == "Succeeded" for t in done)
    assert _replica_turns("e2e-replicas") == {"#0": 1, "#1": 1}


def test_autoscaling_adds_replicas_when_the_mailbox_deepens(orloj_api):
    spec = {"autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_inflight": 1}}
    with httpx.Client(base_url=orloj_api, timeout=30) as http:
        done = _slow_agent_tasks(http, "e2e-autoscale", spec, tasks=3)
    assert all(t["status"]["phase"] == "Succeeded" for t in done)
    turns = _replica_turns("e2e-autoscale")
    assert set(turns) == {"#0", "#1", "#2"} and sum(turns.values()) == 3
