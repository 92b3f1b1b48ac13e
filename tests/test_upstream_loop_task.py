"""`examples/resources/tasks/manager_research_loop_task.yaml` of upstream succeeds: a two-agent
cycle (manager <-> research) bounded by ``max_turns: 6``, the research agent calling its tools
(moved to a loopback tool server) and its memory, directly and through the message log."""

from __future__ import annotations

import pytest

from governance_support import UPSTREAM, ToolServer, apply, mock_endpoint, read, run_task
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.messaging import MemoryLog
from orloj_ray.store import MemoryStore

PARTS = ["agents/manager_agent.yaml", "agents/research_agent.yaml", "agent-systems/manager_research_loop_system.yaml",
         "tools/web_search_tool.yaml", "tools/vector_db_tool.yaml", "memories/research_memory.yaml",
         "secrets/search_api_key.yaml"]


@pytest.mark.parametrize("via", ["direct", "log"])
async def test_manager_research_loop_task_succeeds(via):
    store = MemoryStore()
    tools = ToolServer()
    with tools.running():
        docs = [d for part in PARTS for d in read(UPSTREAM / part)] + [mock_endpoint()]
        await apply(store, docs, tool_url=tools.url)
        (task_doc,) = read(UPSTREAM / "tasks/manager_research_loop_task.yaml")
        mailbox = Mailbox(MemoryLog(), store) if via == "log" else None
        task = await run_task(store, task_doc, mailbox=mailbox, timeout=60)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    ends = [r["agent"] for r in status["trace"] if r["type"] == "agent_end"]
    assert len(ends) == 6 and ends[0] == "manager-agent"  # max_turns bounds the loop
    assert set(ends) == {"manager-agent", "research-agent"}
    assert tools.paths() and set(tools.paths()) <= {"/web_search", "/vector_db"}
    assert len({c["key"] for c in tools.calls}) == len(tools.calls)  # every call its own step key
    assert status["output"]["final_output"]
