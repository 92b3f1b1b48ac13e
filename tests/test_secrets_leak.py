"""A full in-process run with a Secret used for tool auth: the secret reaches the tool (as its
Authorization header) and nowhere else: not the task status (trace, messages, output), the
store's events, the TurnResults, or any log record."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging

import pytest

from orloj_ray.config import ServerConfig
from orloj_ray.engine.controller import Controller
from orloj_ray.engine.mailbox import Mailbox
from orloj_ray.messaging import MemoryLog
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.gateway import CompletionReply, ModelGateway, ToolCall, Usage
from orloj_ray.store import MemoryStore
from orloj_ray.tools import HttpToolRunner, ResolvedAuth
from test_tools_http import ToolServer

SECRET = "tok-9f8e7d6c5b4a-s3cr3t"
NS = "default"


class ScriptedModel:
    """Calls every offered tool once, then answers with what the tools returned (as a model
    that repeats tool output would): anything unredacted would surface in the final output."""

    async def complete(self, endpoint, request):
        results = [m for m in request.messages if m.role == "tool"]
        if not results:
            return CompletionReply(tool_calls=[ToolCall(id=f"call-{i}", name=t.name, arguments='{"q": "status"}')
                                               for i, t in enumerate(request.tools)],
                                   usage=Usage(10, 5))
        return CompletionReply(text="tools said: " + " | ".join(m.content for m in results), usage=Usage(20, 10))


class RecordingLog(MemoryLog):
    """The message log, keeping a copy of every envelope appended (what JetStream would store)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.appended = []

    async def append(self, env):
        self.appended.append(repr(env))
        return await super().append(env)


class RecordingRuntime(LocalAgentRuntime):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.results = []

    async def run_turn(self, request):
        result = await super().run_turn(request)
        self.results.append(result)
        return result


def resource(kind: str, name: str, spec: dict, status: dict | None = None) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": kind, "metadata": {"name": name, "namespace": NS},
            "spec": spec, "status": status or {}}


@pytest.mark.parametrize("delivery", ["direct", "log"])
async def test_secret_never_leaves_the_tool_call(caplog, delivery):
    caplog.set_level(logging.DEBUG)
    server = ToolServer()
    server.routes["/echo"] = lambda req: (200, {}, {"status": "ok", "output": {"result": json.dumps(req["headers"])}})
    server.routes["/leak"] = lambda req: (500, {}, f"upstream refused credential {SECRET} "
                                                   f"(header was {req['headers'].get('authorization')})")
    server.routes["/envelope"] = lambda req: (200, {}, {"status": "error", "error": {
        "code": "execution_failed", "message": f"token {SECRET} is not valid here", "retryable": False}})
    try:
        store = MemoryStore()
        auth = {"profile": "bearer", "secretRef": "tool-token"}
        retry = {"retry": {"max_attempts": 2, "backoff": "10ms"}}
        for obj in (
            resource("Secret", "tool-token", {"data": {"value": base64.b64encode(SECRET.encode()).decode()}}),
            resource("ModelEndpoint", "scripted", {"provider": "mock", "default_model": "scripted-1"}),
            resource("Tool", "echo-headers", {"type": "http", "endpoint": server.url("/echo"), "auth": auth}),
            resource("Tool", "leaky", {"type": "http", "endpoint": server.url("/leak"), "auth": auth,
                                       "runtime": retry}),
            resource("Tool", "leaky-envelope", {"type": "http", "endpoint": server.url("/envelope"), "auth": auth}),
            resource("Agent", "ops-agent", {"model_ref": "scripted", "prompt": "use the tools",
                                            "tools": ["echo-headers", "leaky", "leaky-envelope"],
                                            "limits": {"max_steps": 4}}),
            resource("AgentSystem", "ops", {"agents": ["ops-agent"], "graph": {"ops-agent": {}}}),
            resource("Task", "ops-task", {"system": "ops", "input": {"topic": "status"}}, {"phase": "Pending"}),
        ):
            await store.create(obj)
        runtime = RecordingRuntime(ModelGateway({"mock": ScriptedModel()}),
                                   config=ServerConfig(tool_allowed_networks=("127.0.0.0/8",)))
        message_log = RecordingLog(ack_wait_s=5.0)
        mailbox = Mailbox(message_log, store) if delivery == "log" else None
        controller = Controller(store, runtime, worker="secrets-test", mailbox=mailbox)
        loop = asyncio.create_task(controller.run())
        try:
            async with asyncio.timeout(20):
                while (task := await store.get("Task", NS, "ops-task"))["status"].get("phase") not in (
                        "Succeeded", "Failed", "DeadLetter"):
                    await asyncio.sleep(0.02)
        finally:
            controller.stop()
            await loop
    finally:
        server.close()

    status = task["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    # the tools were reached, authenticated with the secret
    calls = {r["path"]: r for r in server.requests}
    assert set(calls) == {"/echo", "/leak", "/envelope"}
    assert all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in server.requests)
    assert len([r for r in server.requests if r["path"] == "/leak"]) == 2  # retried, same key
    # ... and the run recorded their outcomes, masked
    rows = [r for r in status["trace"] if r["type"] in ("tool_call", "tool_error")]
    assert {r["tool"] for r in rows} == {"echo-headers", "leaky", "leaky-envelope"}
    echo = next(r for r in rows if r["tool"] == "echo-headers")
    assert "Bearer [REDACTED]" in echo["output"]
    leak = next(r for r in rows if r["tool"] == "leaky")
    assert leak["error_code"] == "execution_failed" and "[REDACTED]" in leak["message"] and "500" in leak["message"]
    assert "[REDACTED]" in status["output"]["final_output"]

    events = await store.events_after(0, limit=100_000)
    outputs = {
        "task": json.dumps(task, default=str),
        "events": json.dumps([e.to_dict() for e in events if e.kind != "Secret"], default=str),
        "message_log": "\n".join(message_log.appended),
        "turn_results": json.dumps([dataclasses.asdict(r) for r in runtime.results], default=str),
        "logs": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
        "repr": repr(runtime.results) + repr(ResolvedAuth("bearer", "tool-token", secret=SECRET)),
    }
    encoded = base64.b64encode(SECRET.encode()).decode()
    for where, text in outputs.items():
        assert SECRET not in text, f"the secret leaked into {where}"
        assert encoded not in text, f"the base64 secret leaked into {where}"
    assert runtime.results and (delivery == "direct" or message_log.appended)
    # the Secret resource's own events carry it only at rest (base64), never in clear
    assert SECRET not in json.dumps([e.to_dict() for e in events if e.kind == "Secret"], default=str)


