"""Several supervisors (``--supervisors 2``) on PostgreSQL: tasks are spread over both, each
process talks to the database itself, and when one supervisor dies its tasks go on on the other
at once, every step recorded once."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from own_cluster import OwnCluster
from tests_support import apply_all, wait_for_phase, wait_until

pytestmark = pytest.mark.slow
AGENTS = ["s-one", "s-two"]


@pytest.fixture(scope="module")
def two(tmp_path_factory, pg_url):
    with OwnCluster(tmp_path_factory.mktemp("supervisors"), "--supervisors", "2", "--store", "postgres",
                    "--database-url", pg_url) as cluster:
        ns = "sup"
        apply_all(cluster.http, ns, [
            {"kind": "ModelEndpoint", "metadata": {"name": "m"},
             "spec": {"provider": "mock", "default_model": "x", "options": {"latency_ms": "600"}}},
            *({"kind": "Agent", "metadata": {"name": a}, "spec": {"model_ref": "m"}} for a in AGENTS),
            {"kind": "AgentSystem", "metadata": {"name": "pipe"}, "spec": {"agents": AGENTS}}])
        yield cluster


def tasks(cluster: OwnCluster, prefix: str, count: int) -> list[str]:
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    apply_all(cluster.http, "sup", [{"kind": "Task", "metadata": {"name": n}, "spec": {"system": "pipe"}}
                                    for n in names])
    return names


def claimers(task: dict) -> list[str]:
    return [h["worker"].split("#")[0] for h in task["status"]["history"] if h["type"] in ("claim", "takeover")]


def test_both_supervisors_claim_a_share_and_every_process_has_its_own_store(two):
    infos = two.driver("""
        from actors.supervisor import supervisor_handles
        result = [ray.get(s.info.remote()) for s in supervisor_handles()]
    """)
    assert [i["index"] for i in infos] == [0, 1] and [i["shards"] for i in infos] == [[0], [1]]
    assert [i["leader"] for i in infos] == [True, False]
    names = tasks(two, "spread", 16)
    done = [wait_for_phase(two.http, "tasks", n, "sup", timeout=120) for n in names]
    assert all(t["status"]["phase"] == "Succeeded" for t in done), [t["status"].get("lastError") for t in done]
    share = Counter(claimers(t)[0] for t in done)
    assert set(share) == {"orloj:supervisor:0", "orloj:supervisor:1"}, share
    # PostgreSQL: no store actor on the path; the supervisors and the API each hold a pool
    assert "orloj:store" not in two.driver("""
        result = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "orloj"]
    """)


def test_a_killed_supervisors_tasks_finish_on_the_other_with_no_step_twice(two):
    names = tasks(two, "failover", 12)
    wait_until(lambda: sum(1 for n in names if (two.http.get(f"/v1/tasks/{n}", params={"namespace": "sup"}).json()
                                                .get("status") or {}).get("phase") == "Running") >= 4,
               timeout=60, what="tasks running on both supervisors")
    two.kill("orloj:supervisor:1", restart=False)
    killed_at = time.monotonic()
    done = [wait_for_phase(two.http, "tasks", n, "sup", timeout=120) for n in names]
    took = time.monotonic() - killed_at
    for task in done:
        status = task["status"]
        assert status["phase"] == "Succeeded", status.get("lastError")
        ends = [r["agent"] for r in status["trace"] if r["type"] == "agent_end"]
        assert ends == AGENTS, ends  # each step once, in order
    moved = [t for t in done if "orloj:supervisor:1" in claimers(t) and claimers(t)[-1] == "orloj:supervisor:0"]
    assert moved, "supervisor 0 took over none of the killed supervisor's tasks"
    assert all("is gone" in h["message"] for t in moved for h in t["status"]["history"] if h["type"] == "takeover")
    assert took < 30  # at once, not after the 30 s lease: its death is known from Ray's named actors
    info = two.driver("""
        from actors.supervisor import supervisor_handles
        result = [ray.get(s.info.remote()) for s in supervisor_handles()]
    """)
    assert [(i["index"], i["shards"], i["leader"]) for i in info] == [(0, [0, 1], True)]
