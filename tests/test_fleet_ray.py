"""The agent fleet on a real Ray cluster: actors on demand, reclaimed when idle, deleted or over
the per-node cap, and a turn that waits (saying why) when no actor can be had.

Runs against a control plane of its own (tests/own_cluster.py) with a short idle TTL and a cap
of three agent actors per node, so that reclaiming shows in seconds on a 2-core machine.
"""

from __future__ import annotations

import threading
import time

import pytest

from own_cluster import OwnCluster
from tests_support import apply_all, wait_for_phase, wait_until

pytestmark = pytest.mark.slow
IDLE_TTL_S = 6


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with OwnCluster(tmp_path_factory.mktemp("fleet"), "--agent-idle-ttl", f"{IDLE_TTL_S}s",
                    "--max-agent-actors", "3") as cluster:
        yield cluster


def endpoint(latency_ms: int = 0) -> dict:
    return {"kind": "ModelEndpoint", "metadata": {"name": "mock"},
            "spec": {"provider": "mock", "default_model": "m", "options": {"latency_ms": str(latency_ms)}}}


def agents(*names: str, **spec) -> list[dict]:
    return [{"kind": "Agent", "metadata": {"name": n}, "spec": {"model_ref": "mock", "prompt": n, **spec}}
            for n in names]


def system(name: str, *members: str) -> dict:
    return {"kind": "AgentSystem", "metadata": {"name": name}, "spec": {"agents": list(members)}}


def task(name: str, system_name: str) -> dict:
    return {"kind": "Task", "metadata": {"name": name}, "spec": {"system": system_name, "input": {"topic": name}}}


def run(cluster: OwnCluster, ns: str, name: str, system_name: str, timeout: float = 90) -> dict:
    apply_all(cluster.http, ns, [task(name, system_name)])
    return wait_for_phase(cluster.http, "tasks", name, ns, timeout=timeout)


def ends(done: dict) -> list[str]:
    return [r["agent"] for r in done["status"]["trace"] if r["type"] == "agent_end"]


def agent_status(cluster: OwnCluster, ns: str, name: str) -> dict:
    return cluster.http.get(f"/v1/agents/{name}", params={"namespace": ns}).json().get("status") or {}


def mine(cluster: OwnCluster, ns: str) -> list[str]:
    return [a for a in cluster.agent_actors() if a.startswith(f"orloj:agent:{ns}:")]


def test_an_idle_agent_scales_to_zero_and_its_next_turn_starts_it_again(fleet):
    ns = "fleet-idle"
    apply_all(fleet.http, ns, [endpoint(), *agents("solo"), system("s", "solo")])
    assert run(fleet, ns, "t1", "s")["status"]["phase"] == "Succeeded"
    status = wait_until(lambda: (st := agent_status(fleet, ns, "solo")).get("lastTurnAt") and st, timeout=15,
                        what="the agent's status lists its actor and its last turn")
    (listed,) = status["actors"]
    assert listed["name"] == f"orloj:agent:{ns}:solo" and listed["node_id"] and listed["actor_id"]
    assert status["actor"] == "running" and status["lastTurnAt"]
    wait_until(lambda: not mine(fleet, ns), timeout=IDLE_TTL_S + 20, what="the idle actor is reclaimed")
    status = wait_until(lambda: (st := agent_status(fleet, ns, "solo")).get("lastReclaim") and st, timeout=10,
                        what="the reclaim is in the agent's status")
    assert status["lastReclaim"]["reason"] == "idle" and status["actors"] == [] and status["actor"] == "idle"
    done = run(fleet, ns, "t2", "s")
    assert done["status"]["phase"] == "Succeeded" and ends(done) == ["solo"]


def test_the_per_node_cap_reclaims_the_least_recently_used_idle_actor(fleet):
    ns = "fleet-cap"
    names = ["c1", "c2", "c3", "c4"]
    apply_all(fleet.http, ns, [endpoint(), *agents(*names), *(system(f"s-{n}", n) for n in names)])
    seen: list[int] = []
    for n in names:
        assert run(fleet, ns, f"t-{n}", f"s-{n}")["status"]["phase"] == "Succeeded"
        seen.append(len(fleet.agent_actors()))
    assert max(seen) <= 3  # the whole cluster's agent actors, never above the cap of its one node
    status = wait_until(lambda: (st := agent_status(fleet, ns, "c1")).get("lastReclaim") and st, timeout=15,
                        what="c1's actor reclaimed to make room")
    assert status["lastReclaim"]["reason"] == "cap"  # c1 was the least recently used