async def test_http_runner_errors_never_show_the_secret():
    server = ToolServer()
    server.routes["/x"] = lambda req: (401, {}, f"bad credentials: {req['headers']['authorization']}")
    try:
        from orloj_ray.tools import EgressGuard, ToolCallContext, ToolError, with_auth

        tool = with_auth({"metadata": {"name": "x"}, "spec": {"type": "http", "endpoint": server.url("/x")}},
                         ResolvedAuth("bearer", "tool-token", secret=SECRET))
        runner = HttpToolRunner(guard=EgressGuard(["127.0.0.0/8"]))
        try:
            await runner.call(tool, "{}", ToolCallContext(NS, "t", "a", "k"))
        except ToolError as exc:
            err = exc
        assert err.code == "auth_invalid"
        assert SECRET not in err.message and SECRET not in repr(err) and SECRET not in str(err.__reduce__())
        assert "[REDACTED]" in err.message
    finally:
        server.close()


MODEL_KEY = "sk-echo-7a6b5c4d3e2f1a0b9c8d"


def _echoing_model():
    """An OpenAI-compatible fake that answers with the key it was sent: the first agent ("talk")
    says it, plain and base64, in its text and model name; the second ("listen") asks for a tool
    named by the key, with the key as argument, which governance denies (the denial names it)."""
    from fake_model_servers import FakeServer, openai_text, openai_tool_call

    def respond(rec):
        key = (rec.header("authorization") or "").split(" ", 1)[-1]
        if rec.body["messages"][0]["content"] == "listen":
            return openai_tool_call("call-1", key, {"q": key}, prompt_tokens=3, completion_tokens=2)
        return openai_text(f"my key is {key}; encoded {base64.b64encode(key.encode()).decode()}",
                           prompt_tokens=3, completion_tokens=2, model=f"echo-{key}")

    return FakeServer(respond)


