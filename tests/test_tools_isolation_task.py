"""Sandboxed tools misbehaving inside a real task: one sleeps past its timeout, one reaches for
the server's environment, one allocates past its memory limit. Each call ends with a coded
tool error in the trace, the agent goes on with the error as the tool's result, and the next
agent's step runs: the task succeeds."""

from __future__ import annotations

import json
import sys
import textwrap

from governance_support import apply, mock_endpoint, run_task
from orloj_ray.config import ServerConfig
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.store import MemoryStore
from orloj_ray.tools import default_tool_runner

PROGRAMS = {
    "sleepy": "import time\ntime.sleep(30)\n",
    "snoop": "import os, json\nprint(json.dumps({'status': 'ok', 'output': os.environ['ORLOJ_SECRET_CANARY']}))\n",
    "hog": "block = bytearray(1024 * 1024 * 1024)\nprint(len(block))\n",
}
AGENTS = ["iso-a", "iso-b", "iso-c", "iso-d"]


def _write(directory, name: str, body: str) -> str:
    path = directory / f"{name}.py"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


async def test_misbehaving_sandboxed_tools_fail_cleanly_and_the_next_step_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ORLOJ_SECRET_CANARY", "canary-value-not-for-tools")
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    docs = [mock_endpoint()]
    for name, body in PROGRAMS.items():
        docs.append({"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": {"name": name},
                     "spec": {"type": "http", "endpoint": f"exec:{_write(tools_dir, name, body)}",
                              "runtime": {"isolation_mode": "sandboxed", "timeout": "1s"}}})
    for agent, tool in zip(AGENTS, [*PROGRAMS, None]):
        spec = {"model_ref": "openai-default", "prompt": f"You are {agent}.", "limits": {"max_steps": 3}}
        if tool:
            spec["tools"] = [tool]
        docs.append({"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": agent}, "spec": spec})
    docs.append({"apiVersion": "orloj.dev/v1", "kind": "AgentSystem", "metadata": {"name": "iso-system"},
                 "spec": {"agents": AGENTS, "graph": {a: {"next": b} for a, b in zip(AGENTS, AGENTS[1:])}}})
    store = MemoryStore()
    await apply(store, docs)
    runtime = LocalAgentRuntime(tools=default_tool_runner(ServerConfig(tool_exec_paths=(str(tools_dir),))))
    task = await run_task(store, {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": "iso-task"},
                                  "spec": {"system": "iso-system", "input": {"topic": "isolation"}}},
                          runtime_=runtime, timeout=60)
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    errors = {r["tool"]: r for r in status["trace"] if r["type"] == "tool_error"}
    assert set(errors) == set(PROGRAMS)
    assert all(r.get("error_code") for r in errors.values()), errors
    assert "timed out" in errors["sleepy"]["message"]
    assert errors["hog"]["error_code"] == "resource_limit"
    assert [r["agent"] for r in status["trace"] if r["type"] == "agent_end"] == AGENTS  # every next step ran
    assert "canary-value-not-for-tools" not in json.dumps(task)
