"""Upstream's governed examples (report_system_governed and its _allow variant) in both execution
modes, in-process: mock model, tools on a loopback server that counts what reaches it."""

from __future__ import annotations

import pytest

from governance_support import UPSTREAM, ToolServer, apply, mock_endpoint, read, run_task, task
from orloj_ray.store import MemoryStore

MODES = [pytest.param(None, id="message-driven"), pytest.param(1, id="sequential")]
FILES = ["agent-policies/cost_policy.yaml", "agent-roles/analyst_role.yaml", "agent-roles/vector_reader_role.yaml",
         "tool-permissions/vector_db_invoke_permission.yaml", "tool-permissions/web_search_invoke_permission.yaml",
         "tools/vector_db_tool.yaml", "tools/web_search_tool.yaml", "memories/research_memory.yaml",
         "agents/planner_agent.yaml", "agents/writer_agent.yaml", "agents/research_agent_governed.yaml",
         "agents/research_agent_governed_allow.yaml", "agent-systems/report_system_governed.yaml",
         "agent-systems/report_system_governed_allow.yaml"]
# The mock model calls the tool the topic names (upstream's mock: the "vector" keyword), so the
# research agent calls vector_db, the tool the examples are about.
TOPIC = "AI startups, from vector_db"


async def _load(store, url: str) -> None:
    docs = [d for f in FILES for d in read(UPSTREAM / f)]
    await apply(store, docs, tool_url=url)
    await store.upsert(mock_endpoint())


@pytest.mark.parametrize("parallel", MODES)
async def test_vector_db_without_the_role_is_denied_and_never_reached(parallel):
    store = MemoryStore()
    with ToolServer().running() as server:
        await _load(store, server.url)
        done = await run_task(store, task("weekly-report-governed", "report-system-governed", TOPIC),
                              parallel=parallel)
    status = done["status"]
    assert status["phase"] == "Failed", status.get("lastError")
    assert status["errorCode"] == "tool_permission_denied"
    assert ("tool permission denied: agent=research-agent-governed step=1 tool=vector_db error=policy permission "
            "denied for tool=vector_db rule=vector-db-invoke required=tool:vector_db:invoke") in status["lastError"]
    assert server.calls == []  # the denied call never reached the tool
    denial = next(r for r in status["trace"] if r["type"] == "tool_permission_denied")
    assert denial["error_code"] == "tool_permission_denied" and denial["tool"] == "vector_db"
    assert denial["error_reason"] == "ToolPermission/vector-db-invoke"
    assert status["history"][-1]["type"] == "failed" and status["history"][-1]["code"] == "tool_permission_denied"
    (record,) = await store.list_audit(task="weekly-report-governed", decision="denied")
    assert (record["code"], record["subject"], record["agent"], record["rule"]) == (
        "tool_permission_denied", "vector_db", "research-agent-governed", "ToolPermission/vector-db-invoke")
    assert "sk-" not in str(await store.list_audit())


@pytest.mark.parametrize("parallel", MODES)
async def test_the_allow_variant_reaches_vector_db_and_succeeds(parallel):
    store = MemoryStore()
    with ToolServer().running() as server:
        await _load(store, server.url)
        done = await run_task(store, task("weekly-report-governed-allow", "report-system-governed-allow", TOPIC),
                              parallel=parallel)
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert server.paths() == ["/vector_db"]
    assert any(r["type"] == "tool_call" and r["tool"] == "vector_db" for r in status["trace"])
    assert await store.list_audit(decision="denied") == []


async def test_web_search_needs_both_analyst_permissions():
    """The caveat of governance.md section 8: the global web_search rule also binds an agent
    whose role lacks ``capability:web.read``."""
    store = MemoryStore()
    with ToolServer().running() as server:
        await _load(store, server.url)
        role = read(UPSTREAM / "agent-roles/analyst_role.yaml")[0]
        role["spec"]["permissions"] = ["tool:web-search:invoke"]  # normalized to tool:web_search:invoke
        await apply(store, [role])
        done = await run_task(store, task("ws", "report-system-governed-allow", "AI startups, web_search"))
    assert done["status"]["errorCode"] == "tool_permission_denied"
    assert "rule=web-search-invoke required=capability:web.read" in done["status"]["lastError"]
    assert server.calls == []
