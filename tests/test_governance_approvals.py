"""The announcement walk-through in-process (examples/governance), in both modes: scan-documents
runs, flag-issues waits for a person and resumes or fails, purge-records is denied; approvals
through the REST API; TTL expiry; the finished turns are not run again."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from governance_support import EXAMPLES, Running, ToolServer, apply, read, task, wait_phase
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from serve.app import create_app

MODES = [pytest.param(None, id="message-driven"), pytest.param(1, id="sequential")]
SYSTEM = "compliance-review"


async def _setup(store, url: str, agent_file: str = "compliance-checker.yaml") -> None:
    await apply(store, read(EXAMPLES / "resources.yaml") + read(EXAMPLES / agent_file), tool_url=url)


def _api(store) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://api")


async def _approval(store, name: str) -> dict:
    async with asyncio.timeout(10):
        while True:
            items = (await store.list("ToolApproval", "default")).items
            found = [a for a in items if a["spec"]["task_ref"] == f"default/{name}"]
            if found:
                return found[-1]
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("parallel", MODES)
async def test_scan_runs_without_asking(parallel):
    store = MemoryStore()
    with ToolServer().running() as server:
        await _setup(store, server.url)
        await store.create(normalize(task("scan-q3", SYSTEM, "scan-documents of the Q3 vendor contracts")))
        async with Running(store, parallel=parallel):
            done = await wait_phase(store, "scan-q3")
    assert done["status"]["phase"] == "Succeeded", done["status"].get("lastError")
    assert server.paths() == ["/scan-documents"]
    assert (await store.list("ToolApproval", "default")).items == []
    decisions = [(r["decision"], r["subject"]) for r in await store.list_audit(task="scan-q3")]
    # auditLog: true records the routine decisions too
    assert ("requested", "scan-documents") in decisions and ("allowed", "scan-documents") in decisions
    assert ("executed", "scan-documents") in decisions and ("allowed", "gpt-4") in decisions


@pytest.mark.parametrize("parallel", MODES)
async def test_flag_waits_for_approval_and_resumes_on_approve(parallel):
    store = MemoryStore()
    with ToolServer().running() as server:
        await _setup(store, server.url)
        # a first agent whose finished turn must not run again after the pause
        await apply(store, [{"kind": "Agent", "metadata": {"name": "intake"}, "spec": {"model": "gpt-4"}},
                            {"kind": "AgentSystem", "metadata": {"name": "two-step"},
                             "spec": {"agents": ["intake", "compliance-checker"],
                                      "graph": {"intake": {"next": "compliance-checker"}}}}])
        await store.create(normalize(task("flag-q3", "two-step", "flag-issues found in the Q3 vendor contracts")))
        async with Running(store, parallel=parallel), _api(store) as api:
            waiting = await wait_phase(store, "flag-q3", ("WaitingApproval",))
            approval = await _approval(store, "flag-q3")
            assert server.paths() == []  # the call waits: the tool has not been reached
            assert waiting["status"]["pendingApproval"] == approval["metadata"]["name"]
            assert "tool approval required" in waiting["status"]["lastError"]
            assert approval["spec"]["tool"] == "flag-issues" and approval["status"]["phase"] == "Pending"
            assert approval["spec"]["operation_class"] == "write" and approval["status"]["expires_at"]
            assert approval["metadata"]["annotations"]["orloj.dev/args-digest"].startswith("sha256:")
            name = approval["metadata"]["name"]
            resp = await api.post(f"/v1/tool-approvals/{name}/approve", json={"decided_by": "alice"})
            assert resp.status_code == 200, resp.text
            done = await wait_phase(store, "flag-q3")
            audit = (await api.get("/v1/audit", params={"task": "flag-q3"})).json()["items"]
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert "lastError" not in status and "errorCode" not in status  # the approval wait is over
    assert server.paths() == ["/flag-issues"]  # exactly once, after the approval
    starts = [r["agent"] for r in status["trace"] if r["type"] == "agent_start"]
    assert starts.count("intake") == 1 and starts.count("compliance-checker") == 2  # only the interrupted turn
    assert [h["type"] for h in status["history"]][-3:] == ["waiting_approval", "running", "succeeded"]
    assert status["history"][-2]["message"] == "tool approval granted, task resumed"
    decisions = [(r["decision"], r["subject"]) for r in audit]
    assert ("approval_requested", "flag-issues") in decisions
    approved = next(r for r in audit if r["decision"] == "approved")
    assert approved["decided_by"] == "alice" and approved["rule"] == f"ToolApproval/{name}"
    used = [r for r in audit if r["decision"] == "allowed" and r["subject"] == "flag-issues"]
    assert used and used[-1]["rule"] == f"ToolApproval/{name}"
    assert decisions.index(("executed", "flag-issues")) > decisions.index(("approval_requested", "flag-issues"))


@pytest.mark.parametrize("parallel", MODES)
async def test_flag_fails_with_approval_denied_on_deny(parallel):
    store = MemoryStore()
    with ToolServer().running() as server:
        await _setup(store, server.url)
        await store.create(normalize(task("flag-q3", SYSTEM, "flag-issues found in the Q3 vendor contracts")))
        async with Running(store, parallel=parallel), _api(store) as api:
            approval = await _approval(store, "flag-q3")
            await wait_phase(store, "flag-q3", ("WaitingApproval",))
            resp = await api.post(f"/v1/tool-approvals/{approval['metadata']['name']}/deny",
                                  json={"decided_by": "bob", "reason": "not this quarter"})
            assert resp.status_code == 200, resp.text
            done = await wait_phase(store, "flag-q3")
            audit = (await api.get("/v1/audit", params={"task": "flag-q3", "code": "approval_denied"})).json()
    status = done["status"]
    assert status["phase"] == "Failed" and status["errorCode"] == "approval_denied"
    assert "tool approval denied" in status["lastError"] and "by bob" in status["lastError"]
    assert status["history"][-1]["code"] == "approval_denied"
    assert server.paths() == []
    assert [r["decision"] for r in audit["items"]] == ["approval_denied"]
    assert audit["items"][0]["reason"] == "not this quarter"


async def test_an_approval_past_its_ttl_expires_and_fails_the_task():
    store = MemoryStore()
    with ToolServer().running() as server:
        await _setup(store, server.url)
        await store.create(normalize(task("flag-q3", SYSTEM, "flag-issues found in the Q3 vendor contracts")))
        async with Running(store):
            approval = await _approval(store, "flag-q3")
            await wait_phase(store, "flag-q3", ("WaitingApproval",))
            status = {**approval["status"], "expires_at": "2000-01-01T00:00:00Z"}
            await store.update_status("ToolApproval", "default", approval["metadata"]["name"], status, "*")
            done = await wait_phase(store, "flag-q3")
    assert done["status"]["phase"] == "Failed" and done["status"]["errorCode"] == "approval_expired"
    assert "tool approval expired" in done["status"]["lastError"]
    expired = await store.get("ToolApproval", "default", approval["metadata"]["name"])
    assert expired["status"]["phase"] == "Expired"
    assert [r["decision"] for r in await store.list_audit(code="approval_expired")] == ["expired"]
    assert server.paths() == []


@pytest.mark.parametrize("parallel", MODES)
async def test_purge_records_without_the_write_grant_is_denied(parallel):
    store = MemoryStore()
    with ToolServer().running() as server:
        await _setup(store, server.url, "compliance-checker-with-purge.yaml")
        await store.create(normalize(task("purge-2017", SYSTEM, "purge-records older than seven years")))
        async with Running(store, parallel=parallel):
            done = await wait_phase(store, "purge-2017")
    status = done["status"]
    assert status["phase"] == "Failed" and status["errorCode"] == "tool_permission_denied"
    assert ("policy permission denied for tool=purge-records rule=purge-records-needs-write "
            "required=compliance_docs:write") in status["lastError"]
    assert server.paths() == [] and (await store.list("ToolApproval", "default")).items == []
    (denied,) = await store.list_audit(decision="denied")
    assert denied["code"] == "tool_permission_denied" and denied["rule"] == "ToolPermission/purge-records-needs-write"
