"""Sandboxed tools misbehaving inside a real task: one sleeps past its timeout, one reaches for
the server's environment, one allocates past its memory limit. Each call ends with a coded
tool error in the trace, the agent goes on with the error as the tool's result, and the next
agent's step runs: the task succeeds."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

from governance_support import apply, mock_endpoint, run_task
from orloj_ray.config import ServerConfig
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.store import MemoryStore
from orloj_ray.tools import default_tool_runner

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
"""Programs run by a system interpreter: inside bubblewrap the sandbox sees the system directories only."""

PROGRAMS = {
    "sleepy": "import time\ntime.sleep(30)\n",
    "snoop": "import os, json\nprint(json.dumps({'status': 'ok', 'output': os.environ['ORLOJ_SECRET_CANARY']}))\n",
    "hog": "block = bytearray(1024 * 1024 * 1024)\nprint(len(block))\n",
}
AGENTS = ["iso-a", "iso-b", "iso-c", "iso-d"]


def _write(directory, name: str, body: str) -> str:
    path = directory / f"{name}.py"
    path.write_text(f"#!{SYSTEM_PYTHON}\n" + textwrap.dedent(body))
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


PROBES = {
    # each reports what it could reach; a sandbox that holds reports nothing of the server's
    "envprobe": """
        import json, os
        print(json.dumps({"status": "ok", "output": {"result": "env: " + ",".join(sorted(os.environ))}}))
    """,
    "fileprobe": """
        import json, sys
        seen = []
        for path in sys.argv[1:]:
            try:
                seen.append(path + "=" + open(path).read())
            except OSError as exc:
                seen.append(path + " refused: " + type(exc).__name__)
        print(json.dumps({"status": "ok", "output": {"result": " | ".join(seen)}}))
    """,
    "writeprobe": """
        import json, os, sys
        out = []
        for path in [*sys.argv[1:], os.path.join(os.getcwd(), "mine.txt")]:
            try:
                open(path, "w").write("written by the tool")
                out.append(path + " written")
            except OSError as exc:
                out.append(path + " refused: " + type(exc).__name__)
        print(json.dumps({"status": "ok", "output": {"result": " | ".join(out)}}))
    """,
    "netprobe": """
        import json, socket, sys
        try:
            socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
            result = "connected"
        except OSError as exc:
            result = "no network: " + type(exc).__name__
        print(json.dumps({"status": "ok", "output": {"result": result}}))
    """,
}


async def test_a_sandboxed_tool_sees_nothing_of_the_server_inside_a_task(tmp_path, monkeypatch, bubblewrap,
                                                                          orloj_home):
    """Inside bubblewrap a sandboxed tool gets none of the server's environment, cannot read the
    server's files (a secret file beside the tools, the server's key file, /etc/shadow), writes
    only in its own directory, and has no network: the loopback server it dials is never reached."""
    import socket
    import threading

    monkeypatch.setenv("PATH", f"{bubblewrap}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ORLOJ_SECRET_CANARY", "canary-env-value-0451")
    secret_file = tmp_path / "server-secret.txt"
    secret_file.write_text("canary-file-value-0452")
    key_file = orloj_home / "secret.key"
    key_file.write_text("canary-key-file-0453")
    outside = tmp_path / "outside.txt"
    in_repo = Path(__file__).resolve().parent / f"written-by-a-tool-{os.getpid()}.txt"
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted = []

    def accept():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    tools_dir = tmp_path / "tools"
    tools_dir.mkdir()
    args = {"envprobe": "", "fileprobe": f"{secret_file} {key_file} /etc/shadow", "writeprobe": f"{outside} {in_repo}",
            "netprobe": str(listener.getsockname()[1])}
    docs = [mock_endpoint()]
    for name, body in PROBES.items():
        docs.append({"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": {"name": name},
                     "spec": {"type": "http", "endpoint": f"exec:{_write(tools_dir, name, body)} {args[name]}",
                              "runtime": {"isolation_mode": "sandboxed", "timeout": "10s"}}})
    agents = [f"probe-{name}" for name in PROBES]  # the mock model calls its agent's one tool
    for agent, name in zip(agents, PROBES):
        docs.append({"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": agent},
                     "spec": {"model_ref": "openai-default", "prompt": "probe", "tools": [name],
                              "limits": {"max_steps": 3}}})
    docs.append({"apiVersion": "orloj.dev/v1", "kind": "AgentSystem", "metadata": {"name": "probe-system"},
                 "spec": {"agents": agents, "graph": {a: {"next": b} for a, b in zip(agents, agents[1:])}}})
    store = MemoryStore()
    await apply(store, docs)
    runtime = LocalAgentRuntime(tools=default_tool_runner(ServerConfig(tool_exec_paths=(str(tools_dir),))))
    try:
        task = await run_task(store, {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": "probe"},
                                      "spec": {"system": "probe-system", "input": {"topic": "isolation"}}},
                              runtime_=runtime, timeout=90)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    out = {r["tool"]: r["output"] for r in status["trace"] if r["type"] == "tool_call"}
    assert set(out) == set(PROBES), [r for r in status["trace"] if r["type"] == "tool_error"]
    env = out["envprobe"].removeprefix("env: ").split(",")
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PWD"}, env  # nothing of the server's environment
    assert f"{secret_file} refused" in out["fileprobe"] and f"{key_file} refused" in out["fileprobe"]
    assert "/etc/shadow refused" in out["fileprobe"]
    assert f"{in_repo} refused" in out["writeprobe"] and "mine.txt written" in out["writeprobe"]
    assert not outside.exists() and not in_repo.exists()  # /tmp in the sandbox is its own, and discarded
    assert out["netprobe"].startswith("no network") and accepted == []
    text = json.dumps(task)
    for canary in ("canary-env-value-0451", "canary-file-value-0452", "canary-key-file-0453"):
        assert canary not in text
