"""MCP servers against real MCP servers started here: the SDK fixture (tests/mcp_fixture_server.py)
over stdio and streamable HTTP, and the published @modelcontextprotocol/server-everything over stdio.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mcp_sync import McpSync, generated_tool_name, sync_server
from orloj_ray.engine.resolve import resolve_task
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.config import ServerConfig
from orloj_ray.mcp import MCP_CONNECTION_KEY, McpPolicy, McpToolRunner
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from orloj_ray.store.base import LabelSelector
from orloj_ray.tools import ToolCallContext, ToolError, default_tool_runner
from tests_support import free_port

REPO = Path(__file__).resolve().parent.parent
FIXTURE = str(REPO / "tests" / "mcp_fixture_server.py")
NPM_CACHE = REPO / ".cache" / "npm"
EVERYTHING = NPM_CACHE / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
CTX = ToolCallContext("default", "t", "a", "default/t/a1/s001/tool")
LOCAL_CONFIG = ServerConfig(mcp_commands=(sys.executable, "node"), tool_allowed_networks=("127.0.0.0/8",))
"""What an operator of these tests allows: the fixtures' interpreters, MCP servers on loopback."""
LOCAL = McpPolicy.from_config(LOCAL_CONFIG)


def server_doc(name: str, **spec) -> dict:
    return normalize({"apiVersion": "orloj.dev/v1", "kind": "McpServer",
                      "metadata": {"name": name, "namespace": "default"}, "spec": spec}, kind="McpServer")


def stdio_fixture(name: str = "fixture", include: list[str] | None = None) -> dict:
    spec = {"transport": "stdio", "command": sys.executable, "args": [FIXTURE, "stdio"]}
    if include is not None:
        spec["tool_filter"] = {"include": include}
    return server_doc(name, **spec)


async def synced(store, doc: dict, policy: McpPolicy | None = LOCAL) -> dict:
    stored = await store.create(doc)
    return await sync_server(store, stored, timeout_s=30, policy=policy)


async def tool_with_connection(store, name: str) -> dict:
    """The tool as task resolution hands it to the runner (connection attached)."""
    from orloj_ray.engine.resolve import _with_mcp_connection

    return await _with_mcp_connection(store, await store.get("Tool", "default", name))


