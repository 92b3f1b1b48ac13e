"""On Ray: a tool call waits for approval on an AgentActor, is approved over the REST API, the
task resumes and finishes; `orloj audit` shows the decisions; the rate limiter actor is one
bucket for every replica. Run under the flock (it starts Ray)."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
import yaml

from governance_support import EXAMPLES, ToolServer
from orloj_ray.resources import kind_info
from tests_support import wait_for_phase

pytestmark = pytest.mark.slow


def _post_all(http: httpx.Client, ns: str, docs: list[dict], tool_url: str) -> None:
    for doc in docs:
        doc["metadata"]["namespace"] = ns
        if doc["kind"] == "Tool":
            doc["spec"]["endpoint"] = f"{tool_url}/{doc['metadata']['name']}"
        resp = http.post(f"/v1/{kind_info(doc['kind']).plural}", json=doc)
        assert resp.status_code == 201, resp.text


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def test_a_call_waits_for_approval_and_resumes_after_approve_over_rest(orloj_api, cli_env):
    ns = "e2e-approval"
    with ToolServer().running() as server, httpx.Client(base_url=orloj_api, timeout=30) as http:
        _post_all(http, ns, _docs("resources.yaml") + _docs("compliance-checker.yaml"), server.url)
        flag = next(d for d in _docs("tasks.yaml") if d["metadata"]["name"] == "flag-q3")
        _post_all(http, ns, [flag], server.url)
        waiting = wait_for_phase(http, "tasks", "flag-q3", ns, phases=("WaitingApproval", "Failed", "Succeeded"))
        assert waiting["status"]["phase"] == "WaitingApproval", waiting["status"].get("lastError")
        name = waiting["status"]["pendingApproval"]
        approval = http.get(f"/v1/tool-approvals/{name}", params={"namespace": ns}).json()
        assert approval["spec"]["tool"] == "flag-issues" and approval["status"]["phase"] == "Pending"
        assert server.paths() == []
        resp = http.post(f"/v1/tool-approvals/{name}/approve", params={"namespace": ns},
                         json={"decided_by": "carol"})
        assert resp.status_code == 200, resp.text
        done = wait_for_phase(http, "tasks", "flag-q3", ns)
        assert done["status"]["phase"] == "Succeeded", done["status"].get("lastError")
        assert server.paths() == ["/flag-issues"]
        audit = http.get("/v1/audit", params={"namespace": ns, "task": "flag-q3"}).json()["items"]
    decisions = [r["decision"] for r in audit]
    assert "approval_requested" in decisions and "approved" in decisions and "executed" in decisions
    out = subprocess.run(["orloj", "audit", "-n", ns, "--task", "flag-q3", "--decision", "approved", "-o", "json"],
                         env=cli_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)["items"]
    assert record["decided_by"] == "carol" and record["subject"] == "flag-issues"
    table = subprocess.run(["orloj", "audit", "-n", ns, "--task", "flag-q3"], env=cli_env, capture_output=True,
                           text=True, timeout=60)
    assert table.returncode == 0 and "approval_requested" in table.stdout and "flag-issues" in table.stdout


def test_the_rate_limiter_actor_is_one_bucket_for_every_replica(ray_cluster):
    import asyncio

    import ray

    from actors.rate_limiter import RATE_LIMITER_ACTOR, RayRateLimiter

    async def scenario():
        first, second = RayRateLimiter(), RayRateLimiter()  # two replicas' clients
        key = f"e2e-rate/agent-{time.time_ns()}"
        assert await first.reserve(key, 50, 60, 0.0) == 0.0
        wait = await second.reserve(key, 20, 60, 60.0)  # the same bucket: 10 left, 10 s to wait
        assert wait is not None and 9.0 < wait <= 10.0
        assert await second.reserve(key, 50, 60, 5.0) is None

    asyncio.run(scenario())
    assert ray.get_actor(RATE_LIMITER_ACTOR, namespace="orloj")