def test_with_every_actor_busy_a_turn_waits_and_says_why(fleet):
    ns = "fleet-wait"
    busy = ["b1", "b2", "b3"]
    apply_all(fleet.http, ns, [endpoint(latency_ms=4000), *agents(*busy, "late"),
                               *(system(f"s-{n}", n) for n in [*busy, "late"])])
    for actor_name in fleet.agent_actors():  # start from an empty node
        fleet.kill(actor_name, restart=False)
    apply_all(fleet.http, ns, [task(f"t-{n}", f"s-{n}") for n in busy])
    wait_until(lambda: len(mine(fleet, ns)) == 3, timeout=30, what="three busy actors")
    apply_all(fleet.http, ns, [task("t-late", "s-late")])
    late_trace = lambda: [r["type"] for r in fleet.http.get("/v1/tasks/t-late", params={"namespace": ns}).json()[
        "status"].get("trace", [])]
    waiting = wait_until(lambda: agent_status(fleet, ns, "late").get("waiting"), timeout=20,
                         what="the late agent's status says it waits",
                         describe=lambda: f"trace {late_trace()}, actors {fleet.agent_actors()}")
    assert "agent actor cap" in waiting
    late = wait_for_phase(fleet.http, "tasks", "t-late", ns, timeout=60)
    assert late["status"]["phase"] == "Succeeded" and ends(late) == ["late"]
    waits = [r for r in late["status"]["trace"] if r["type"] == "agent_capacity_wait"]
    assert len(waits) == 1 and waits[0]["error_code"] == "agent_capacity"
    assert not agent_status(fleet, ns, "late").get("waiting")
    for n in busy:
        assert wait_for_phase(fleet.http, "tasks", f"t-{n}", ns)["status"]["phase"] == "Succeeded"


def test_a_deleted_agent_finishes_its_turn_then_its_actor_goes_and_later_turns_fail_clearly(fleet):
    ns = "fleet-delete"
    apply_all(fleet.http, ns, [endpoint(latency_ms=3000), *agents("first", "second"),
                               system("pipe", "first", "second")])
    apply_all(fleet.http, ns, [task("t", "pipe")])
    wait_until(lambda: f"orloj:agent:{ns}:first" in fleet.agent_actors(), timeout=30, what="first's actor")
    time.sleep(0.5)  # inside its 3 s model call
    assert fleet.http.delete("/v1/agents/first", params={"namespace": ns}).status_code == 204
    assert fleet.http.delete("/v1/agents/second", params={"namespace": ns}).status_code == 204
    done = wait_for_phase(fleet.http, "tasks", "t", ns, timeout=60)
    status = done["status"]
    assert ends(done) == ["first"]  # the turn in flight finished and was recorded once
    assert status["phase"] in ("Failed", "DeadLetter") and status["errorCode"] == "agent_not_found"
    assert 'agent "second" not found' in status["lastError"]
    deleted_at = time.monotonic()
    wait_until(lambda: not mine(fleet, ns), timeout=15, what="the deleted agent's actor is reclaimed")
    assert time.monotonic() - deleted_at < 10


def test_an_idle_reclaim_racing_new_turns_loses_nothing(fleet):
    """Turns arrive as the TTL runs out: each either finds the actor or starts a new one; every
    task succeeds with its one step recorded once."""
    ns = "fleet-race"
    apply_all(fleet.http, ns, [endpoint(), *agents("racer"), system("s", "racer")])
    results: list[dict] = []
    for i in range(4):
        results.append(run(fleet, ns, f"t{i}", "s"))
        time.sleep(IDLE_TTL_S - 0.5 + 0.4 * (i % 3))  # around the TTL: some find the actor, some race it
    assert [r["status"]["phase"] for r in results] == ["Succeeded"] * 4
    assert all(ends(r) == ["racer"] for r in results)
    wait_until(lambda: not mine(fleet, ns), timeout=IDLE_TTL_S + 20, what="the racer's actor reclaimed at the end")


def test_a_restarted_pool_finds_its_actors_and_orphans_none(fleet):
    ns = "fleet-restart"
    apply_all(fleet.http, ns, [endpoint(latency_ms=1500), *agents("keep", autoscaling={
        "min_replicas": 1, "max_replicas": 3, "target_inflight": 1, "scale_down_after": "2s"}), system("s", "keep")])
    apply_all(fleet.http, ns, [task(f"t{i}", "s") for i in range(3)])
    wait_until(lambda: len(mine(fleet, ns)) == 3, timeout=30, what="three replicas")
    fleet.kill("orloj:agent-pool", restart=True)
    fleet.kill("orloj:supervisor:0", restart=True)
    for i in range(3):
        done = wait_for_phase(fleet.http, "tasks", f"t{i}", ns, timeout=60)
        assert done["status"]["phase"] == "Succeeded" and ends(done) == ["keep"], done["status"].get("lastError")
    # the restarted pool knows the replicas it did not start, and scales them down (then to zero)
    wait_until(lambda: len(mine(fleet, ns)) <= 1, timeout=30, what="replicas scaled down after the restarts")
    wait_until(lambda: not mine(fleet, ns), timeout=IDLE_TTL_S + 20, what="the last actor reclaimed when idle")
