"""CLI and client against a tiny fake orloj-ray: a real HTTP server on 127.0.0.1 in a thread.

The fake keeps objects in a dict and walks each new task through a scripted list of statuses:
one step per GET when polled, or streamed over ``/v1/tasks/watch`` (SSE) when watched.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from orloj_ray.cli.main import main
from orloj_ray.client import Client, WaitTimeout
from orloj_ray.errors import InvalidResource, NotFound

REPO = Path(__file__).resolve().parent.parent
PLURAL_KIND = {"tasks": "Task", "agent-systems": "AgentSystem", "agents": "Agent", "tool-approvals": "ToolApproval",
               "model-endpoints": "ModelEndpoint", "secrets": "Secret"}


def _running(agents_done: list[str]) -> dict:
    trace = [{"timestamp": "2026-03-29T10:00:01.000Z", "type": "task_start", "message": "system=s agents=2"}]
    for a in agents_done:
        trace += [{"timestamp": "2026-03-29T10:00:01.100Z", "type": "agent_start", "agent": a},
                  {"timestamp": "2026-03-29T10:00:01.200Z", "type": "agent_end", "agent": a, "tokens": 12,
                   "latency_ms": 40, "message": "steps=1"}]
    return {"phase": "Running", "attempts": 1, "claimedBy": "w1", "trace": trace}


SCRIPTS = {
    "succeed": [
        _running([]), _running(["planner"]),
        {**_running(["planner", "writer"]), "phase": "Succeeded",
         "output": {"execution_order": "planner -> writer", "agent.1.name": "planner", "agent.1.model": "gpt-4o",
                    "agent.2.name": "writer", "agent.2.model": "gpt-4o", "tokens_used_total": "24"},
         "history": [{"timestamp": "2026-03-29T10:00:02Z", "type": "succeeded", "worker": "w1",
                      "message": "task execution completed successfully"}]},
    ],
    "fail": [_running([]), {**_running(["planner"]), "phase": "Failed", "lastError": "model boom"}],
    "hang": [_running([])],
}


class FakeOrloj:
    def __init__(self, script: str = "succeed", watch: bool = True):
        self.script, self.watch = script, watch
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.steps: dict[str, list[dict]] = {}
        self.requests: list[tuple[str, str]] = []
        self.reject: set[str] = set()
        self.delay_s = 0.0  # added to every POST: a slow server
        self.rv = 0
        self.lock = threading.Lock()

    # -- state
    def put(self, plural: str, obj: dict) -> dict:
        with self.lock:
            self.rv += 1
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", "default")
            meta["resourceVersion"] = str(self.rv)
            obj.setdefault("kind", PLURAL_KIND.get(plural, "Thing"))
            obj.setdefault("status", {"phase": "Pending"})
            self.objects[(plural, meta["namespace"], meta["name"])] = obj
            return obj

    def advance(self, name: str, ns: str) -> dict | None:
        obj = self.objects.get(("tasks", ns, name))
        steps = self.steps.get(name)
        if obj is not None and steps:
            obj = json.loads(json.dumps(obj))
            obj["status"] = steps.pop(0)
            return self.put("tasks", obj)
        return None


def _handler(fake: FakeOrloj):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, code: int, body=None):
            data = b"" if body is None else (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, codename: str, message: str, field: str | None = None):
            err = {"code": codename, "message": message}
            if field:
                err["field"] = field
            self._send(code, {"error": err})

        def _route(self, method: str):
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            parts = [p for p in url.path.split("/") if p]
            fake.requests.append((method, url.path))
            ns = q.get("namespace", "default")
            body = None
            if method in ("POST", "PUT"):
                time.sleep(fake.delay_s)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
            if url.path == "/healthz":
                return self._send(200, {"status": "ok"})
            if url.path == "/v1/runtime":
                return self._send(200, {"ray": {"address": "127.0.0.1:6379", "dashboard_url": "http://127.0.0.1:8265",
                                                "nodes": [{"alive": True, "resources": {"CPU": 8}}]},
                                        "store": "memory", "log": "memory", "mode": "local"})
            if parts[:1] != ["v1"] or len(parts) < 2:
                return self._error(404, "not_found", "no such route")
            plural = parts[1]
            if plural == "events" and parts[2:] == ["watch"]:
                return self._events(q)
            if len(parts) == 3 and parts[2] == "watch" and method == "GET":
                return self._watch(plural, q) if fake.watch else self._error(404, "not_found", "no such route")
            if len(parts) == 2 and method == "GET":
                items = [o for (p, o_ns, _), o in sorted(fake.objects.items()) if p == plural
                         and (not q.get("namespace") or o_ns == q["namespace"])]
                return self._send(200, {"items": items})
            if len(parts) == 2 and method == "POST":
                if body["metadata"]["name"] in fake.reject:
                    return self._error(400, "invalid", f"{body['kind'].lower()} {body['metadata']['name']} is not welcome")
                obj = fake.put(plural, body)
                if plural == "tasks":
                    fake.steps[obj["metadata"]["name"]] = json.loads(json.dumps(SCRIPTS[fake.script]))
                return self._send(201, obj)
            name = parts[2]
            key = (plural, ns, name)
            if key not in fake.objects:
                return self._error(404, "not_found", f'{PLURAL_KIND.get(plural, plural).lower()} "{name}" not found')
            if len(parts) == 4 and parts[3] in ("approve", "deny") and method == "POST":
                obj = fake.objects[key]
                obj["status"] = {"phase": "Approved" if parts[3] == "approve" else "Denied",
                                 "decided_by": (body or {}).get("decided_by", "")}
                return self._send(200, obj)
            if len(parts) == 4 and parts[3] == "logs":
                return self._send(200, {"name": name, "logs": ["2026-03-29T10:00:00Z task claimed by worker=w1"]})
            if method == "DELETE":
                del fake.objects[key]
                return self._send(204)
            if method == "GET":
                if plural == "tasks":
                    fake.advance(name, ns)
                return self._send(200, fake.objects[key])
            return self._error(405, "method_not_allowed", "method not allowed")

        def _sse_start(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _sse(self, event: str, payload: dict):
            self.wfile.write(f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        def _watch(self, plural: str, q: dict):
            self._sse_start()
            self.wfile.write(b": keep-alive\n\n")
            name, ns = q.get("name"), q.get("namespace", "default")
            obj = fake.objects.get((plural, ns, name))
            if obj is not None:
                self._sse("resource", {"type": "added", "resource": obj})
                while True:
                    time.sleep(0.05)
                    nxt = fake.advance(name, ns)
                    if nxt is None:
                        break
                    self._sse("resource", {"type": "updated", "resource": nxt})
            time.sleep(0.2)  # then end the stream, like upstream's request deadline

        def _events(self, q: dict):
            self._sse_start()
            since = int(q.get("since") or 0)
            for i in (1, 2, 3):
                if i > since and (not q.get("type") or q["type"] == "task.succeeded"):
                    self._sse("event", {"id": i, "timestamp": "2026-03-29T10:00:00Z", "source": "task-controller",
                                        "type": "task.succeeded", "kind": "Task", "name": f"t{i}",
                                        "namespace": "default", "action": "succeeded"})
            time.sleep(0.2)

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        def do_DELETE(self):
            self._route("DELETE")

    return H


@pytest.fixture
def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake():
    state = FakeOrloj()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _system(fake: FakeOrloj, name: str = "sys") -> None:
    fake.put("agent-systems", {"kind": "AgentSystem", "metadata": {"name": name},
                               "spec": {"agents": ["planner", "writer"]}, "status": {"phase": "Ready"}})


def cli(fake, *args: str) -> int:
    return main(["--server", fake.url, *args])


# ---------------------------------------------------------------- run


@pytest.mark.parametrize("watch", [True, False], ids=["watch", "poll"])
def test_run_succeeds_prints_progress_and_output(fake, capsys, watch):
    fake.watch = watch
    _system(fake)
    assert cli(fake, "run", "--system", "sys", "topic=AI chips", "--poll", "0.05s") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["execution_order"] == "planner -> writer"
    assert "Succeeded" in err and "agent done: planner" in err and "agent done: writer" in err
    created = [o for (p, _, _), o in fake.objects.items() if p == "tasks"][0]
    assert created["spec"] == {"system": "sys", "input": {"topic": "AI chips"}}
    assert created["metadata"]["name"].startswith("run-sys-")
    polls = sum(1 for m, p in fake.requests if m == "GET" and p.startswith("/v1/tasks/run-sys-"))
    assert (polls == 1) is watch  # watched: one GET then the stream; else polled after the 404


def test_run_failed_task_exits_1_with_last_error(fake, capsys):
    fake.script = "fail"
    _system(fake)
    assert cli(fake, "run", "--system", "sys") == 1
    err = capsys.readouterr().err
    assert "error: task/run-sys-" in err and "Failed: model boom" in err


def test_run_timeout_exits_1(fake, capsys):
    fake.script = "hang"
    _system(fake)
    started = time.monotonic()
    assert cli(fake, "run", "--system", "sys", "--timeout", "1s") == 1
    assert time.monotonic() - started < 5
    assert "timed out after 1s" in capsys.readouterr().err


def test_run_unknown_system_says_so(fake, capsys):
    assert cli(fake, "run", "--system", "nope") == 1
    assert "agent system 'nope' not found" in capsys.readouterr().err


def test_run_rejects_bad_input_pair(fake, capsys):
    _system(fake)
    assert cli(fake, "run", "--system", "sys", "topic") == 2


# ---------------------------------------------------------------- wait


def _task(fake, name="t1", script="succeed"):
    fake.script = script
    fake.put("tasks", {"kind": "Task", "metadata": {"name": name}, "spec": {"system": "sys"}})
    fake.steps[name] = json.loads(json.dumps(SCRIPTS[script]))


def test_wait_condition_met_exits_0(fake, capsys):
    _task(fake)
    assert cli(fake, "wait", "task/t1", "--for", "condition=Complete", "--timeout", "5s") == 0
    assert "task/t1 condition met: Complete" in capsys.readouterr().out


def test_wait_timeout_exits_1(fake, capsys):
    _task(fake, script="hang")
    assert cli(fake, "wait", "task/t1", "--timeout", "1s", "--interval", "0.1s") == 1
    assert "timed out" in capsys.readouterr().err


def test_wait_failed_task_for_complete_exits_1_at_once(fake, capsys):
    _task(fake, script="fail")
    assert cli(fake, "wait", "task/t1", "--for", "condition=Complete", "--timeout", "30s") == 1
    assert "ended Failed: model boom" in capsys.readouterr().err


def test_wait_for_failed_condition_met(fake):
    _task(fake, script="fail")
    assert cli(fake, "wait", "task/t1", "--for", "condition=Failed") == 0


def test_wait_missing_object_and_usage_errors_exit_2(fake, capsys):
    assert cli(fake, "wait", "task/missing", "--timeout", "1s") == 2
    assert 'task "missing" not found' in capsys.readouterr().err
    assert cli(fake, "wait", "task", "--timeout", "1s") == 2
    assert cli(fake, "wait", "task/t1", "--timeout", "soon") == 2
    assert cli(fake, "wait", "bogus/t1") == 2


def test_wait_unreachable_server_exits_2(unused_port, capsys):
    assert main(["--server", f"http://127.0.0.1:{unused_port}", "wait", "task/t1"]) == 2
    assert "cannot reach orloj-ray" in capsys.readouterr().err


# ---------------------------------------------------------------- other commands


def test_get_table_json_and_phase_filter(fake, capsys):
    _task(fake, "a")
    _task(fake, "b")
    fake.objects[("tasks", "default", "b")]["status"] = {"phase": "Failed", "lastError": "x" * 200, "attempts": 2}
    assert cli(fake, "get", "tasks") == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "LAST_ERROR" in out and "ASSIGNED_WORKER" in out
    assert "x" * 77 + "..." in out and "x" * 78 not in out
    assert cli(fake, "get", "task", "--phase", "failed", "-o", "json") == 0
    assert [o["metadata"]["name"] for o in json.loads(capsys.readouterr().out)["items"]] == ["b"]
    assert cli(fake, "get", "task", "a", "-o", "yaml") == 0
    assert "name: a" in capsys.readouterr().out


def test_get_missing_is_error_1(fake, capsys):
    assert cli(fake, "get", "agent", "nope") == 1
    assert capsys.readouterr().err.strip() == 'error: agent "nope" not found'


def test_describe_delete_logs_trace(fake, capsys):
    _task(fake, "t1")
    for _ in range(3):
        fake.advance("t1", "default")
    capsys.readouterr()
    assert cli(fake, "describe", "task", "t1") == 0
    assert "Phase:      Succeeded" in capsys.readouterr().out
    assert cli(fake, "trace", "task", "t1") == 0
    out = capsys.readouterr().out
    for text in ("ExecutionOrder:  planner -> writer", "TIME", "AGENT", "MODEL", "TOKENS", "LATENCY",
                 "agent_end", "gpt-4o", "40ms", "History", "Output:"):
        assert text in out, text
    assert cli(fake, "logs", "task/t1") == 0
    assert "task claimed by worker=w1" in capsys.readouterr().out
    assert cli(fake, "delete", "task", "t1") == 0
    assert capsys.readouterr().out.strip() == "deleted task/t1"
    assert ("tasks", "default", "t1") not in fake.objects


def test_approve_and_deny(fake, capsys):
    fake.put("tool-approvals", {"metadata": {"name": "ta-1"}, "spec": {"tool": "x", "task_ref": "default/t"}})
    assert cli(fake, "approve", "tool-approval", "ta-1", "--decided-by", "me") == 0
    assert capsys.readouterr().out.strip() == "approved tool-approval/ta-1"
    assert fake.objects[("tool-approvals", "default", "ta-1")]["status"]["decided_by"] == "me"
    assert cli(fake, "deny", "tool-approvals", "ta-1") == 0
    assert cli(fake, "approve", "task", "ta-1") == 2


def test_events_once_and_timeout(fake, capsys):
    assert cli(fake, "events", "--once") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["2026-03-29T10:00:00Z id=1 source=task-controller type=task.succeeded kind=Task name=t1 "
                   "namespace=default action=succeeded"]
    assert cli(fake, "events", "--since", "3", "--timeout", "1s") == 1
    assert "no matching event arrived within 1s" in capsys.readouterr().err
    assert cli(fake, "events", "--raw", "--timeout", "1s") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [1, 2, 3]  # reconnects resume after the last id


def test_status_with_server(fake, capsys):
    _task(fake, "a")
    assert cli(fake, "status") == 0
    out = capsys.readouterr().out
    for text in (f"server:     {fake.url}", "health:     ok", "ray:        127.0.0.1:6379",
                 "dashboard:  http://127.0.0.1:8265", "store:      memory", "tasks:      1 (Pending=1)"):
        assert text in out, text


def test_server_flag_after_subcommand(fake, capsys):
    assert main(["health", "--server", fake.url]) == 0
    assert capsys.readouterr().out.strip() == f"server={fake.url} status=ok"


# ---------------------------------------------------------------- client


def test_client_run_task_follows_watch(fake):
    _system(fake)
    seen = []
    task = Client(fake.url).run_task("sys", {"topic": "x", "n": 3}, on_update=lambda t: seen.append(t["status"]["phase"]))
    assert task["status"]["phase"] == "Succeeded"
    assert seen[0] == "Pending" and seen[-1] == "Succeeded"
    assert task["spec"]["input"] == {"topic": "x", "n": "3"}


def test_client_wait_timeout_carries_last_object(fake):
    _task(fake, script="hang")
    with pytest.raises(WaitTimeout) as info:
        Client(fake.url).wait("task", "t1", timeout=0.5)
    assert info.value.resource["metadata"]["name"] == "t1"
    assert isinstance(info.value, TimeoutError)


def test_client_errors_from_json(fake):
    c = Client(fake.url)
    with pytest.raises(NotFound) as info:
        c.get("agent", "nope")
    assert info.value.code == "not_found"
    with pytest.raises(InvalidResource):
        c.get("no-such-kind", "x")


def test_client_watch_generator(fake):
    _task(fake)
    events = list(Client(fake.url).watch("tasks", name="t1", reconnect=False))
    assert [e for e, _ in events] == ["added", "updated", "updated", "updated"]
    assert events[-1][1]["status"]["phase"] == "Succeeded"


def test_client_events_generator(fake):
    evs = list(Client(fake.url).events(since=1, reconnect=False))
    assert [e["id"] for e in evs] == [2, 3]


# ---------------------------------------------------------------- apply / create secret


def test_apply_directory_skips_runnable_task_then_run_includes_it(fake, capsys):
    bp = REPO / "examples" / "blueprints" / "pipeline"
    assert cli(fake, "apply", "-f", str(bp)) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"skipped task/bp-pipeline-task (mode: run) from {bp / 'task.yaml'}; use --run to include" in out
    assert "applied modelendpoint/openai-default" in out and "applied agentsystem/bp-pipeline-system" in out
    assert out[-1] == "5 applied, 1 skipped"
    assert ("tasks", "default", "bp-pipeline-task") not in fake.objects
    assert cli(fake, "apply", "-f", str(bp), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry-run no-op agent/bp-pipeline-planner-agent" in out
    assert "dry-run: 0 to create, 0 to update, 5 unchanged" in out
    assert cli(fake, "apply", "-f", str(bp), "--run", "-n", "team-a") == 0
    assert "applied task/bp-pipeline-task" in capsys.readouterr().out
    assert fake.objects[("tasks", "team-a", "bp-pipeline-task")]["metadata"]["namespace"] == "team-a"


def test_apply_reports_server_rejections_and_keeps_going(fake, capsys, tmp_path):
    fake.reject = {"w1"}
    for name in ("w1", "w2"):
        (tmp_path / f"{name}.yaml").write_text(
            f"apiVersion: orloj.dev/v1\nkind: Worker\nmetadata:\n  name: {name}\nspec:\n  region: eu\n")
    assert cli(fake, "apply", "-f", str(tmp_path)) == 1
    out, err = capsys.readouterr()
    assert f"error: {tmp_path / 'w1.yaml'}: worker/w1: worker w1 is not welcome" in err
    assert "applied worker/w2" in out and out.splitlines()[-1] == "1 applied, 1 failed"


def test_create_secret(fake, capsys):
    assert cli(fake, "create", "secret", "openai-api-key", "--from-literal", "value=sk-1") == 0
    assert capsys.readouterr().out.strip() == "created secret/openai-api-key"
    assert fake.objects[("secrets", "default", "openai-api-key")]["spec"]["data"] == {"value": "c2stMQ=="}
    assert cli(fake, "create", "secret", "x", "--from-literal", "novalue") == 2


# ---------------------------------------------------------------- progress


def test_a_wait_over_a_second_shows_progress_on_stderr(fake, capsys):
    """A slow server: apply says what it waits for once a request passes a second (stdout keeps
    only the results); quick requests print nothing extra."""
    fake.delay_s = 1.3
    assert cli(fake, "apply", "-f", str(REPO / "examples/blueprints/pipeline/model-endpoint.yaml")) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "applied modelendpoint/openai-default"
    assert f"applying modelendpoint/openai-default to {fake.url} ..." in err
    fake.delay_s = 0
    assert cli(fake, "apply", "-f", str(REPO / "examples/blueprints/pipeline/model-endpoint.yaml")) == 0
    assert "applying" not in capsys.readouterr().err
    _task(fake)
    assert cli(fake, "wait", "task/t1", "--timeout", "10s", "--interval", "0.05") == 0
    err = capsys.readouterr().err
    assert "task/t1: Running" in err and "task/t1: Succeeded" in err