@pytest.mark.parametrize("delivery", ["direct", "log"])
async def test_a_model_that_echoes_its_own_key_leaks_it_nowhere(caplog, delivery):
    """The model endpoint's key comes back in the reply (text, model name, a tool call's name and
    arguments): the task's output, trace, messages, history, events and audit show it masked."""
    caplog.set_level(logging.DEBUG)
    with _echoing_model() as server:
        store = MemoryStore()
        for obj in (
            resource("Secret", "echo-key", {"data": {"value": base64.b64encode(MODEL_KEY.encode()).decode()}}),
            resource("ModelEndpoint", "echo", {"provider": "openai-compatible", "base_url": server.url,
                                               "default_model": "echo-1", "auth": {"secretRef": "echo-key"}}),
            resource("Agent", "talker", {"model_ref": "echo", "prompt": "talk", "limits": {"max_steps": 3}}),
            resource("Agent", "listener", {"model_ref": "echo", "prompt": "listen", "limits": {"max_steps": 3}}),
            resource("AgentSystem", "echo-sys", {"agents": ["talker", "listener"],
                                                 "graph": {"talker": {"next": "listener"}}}),
            resource("AgentPolicy", "audit-all", {"apply_mode": "scoped", "target_systems": ["echo-sys"],
                                                  "audit_log": True}),
            resource("Task", "echo-task", {"system": "echo-sys", "input": {"topic": "keys"}}, {"phase": "Pending"}),
        ):
            await store.create(obj)
        runtime = RecordingRuntime(config=ServerConfig())
        message_log = RecordingLog(ack_wait_s=5.0)
        mailbox = Mailbox(message_log, store) if delivery == "log" else None
        controller = Controller(store, runtime, worker="secrets-test", mailbox=mailbox)
        loop = asyncio.create_task(controller.run())
        try:
            async with asyncio.timeout(20):
                while (task := await store.get("Task", NS, "echo-task"))["status"].get("phase") not in (
                        "Succeeded", "Failed", "DeadLetter"):
                    await asyncio.sleep(0.02)
        finally:
            controller.stop()
            await loop
        assert all(r.header("authorization") == f"Bearer {MODEL_KEY}" for r in server.requests)
        assert len(server.requests) == 2  # one call per agent
        handoff = server.requests[1].raw.decode()  # the listener is handed the talker's output, masked
        assert "my key is [REDACTED]" in handoff and MODEL_KEY not in handoff

    status = task["status"]
    assert status["phase"] == "Failed" and status["errorCode"] == "tool_permission_denied", status
    assert "my key is [REDACTED]" in status["output"]["last_output"]
    assert "tool=[REDACTED]" in status["lastError"]
    events = await store.events_after(0, limit=100_000)
    audit = await store.list_audit()
    assert audit, "the policy asks for an audit trail"
    outputs = {
        "task": json.dumps(task, default=str),
        "events": json.dumps([e.to_dict() for e in events if e.kind != "Secret"], default=str),
        "audit": json.dumps(audit),
        "message_log": "\n".join(message_log.appended),
        "logs": "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records),
    }
    assert delivery == "direct" or message_log.appended
    encoded = base64.b64encode(MODEL_KEY.encode()).decode()
    for where, text in outputs.items():
        assert MODEL_KEY not in text, f"the model key leaked into {where}"
        assert encoded not in text, f"the base64 model key leaked into {where}"


# -- a full run on the real server: every output grepped ------------------------------------------------

RUN_MODEL_KEY = "sk-fullrun-model-91c2d3e4f5a6"
RUN_TOOL_TOKEN = "tok-fullrun-tool-8b7a6c5d4e3f"


def test_a_full_run_on_the_server_shows_no_secret_anywhere(cli_env, ray_cluster, tmp_path):
    """A task on the shared Ray Serve deployment whose model endpoint echoes its key and whose
    tool echoes its bearer token, made and read with the CLI and the API: the task, its trace,
    describe, logs, messages, export, audit, the event stream, and every log file of the Ray
    session (supervisor, agent actors, store, Serve replicas) are grepped for both values, raw
    and base64."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from fake_model_servers import FakeServer, Reply, openai_text, openai_tool_call

    def model(rec):
        key = (rec.header("authorization") or "").split(" ", 1)[-1]
        results = [m for m in rec.body["messages"] if m.get("role") == "tool"]
        if not results:
            return openai_tool_call("call-1", "echo-auth", {"q": key}, prompt_tokens=4, completion_tokens=2)
        return openai_text(f"key {key} / tool said {results[-1]['content']}", prompt_tokens=4, completion_tokens=2,
                           model=f"echo-{key}")

    def tool(rec):
        return Reply(body={"status": "ok", "output": {"result": f"auth was {rec.header('authorization')}"}})

    orloj = [str(Path(sys.executable).parent / "orloj")]

    def run(*args, **kw):
        res = subprocess.run(orloj + list(args), env=cli_env, capture_output=True, text=True, timeout=120, **kw)
        outputs[f"orloj {' '.join(args)}"] = res.stdout + res.stderr
        return res

    outputs: dict[str, str] = {}
    with FakeServer(model) as model_server, FakeServer(tool) as tool_server:
        assert run("create", "secret", "fullrun-model-key", "--from-literal", f"value={RUN_MODEL_KEY}").returncode == 0
        assert run("create", "secret", "fullrun-tool-token", "--from-literal", f"value={RUN_TOOL_TOKEN}").returncode == 0
        manifests = tmp_path / "run.yaml"
        manifests.write_text(f"""