@pytest.fixture(scope="module")
def http_fixture():
    """The SDK fixture over streamable HTTP on a free loopback port, requiring a bearer token."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "FIXTURE_TOKEN": "fixture-token-123"}
    proc = subprocess.Popen([sys.executable, FIXTURE, "http", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"fixture http server exited: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("fixture http server did not listen within 20s")
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def everything_server() -> Path:
    """@modelcontextprotocol/server-everything from the npm registry, installed once into .cache/npm."""
    if not EVERYTHING.exists():
        npm = shutil.which("npm")
        assert npm, "npm is required to install @modelcontextprotocol/server-everything"
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE),
                        "@modelcontextprotocol/server-everything"], check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
    assert EVERYTHING.exists()
    return EVERYTHING


# --- sync -------------------------------------------------------------------------------------

async def test_sync_creates_filtered_tools_with_upstream_names_labels_and_status():
    store = MemoryStore()
    server = await synced(store, stdio_fixture(include=["add_numbers", "text.upper", "whoami"]))
    status = server["status"]
    assert status["phase"] == "Ready", status
    assert set(status["discoveredTools"]) == {"add_numbers", "text.upper", "echo_text", "whoami", "always_fails",
                                              "slow", "crash", "environment", "read_file"}
    assert status["generatedTools"] == ["fixture--add-numbers", "fixture--text-upper", "fixture--whoami"]
    assert status["toolCount"] == 3 and status["lastSyncedAt"].endswith("Z") and "lastError" not in status
    tools = (await store.list("Tool", "default")).items
    assert [t["metadata"]["name"] for t in tools] == ["fixture--add-numbers", "fixture--text-upper",
                                                     "fixture--whoami"]
    add = tools[0]
    assert add["metadata"]["labels"] == {"orloj.dev/mcp-server": "fixture", "orloj.dev/mcp-generated": "true"}
    assert add["spec"]["type"] == "mcp" and add["spec"]["mcp_server_ref"] == "fixture"
    assert add["spec"]["mcp_tool_name"] == "add_numbers" and add["spec"]["description"] == "Add two integers."
    assert set(add["spec"]["input_schema"]["properties"]) == {"a", "b"}
    assert generated_tool_name("srv", "a_b.c") == "srv--a-b-c"


async def test_changed_filter_deletes_tools_that_disappeared_and_deleting_the_server_deletes_all():
    store = MemoryStore()
    server = await synced(store, stdio_fixture(include=["add_numbers", "whoami"]))
    doc = stdio_fixture(include=["whoami"])
    updated = await store.update(doc, server["metadata"]["resourceVersion"])
    assert updated["metadata"]["generation"] == 2
    sync = McpSync(store, policy=LOCAL)
    assert sync.kick(updated) is True
    await sync.wait_idle()
    server = await store.get("McpServer", "default", "fixture")
    assert server["status"]["generatedTools"] == ["fixture--whoami"] and server["status"]["observedGeneration"] == 2
    assert [t["metadata"]["name"] for t in (await store.list("Tool", "default")).items] == ["fixture--whoami"]
    assert sync.kick(server) is False  # Ready at its generation: nothing to do
    await store.create(normalize({"apiVersion": "orloj.dev/v1", "kind": "Tool",
                                  "metadata": {"name": "hand-made", "namespace": "default"},
                                  "spec": {"endpoint": "http://example.invalid/x"}}, kind="Tool"))
    await store.delete("McpServer", "default", "fixture")
    await sync.server_deleted("default", "fixture")
    assert [t["metadata"]["name"] for t in (await store.list("Tool", "default")).items] == ["hand-made"]


async def test_unreachable_servers_end_in_error_with_the_reason():
    store = MemoryStore()
    gone = REPO / ".cache" / "mcp-server-that-went-away"  # allowed once, no longer there
    missing = await synced(store, server_doc("ghost", transport="stdio", command=str(gone)),
                           McpPolicy(commands=(str(gone),)))
    assert missing["status"]["phase"] == "Error"
    assert f'command "{gone}" is not one of the programs this server allows' in missing["status"]["lastError"]
    port = free_port()  # nothing listens there
    down = await synced(store, server_doc("down", transport="http", endpoint=f"http://127.0.0.1:{port}/mcp"))
    assert down["status"]["phase"] == "Error" and 'mcp server "down"' in down["status"]["lastError"]
    secretless = await synced(store, server_doc("needs-secret", transport="stdio", command=sys.executable,
                                                env=[{"name": "TOKEN", "secretRef": "mcp-token"}]))
    assert secretless["status"]["phase"] == "Error"
    assert 'secret "default/mcp-token"' in secretless["status"]["lastError"]
    assert not (await store.list("Tool", "default")).items


# --- calls ------------------------------------------------------------------------------------

async def test_runner_calls_stdio_tools_reuses_the_session_and_reconnects_after_a_crash():
    store = MemoryStore()
    await synced(store, stdio_fixture())
    runner = McpToolRunner(LOCAL)
    try:
        add = await tool_with_connection(store, "fixture--add-numbers")
        assert await runner.call(add, json.dumps({"a": 2, "b": 40}), CTX) == "42"
        upper = await tool_with_connection(store, "fixture--text-upper")
        assert await runner.call(upper, '{"text": "hello mcp"}', CTX) == "HELLO MCP"
        whoami = await tool_with_connection(store, "fixture--whoami")
        first = await runner.call(whoami, "", CTX)
        assert await runner.call(whoami, "{}", CTX) == first  # one session (one process) per server
        with pytest.raises(ToolError) as failed:
            await runner.call(await tool_with_connection(store, "fixture--always-fails"), "{}", CTX)
        assert failed.value.code == "execution_failed" and failed.value.retryable
        assert "this tool always fails" in failed.value.message
        with pytest.raises(ToolError) as crashed:
            await runner.call(await tool_with_connection(store, "fixture--crash"), "{}", CTX)
        assert crashed.value.code == "execution_failed" and crashed.value.retryable
        second = await runner.call(whoami, "{}", CTX)  # a new process behind a new session
        assert second.isdigit() and second != first
    finally:
        await runner.aclose()


async def test_calls_are_bounded_by_the_tool_timeout():
    store = MemoryStore()
    await synced(store, stdio_fixture(include=["slow"]))
    runner = McpToolRunner(LOCAL)
    try:
        slow = await tool_with_connection(store, "fixture--slow")
        slow["spec"]["runtime"] = {**slow["spec"].get("runtime", {}), "timeout": "1s"}
        started = time.monotonic()
        with pytest.raises(ToolError) as exc:
            await runner.call(slow, '{"seconds": 30}', CTX)
        assert exc.value.code == "timeout" and exc.value.retryable and time.monotonic() - started < 10
        assert await runner.call(slow, '{"seconds": 0}', CTX) == "done"  # the session is still usable
    finally:
        await runner.aclose()


async def test_missing_server_is_a_clear_error_at_call_time():
    store = MemoryStore()
    tool = normalize({"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": {"name": "orphan"},
                      "spec": {"type": "mcp", "mcp_server_ref": "nowhere", "mcp_tool_name": "x"}}, kind="Tool")
    with pytest.raises(ToolError) as exc:
        await McpToolRunner().call(tool, "{}", CTX)
    assert exc.value.code == "runtime_policy_invalid" and 'mcp server "nowhere" not found' in exc.value.message
    stored = await store.create(tool)
    from orloj_ray.engine.resolve import _with_mcp_connection

    assert MCP_CONNECTION_KEY not in await _with_mcp_connection(store, stored)


async def test_streamable_http_with_bearer_auth_from_a_secret(http_fixture):
    store = MemoryStore()
    await store.create(normalize({"apiVersion": "orloj.dev/v1", "kind": "Secret",
                                  "metadata": {"name": "fixture-token"},
                                  "spec": {"data": {"value": base64.b64encode(b"fixture-token-123").decode()}}},
                                 kind="Secret"))
    unauthorized = await synced(store, server_doc("http-noauth", transport="http", endpoint=http_fixture))
    assert unauthorized["status"]["phase"] == "Error"
    server = await synced(store, server_doc("http-fixture", transport="http", endpoint=http_fixture,
                                            auth={"secretRef": "fixture-token"},
                                            tool_filter={"include": ["add_numbers", "text.upper"]}))
    assert server["status"]["phase"] == "Ready", server["status"]
    assert server["status"]["generatedTools"] == ["http-fixture--add-numbers", "http-fixture--text-upper"]
    tool = await tool_with_connection(store, "http-fixture--add-numbers")
    assert "fixture-token-123" not in repr(tool[MCP_CONNECTION_KEY])
    runner = McpToolRunner(LOCAL)
    try:
        assert await runner.call(tool, '{"a": 20, "b": 22}', CTX) == "42"
        upper = await tool_with_connection(store, "http-fixture--text-upper")
        assert await runner.call(upper, '{"text": "over http"}', CTX) == "OVER HTTP"
    finally:
        await runner.aclose()


async def test_published_server_everything_over_stdio(everything_server):
    store = MemoryStore()
    server = await synced(store, server_doc("everything", transport="stdio", command="node",
                                            args=[str(everything_server), "stdio"],
                                            tool_filter={"include": ["echo", "get-sum"]}))
    assert server["status"]["phase"] == "Ready", server["status"]
    assert {"echo", "get-sum"} <= set(server["status"]["discoveredTools"])
    assert len(server["status"]["discoveredTools"]) > 2
    assert server["status"]["generatedTools"] == ["everything--echo", "everything--get-sum"]
    selector = LabelSelector({"orloj.dev/mcp-server": "everything"})
    assert len((await store.list("Tool", "default", selector)).items) == 2
    runner = McpToolRunner(LOCAL)
    try:
        echo = await tool_with_connection(store, "everything--echo")
        assert await runner.call(echo, '{"message": "hello from orloj"}', CTX) == "Echo: hello from orloj"
        total = await tool_with_connection(store, "everything--get-sum")
        assert await runner.call(total, '{"a": 2, "b": 3}', CTX) == "The sum of 2 and 3 is 5."
    finally:
        await runner.aclose()


# --- end to end -------------------------------------------------------------------------------

def manifests(tool: str) -> list[dict]:
    docs = [
        {"kind": "ModelEndpoint", "metadata": {"name": "mock"}, "spec": {"provider": "mock", "default_model": "m"}},
        {"kind": "Agent", "metadata": {"name": "mcp-agent"},
         "spec": {"model_ref": "mock", "prompt": "You echo things.", "tools": [tool]}},
        {"kind": "AgentSystem", "metadata": {"name": "mcp-system"},
         "spec": {"agents": ["mcp-agent"], "graph": {}}},
        {"kind": "Task", "metadata": {"name": "mcp-task"},
         "spec": {"system": "mcp-system", "input": {"topic": "ping through MCP"}}},
    ]
    return [normalize({"apiVersion": "orloj.dev/v1", **d, "metadata": {**d["metadata"], "namespace": "default"}},
                      kind=d["kind"]) for d in docs]


async def wait_for(store, kind: str, name: str, phases: tuple[str, ...], timeout: float = 30.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            obj = await store.get(kind, "default", name)
            if (obj.get("status") or {}).get("phase") in phases:
                return obj
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_agent_calls_an_mcp_tool_in_a_task(transport, http_fixture):
    store = MemoryStore()
    if transport == "stdio":
        doc = stdio_fixture(include=["echo_text"])
    else:
        await store.create(normalize({"apiVersion": "orloj.dev/v1", "kind": "Secret",
                                      "metadata": {"name": "fixture-token"},
                                      "spec": {"stringData": {"value": "fixture-token-123"}}}, kind="Secret"))
        doc = server_doc("fixture", transport="http", endpoint=http_fixture, auth={"secretRef": "fixture-token"},
                         tool_filter={"include": ["echo_text"]})
    runtime = LocalAgentRuntime(tools=default_tool_runner(LOCAL_CONFIG))  # the stock dispatcher: mcp is there
    controller = Controller(store, runtime, worker="test-worker", mcp_policy=LOCAL)
    loop = asyncio.create_task(controller.run())
    try:
        await store.create(doc)  # the controller syncs it in the background
        server = await wait_for(store, "McpServer", "fixture", ("Ready", "Error"))
        assert server["status"]["phase"] == "Ready", server["status"]
        tool = await wait_for(store, "Tool", "fixture--echo-text", ("Ready",))
        assert tool["spec"]["type"] == "mcp"
        for obj in manifests("fixture--echo-text"):
            await store.create(obj)
        task = await wait_for(store, "Task", "mcp-task", ("Succeeded", "Failed", "DeadLetter"))
    finally:
        controller.stop()
        await loop
    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    calls = [row for row in status["trace"] if row.get("type") == "tool_call"]
    assert len(calls) == 1 and calls[0]["tool"] == "fixture--echo-text"
    assert calls[0]["output"] == "fixture echo: ping through MCP"
    assert "fixture echo: ping through MCP" in status["output"]["final_output"]


async def test_resolution_attaches_the_connection_without_writing_it_back():
    store = MemoryStore()
    await synced(store, stdio_fixture(include=["echo_text"]))
    for obj in manifests("fixture--echo-text"):
        await store.create(obj)
    resolved = await resolve_task(store, await store.get("Task", "default", "mcp-task"))
    (tool,) = resolved.tools["mcp-agent"]
    assert tool[MCP_CONNECTION_KEY].command == sys.executable
    assert MCP_CONNECTION_KEY not in await store.get("Tool", "default", "fixture--echo-text")


# --- what the operator allows (orloj_ray/mcp/policy.py) -------------------------------------------

async def test_a_stdio_command_outside_the_allow_list_goes_to_error_and_never_runs(tmp_path):
    store = MemoryStore()
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    cases = {"by-path": str(script), "shell": "bash", "relative": "./evil.sh", "lookalike": str(tmp_path / "python3")}
    (tmp_path / "python3").symlink_to(script)  # named like an allowed program, but another one
    for name, command in cases.items():
        server = await synced(store, server_doc(name, transport="stdio", command=command, args=["-c", "true"]),
                              McpPolicy(commands=("python3",)))
        status = server["status"]
        assert status["phase"] == "Error", (name, status)
        assert f'command "{command}"' in status["lastError"] and "(allowed: python3)" in status["lastError"]
        assert "ORLOJ_MCP_COMMANDS" in status["lastError"]
    default = await synced(store, stdio_fixture("default-policy"), McpPolicy())  # nothing configured
    assert default["status"]["phase"] == "Error" and "(allowed: none)" in default["status"]["lastError"]
    assert not marker.exists() and not (await store.list("Tool", "default")).items
    # a call through a runner with the default policy is refused the same way, with a code
    await synced(store, stdio_fixture("allowed", include=["whoami"]))
    tool = await tool_with_connection(store, "allowed--whoami")
    with pytest.raises(ToolError) as refused:
        await McpToolRunner().call(tool, "{}", CTX)
    assert refused.value.code == "mcp_command_not_allowed" and not refused.value.retryable


async def test_http_mcp_endpoints_are_behind_the_tools_egress_guard():
    store = MemoryStore()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    try:
        for name, url in (("loopback", endpoint), ("metadata", "http://169.254.169.254/mcp"),
                          ("private", "http://10.1.2.3/mcp")):
            server = await synced(store, server_doc(name, transport="http", endpoint=url), McpPolicy())
            assert server["status"]["phase"] == "Error", server["status"]
            assert "refused" in server["status"]["lastError"] and "--tool-allowed-networks" in server["status"][
                "lastError"]
        with pytest.raises(OSError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    tool = normalize({"apiVersion": "orloj.dev/v1", "kind": "Tool", "metadata": {"name": "remote"},
                      "spec": {"type": "mcp", "mcp_server_ref": "loopback", "mcp_tool_name": "x"}}, kind="Tool")
    from orloj_ray.mcp import McpConnection

    tool[MCP_CONNECTION_KEY] = McpConnection("default", "loopback", "http", endpoint=endpoint)
    with pytest.raises(ToolError) as refused:
        await McpToolRunner().call(tool, "{}", CTX)
    assert refused.value.code == "tool_egress_denied" and 'mcp server "loopback"' in refused.value.message


async def test_a_stdio_server_gets_a_clean_environment_a_private_directory_and_limits(monkeypatch):
    monkeypatch.setenv("ORLOJ_SECRET_CANARY", "canary-not-for-mcp")
    store = MemoryStore()
    doc = stdio_fixture(include=["environment"])
    doc["spec"]["env"] = [{"name": "GIVEN", "value": "by-the-manifest"}]
    await synced(store, doc)
    runner = McpToolRunner(LOCAL)
    try:
        seen = json.loads(await runner.call(await tool_with_connection(store, "fixture--environment"), "{}", CTX))
    finally:
        await runner.aclose()
    assert seen["canary"] == "" and "ORLOJ_SECRET_CANARY" not in seen["env"] and "GIVEN" in seen["env"]
    assert set(seen["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "GIVEN", "LOGNAME", "SHELL", "TERM", "USER",
                                "PWD", "LC_CTYPE"}, seen["env"]
    assert seen["cwd"] == seen["home"] and Path(seen["cwd"]).name.startswith("orloj-mcp-")
    assert seen["data"] == 1024 ** 3 and seen["nofile"] == 256
    assert not Path(seen["cwd"]).exists()  # removed with the session


async def test_inside_bubblewrap_a_stdio_server_cannot_read_the_servers_files(monkeypatch, tmp_path, bubblewrap):
    monkeypatch.setenv("PATH", f"{bubblewrap}:{os.environ['PATH']}")
    secret = tmp_path / "server-secret.txt"
    secret.write_text("canary-file-for-mcp")
    policy = McpPolicy(commands=(sys.executable,), guard=LOCAL.guard,
                       exec_paths=(sys.prefix, sys.base_prefix, str(REPO / "tests")))  # the fixture's interpreter
    store = MemoryStore()
    server = await synced(store, stdio_fixture(include=["read_file", "environment"]), policy)
    assert server["status"]["phase"] == "Ready", server["status"]
    runner = McpToolRunner(policy)
    try:
        read = await tool_with_connection(store, "fixture--read-file")
        assert await runner.call(read, json.dumps({"path": str(secret)}), CTX) == "refused: FileNotFoundError"
        assert (await runner.call(read, json.dumps({"path": "/etc/hostname"}), CTX)).startswith("refused")
        assert (await runner.call(read, json.dumps({"path": "/etc/resolv.conf"}), CTX)).startswith("read")
    finally:
        await runner.aclose()


def test_the_allow_list_is_an_operator_setting():
    config = ServerConfig.from_env({"ORLOJ_MCP_COMMANDS": " npx, uvx ,"}, tool_allowed_networks="10.0.0.0/8")
    policy = McpPolicy.from_config(config)
    assert policy.commands == ("npx", "uvx") and config.describe()["mcp_commands"] == ["npx", "uvx"]
    assert config.to_env()["ORLOJ_MCP_COMMANDS"] == "npx,uvx"
    assert McpPolicy.from_config(ServerConfig()).commands == ()  # empty by default: no stdio server starts


async def test_the_connect_timeout_is_upstreams_30s_and_an_mcpserver_may_set_its_own():
    from orloj_ray.mcp.connection import connection_from_server
    from orloj_ray.resources import normalize

    async def no_secrets(ref):
        raise LookupError(ref)

    def server(**spec):
        return normalize({"apiVersion": "orloj.dev/v1", "kind": "McpServer", "metadata": {"name": "slow-npx"},
                          "spec": {"transport": "stdio", "command": "npx", **spec}})

    assert (await connection_from_server(server(), no_secrets)).connect_timeout_s == 30.0
    assert (await connection_from_server(server(connect_timeout="2m"), no_secrets)).connect_timeout_s == 120.0
    with pytest.raises(Exception, match="spec.connect_timeout"):
        server(connect_timeout="soon")