apiVersion: orloj.dev/v1
kind: ModelEndpoint
metadata: {{name: fullrun-echo}}
spec: {{provider: openai-compatible, base_url: "{model_server.url}", default_model: echo-1,
        auth: {{secretRef: fullrun-model-key}}}}
---
apiVersion: orloj.dev/v1
kind: Tool
metadata: {{name: echo-auth}}
spec: {{type: http, endpoint: "{tool_server.url}/echo", auth: {{profile: bearer, secretRef: fullrun-tool-token}}}}
---
apiVersion: orloj.dev/v1
kind: Agent
metadata: {{name: fullrun-agent}}
spec: {{model_ref: fullrun-echo, prompt: "use the tool", tools: [echo-auth], limits: {{max_steps: 3}}}}
---
apiVersion: orloj.dev/v1
kind: AgentPolicy
metadata: {{name: fullrun-audit}}
spec: {{apply_mode: scoped, target_systems: [fullrun-system], audit_log: true}}
---
apiVersion: orloj.dev/v1
kind: AgentSystem
metadata: {{name: fullrun-system}}
spec: {{agents: [fullrun-agent], graph: {{fullrun-agent: {{}}}}}}
---
apiVersion: orloj.dev/v1
kind: Task
metadata: {{name: fullrun-task}}
spec: {{system: fullrun-system, input: {{topic: secrets}}}}
""")
        assert run("apply", "-f", str(manifests)).returncode == 0
        waited = run("wait", "task/fullrun-task", "--for", "condition=Complete", "--timeout", "90s")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert any(r.header("authorization") == f"Bearer {RUN_MODEL_KEY}" for r in model_server.requests)
        assert any(r.header("authorization") == f"Bearer {RUN_TOOL_TOKEN}" for r in tool_server.requests)

    for args in (("get", "task", "fullrun-task", "-o", "yaml"), ("describe", "task", "fullrun-task"),
                 ("trace", "task", "fullrun-task"), ("logs", "task/fullrun-task"), ("messages", "fullrun-task"),
                 ("get", "secrets", "-o", "json"), ("audit", "--task", "fullrun-task", "-o", "json"),
                 ("export", "-o", str(tmp_path / "export.yaml"))):
        run(*args)
    outputs["export file"] = (tmp_path / "export.yaml").read_text()
    assert "fullrun-task" in outputs["export file"]
    server = cli_env["ORLOJ_SERVER"]
    with httpx.Client(base_url=server, timeout=30) as http:
        task = http.get("/v1/tasks/fullrun-task").json()
        assert task["status"]["phase"] == "Succeeded", task["status"].get("lastError")
        assert "key [REDACTED]" in task["status"]["output"]["final_output"]
        for path in ("/v1/tasks/fullrun-task", "/v1/tasks", "/v1/tasks/fullrun-task/logs",
                     "/v1/tasks/fullrun-task/messages", "/v1/secrets", "/v1/audit", "/v1/runtime"):
            outputs[f"GET {path}"] = http.get(path).text
        events, deadline = [], time.monotonic() + 5
        with http.stream("GET", "/v1/events/watch", params={"since": "0"}) as stream:
            for line in stream.iter_lines():
                events.append(line)
                if time.monotonic() > deadline:
                    break
        outputs["GET /v1/events/watch?since=0"] = "\n".join(events)
        assert any("fullrun-task" in line for line in events)
    session = Path(ray_cluster.address_info["session_dir"]) / "logs"
    logs = [p for p in session.rglob("*") if p.is_file()]
    assert any("worker" in p.name for p in logs)
    for path in logs:
        outputs[f"ray log {path.relative_to(session)}"] = path.read_text(errors="replace")
    forms = {}
    for value in (RUN_MODEL_KEY, RUN_TOOL_TOKEN):
        forms[value] = value
        forms[f"base64({value})"] = base64.b64encode(value.encode()).decode()
    leaks = [f"{label} in {where}" for where, text in outputs.items() for label, form in forms.items() if form in text]
    assert not leaks, leaks
