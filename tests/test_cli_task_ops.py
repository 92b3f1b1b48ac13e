"""``orloj messages|metrics|cancel|retry`` and their client methods, against the real API app
(``serve.app.create_app`` over a MemoryStore) served by uvicorn on a loopback port in a thread.
No Ray: nothing executes the tasks, the tests write their statuses by hand.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from orloj_ray.cli.main import main
from orloj_ray.client import Client
from orloj_ray.errors import Conflict, NotFound
from orloj_ray.store import MemoryStore
from serve.app import create_app

MESSAGES = [
    {"timestamp": "2026-03-29T10:00:00Z", "message_id": "m1", "from_agent": "system", "to_agent": "planner",
     "branch_id": "b001", "type": "task_start", "content": "topic=AI chips", "phase": "Succeeded", "attempts": 1,
     "processed_at": "2026-03-29T10:00:00.400Z", "trace_id": "default/report/a001"},
    {"timestamp": "2026-03-29T10:00:01Z", "message_id": "m2", "from_agent": "planner", "to_agent": "research",
     "branch_id": "b001", "type": "task_handoff", "content": "plan: " + "x" * 200, "phase": "Succeeded",
     "attempts": 1, "processed_at": "2026-03-29T10:00:02.600Z", "trace_id": "default/report/a001"},
    {"timestamp": "2026-03-29T10:00:01Z", "message_id": "m3", "from_agent": "planner", "to_agent": "writer",
     "branch_id": "b002", "type": "task_handoff", "content": "outline", "phase": "RetryPending", "attempts": 2,
     "last_error": "timeout", "trace_id": "default/report/a001"},
    {"timestamp": "2026-03-29T10:00:03Z", "message_id": "m4", "from_agent": "research", "to_agent": "writer",
     "branch_id": "b001", "type": "task_handoff", "content": "findings", "phase": "DeadLetter", "attempts": 3,
     "processed_at": "2026-03-29T10:00:04Z", "last_error": "tool failed", "trace_id": "default/report/a001"},
    {"timestamp": "2026-03-29T10:00:05Z", "message_id": "m5", "from_agent": "research", "to_agent": "writer",
     "branch_id": "b003", "type": "task_handoff", "content": "more findings", "phase": "Running", "attempts": 1,
     "trace_id": "default/report/a001"},
]

SPEC = {"system": "report-system", "input": {"topic": "AI chips", "depth": "2"}, "priority": "high",
        "retry": {"max_attempts": 3, "backoff": "5s"}}


def _task(name: str, status: dict, namespace: str = "default", spec: dict | None = None) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": namespace},
            "spec": copy.deepcopy(spec or SPEC), "status": copy.deepcopy(status)}


RUNNING = {"phase": "Running", "attempts": 1, "assignedWorker": "w1", "claimedBy": "w1",
           "leaseUntil": "2999-01-01T00:00:00Z", "lastHeartbeat": "2026-03-29T10:00:05Z",
           "startedAt": "2026-03-29T10:00:00Z", "messages": MESSAGES,
           "trace": [{"timestamp": "2026-03-29T10:00:00Z", "type": "task_start", "message": "system=report-system"}]}


class Server:
    def __init__(self) -> None:
        self.store = MemoryStore()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._uv = uvicorn.Server(uvicorn.Config(create_app(self.store), log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._uv.run, kwargs={"sockets": [sock]}, daemon=True)
        self._sock = sock
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uv.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self.client = Client(self.url, token="")

    def stop(self) -> None:
        self.client.close()
        self._uv.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def add(self, doc: dict) -> dict:
        return self.client.create(doc)

    def task(self, name: str, namespace: str = "default") -> dict:
        return self.client.get("task", name, namespace)

    def tasks(self, namespace: str | None = None) -> list[str]:
        return [t["metadata"]["name"] for t in self.client.list("task", namespace)]


@pytest.fixture
def server():
    srv = Server()
    try:
        srv.add(_task("report", RUNNING))
        srv.add(_task("done", {"phase": "Succeeded", "attempts": 1, "completedAt": "2026-03-29T10:01:00Z"}))
        srv.add(_task("broken", {"phase": "Failed", "attempts": 2, "lastError": "model boom"}))
        srv.add(_task("parked", {"phase": "WaitingApproval", "attempts": 1}, namespace="team-a"))
        yield srv
    finally:
        srv.stop()


def cli(server: Server, *args: str) -> int:
    return main(["--server", server.url, *args])


# ---------------------------------------------------------------- cancel


def test_cancel_running_task_marks_it_failed_with_the_reason(server, capsys):
    before = server.task("report")
    assert cli(server, "cancel", "task", "report", "--reason", "operator stop") == 0
    assert capsys.readouterr().out.strip() == "canceled task/report"
    task = server.task("report")
    st = task["status"]
    assert st["phase"] == "Failed"
    assert st["lastError"] == "operator stop"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", st["completedAt"])
    for key in ("assignedWorker", "claimedBy", "leaseUntil", "lastHeartbeat", "nextAttemptAt"):
        assert key not in st
    # everything else in the status is kept
    assert st["messages"] == MESSAGES and st["trace"] == RUNNING["trace"] and st["attempts"] == 1
    assert st["startedAt"] == RUNNING["startedAt"]
    assert st["observedGeneration"] == task["metadata"]["generation"]
    assert int(task["metadata"]["resourceVersion"]) == int(before["metadata"]["resourceVersion"]) + 1


def test_cancel_default_reason_and_task_slash_form(server, capsys):
    server.add(_task("queued", {"phase": "Pending", "nextAttemptAt": "2999-01-01T00:00:00Z"}, namespace="team-a"))
    assert cli(server, "cancel", "task/queued", "-n", "team-a") == 0
    st = server.task("queued", "team-a")["status"]
    assert (st["phase"], st["lastError"]) == ("Failed", "task canceled via orloj")
    assert "nextAttemptAt" not in st


@pytest.mark.parametrize("name, phase", [("done", "Succeeded"), ("broken", "Failed")])
def test_cancel_terminal_task_is_refused_with_exit_0(server, capsys, name, phase):
    before = server.task(name)
    assert cli(server, "cancel", "task", name, "--reason", "late") == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"task/{name} is already terminal ({phase})"
    assert err == ""
    assert server.task(name) == before  # nothing written


def test_cancel_errors(server, capsys):
    assert cli(server, "cancel", "task", "ghost") == 1
    assert 'task "ghost" not found' in capsys.readouterr().err
    assert cli(server, "cancel", "agent", "report") == 2
    assert "usage: orloj cancel task <name>" in capsys.readouterr().err
    assert cli(server, "cancel", "task") == 2


def test_cancel_is_applied_server_side_on_the_stored_task(server):
    """The transition runs on the stored row: a write that landed just before the cancel is
    kept (the client no longer sends back a status it read earlier)."""
    stored = server.task("report")
    status = {**stored["status"], "lastHeartbeat": "2026-03-29T10:09:00Z", "tokens": 7}
    server.client.request("PUT", "/v1/tasks/report/status", json_body={
        "metadata": {"resourceVersion": stored["metadata"]["resourceVersion"]}, "status": status})
    task = server.client.cancel_task("report", reason="stop")
    assert task["status"]["phase"] == "Failed" and task["status"]["lastError"] == "stop"
    events = [e for e in asyncio.run(server.store.events_after(0, 0.0, 10_000)) if e.type == "task.failed"]
    assert [(e.name, e.data["phase"], e.data["lastError"]) for e in events] == [("report", "Failed", "stop")]
    assert task["status"]["tokens"] == 7 and task["status"]["errorCode"] == "task_canceled"
    assert task["status"]["history"][-1]["type"] == "failed"


def test_the_status_subresource_refuses_non_phases_and_transitions_the_engine_would_not_make(server):
    def put(name: str, **changes):
        task = server.task(name)
        return httpx.put(f"{server.url}/v1/tasks/{name}/status", json={
            "metadata": {"resourceVersion": task["metadata"]["resourceVersion"]},
            "status": {**task["status"], **changes}})

    r = put("report", phase='k\u00a9\U0002c694"W')
    assert r.status_code == 400 and r.json()["error"]["field"] == "status.phase"
    assert "is not a task phase" in r.json()["error"]["message"]
    r = put("done", phase="Running")
    assert r.status_code == 409 and r.json()["error"]["code"] == "invalid_transition"
    assert "from Succeeded to Running" in r.json()["error"]["message"]
    assert server.task("done")["status"]["phase"] == "Succeeded"  # nothing written
    assert put("report", lastHeartbeat="2026-03-29T10:10:00Z").status_code == 200  # same phase: fine
    assert put("report", phase="Failed", lastError="canceled by an upstream client").status_code == 200


def test_cancel_task_client_refuses_terminal(server):
    with pytest.raises(Conflict) as exc:
        server.client.cancel_task("done")
    assert exc.value.code == "already_terminal"
    assert exc.value.message == "task/done is already terminal (Succeeded)"


# ---------------------------------------------------------------- retry


def test_retry_creates_a_new_task_with_the_same_spec_and_overrides(server, capsys):
    original = server.task("broken")
    assert cli(server, "retry", "task", "broken", "--with-overrides", "topic=GPUs",
               "--with-overrides", "extra = yes ") == 0
    out = capsys.readouterr().out.strip()
    m = re.fullmatch(r"retried task/broken as task/(broken-retry-(\d+))", out)
    assert m, out
    assert abs(int(m.group(2)) - time.time() * 1000) < 60_000
    new = server.task(m.group(1))
    want = copy.deepcopy(original["spec"])
    want["input"].update(topic="GPUs", extra="yes")
    assert new["spec"] == want
    assert new["metadata"]["namespace"] == "default"
    assert new["status"].get("phase") in (None, "Pending")  # a fresh task; nothing copied from the old status
    assert "lastError" not in new["status"]
    assert server.task("broken") == original


def test_retry_accepts_trailing_pairs_and_other_namespaces(server, capsys):
    server.add(_task("old", {"phase": "DeadLetter"}, namespace="team-a"))
    assert cli(server, "retry", "task/old", "-n", "team-a", "--with-overrides", "a=1", "b=2") == 0
    name = capsys.readouterr().out.strip().rsplit("task/", 1)[1]
    assert name.startswith("old-retry-")
    assert server.task(name, "team-a")["spec"]["input"] == {**SPEC["input"], "a": "1", "b": "2"}


@pytest.mark.parametrize("name, ns, phase", [("report", "default", "Running"),
                                             ("parked", "team-a", "WaitingApproval")])
def test_retry_refuses_active_tasks(server, capsys, name, ns, phase):
    before = server.tasks()
    assert cli(server, "retry", "task", name, "-n", ns) == 1
    assert capsys.readouterr().err.strip() == f"error: task/{name} is not retryable while phase={phase}"
    assert server.tasks() == before


def test_retry_errors(server, capsys):
    assert cli(server, "retry", "task", "broken", "--with-overrides", "novalue") == 2
    assert "expected key=value" in capsys.readouterr().err
    assert cli(server, "retry", "task", "ghost") == 1
    assert 'task "ghost" not found' in capsys.readouterr().err


def test_retry_task_client(server):
    server.add(_task("pending", {"phase": "Pending"}))
    with pytest.raises(Conflict) as exc:
        server.client.retry_task("pending")
    assert exc.value.code == "not_retryable"
    created = server.client.retry_task("done", overrides={"depth": 5})
    assert created["metadata"]["name"].startswith("done-retry-")
    assert created["spec"]["input"] == {"topic": "AI chips", "depth": "5"}
    with pytest.raises(NotFound):
        server.client.retry_task("ghost")


# ---------------------------------------------------------------- messages


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines() if line.strip()]


def test_messages_table(server, capsys):
    assert cli(server, "messages", "task/report") == 0
    out = capsys.readouterr().out
    rows = _lines(out)
    assert rows[0] == ["TIME", "FROM", "TO", "TYPE", "PHASE", "ATTEMPTS", "CONTENT"]
    body = [r for r in rows[1:] if r[0].startswith("2026")]
    assert [r[:6] for r in body] == [
        ["2026-03-29T10:00:00Z", "system", "planner", "task_start", "Succeeded", "1"],
        ["2026-03-29T10:00:01Z", "planner", "research", "task_handoff", "Succeeded", "1"],
        ["2026-03-29T10:00:01Z", "planner", "writer", "task_handoff", "RetryPending", "2"],
        ["2026-03-29T10:00:03Z", "research", "writer", "task_handoff", "DeadLetter", "3"],
        ["2026-03-29T10:00:05Z", "research", "writer", "task_handoff", "Running", "1"],
    ]
    long_content = body[1][6] + (" " + body[1][7] if len(body[1]) > 7 else "")
    assert long_content.startswith("plan: xxx") and long_content.endswith("...") and len(long_content) == 80
    assert "total=5 filtered_from=5 queued=0 running=1 retrypending=1 succeeded=2 deadletter=1" in out


def test_messages_filters(server, capsys):
    assert cli(server, "messages", "task", "report", "--phase", "retrypending,deadletter") == 0
    rows = [r for r in _lines(capsys.readouterr().out) if r[0].startswith("2026")]
    assert [r[4] for r in rows] == ["RetryPending", "DeadLetter"]

    assert cli(server, "messages", "task/report", "--agent", "PLANNER") == 0
    rows = [r for r in _lines(capsys.readouterr().out) if r[0].startswith("2026")]
    assert [(r[1], r[2]) for r in rows] == [("system", "planner"), ("planner", "research"), ("planner", "writer")]

    assert cli(server, "messages", "task/report", "--limit", "1", "-o", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["messages"] == MESSAGES[-1:] and (body["total"], body["filtered_from"]) == (1, 5)

    assert cli(server, "messages", "task/report", "--agent", "writer", "--phase", "running", "-o", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert [m["message_id"] for m in body["messages"]] == ["m5"]
    assert (body["total"], body["filtered_from"]) == (1, 1)  # as orlojctl rewrites them for --agent

    assert cli(server, "messages", "task/report", "--phase", "succeeded", "-o", "yaml") == 0
    assert "message_id: m1" in capsys.readouterr().out


def test_messages_errors_and_empty(server, capsys):
    assert cli(server, "messages", "task/report", "--phase", "bogus") == 1
    assert 'invalid phase "bogus"' in capsys.readouterr().err
    assert cli(server, "messages", "task/ghost") == 1
    assert 'task "ghost" not found' in capsys.readouterr().err
    assert cli(server, "messages", "report") == 2
    assert "target must be task/<task-name> or task <task-name>" in capsys.readouterr().err
    assert cli(server, "messages", "task/report", "-o", "xml") == 2
    capsys.readouterr()
    assert cli(server, "messages", "task/done") == 0
    out, err = capsys.readouterr()
    assert out == "" and "no messages for task/done" in err


# ---------------------------------------------------------------- metrics


def test_metrics_tables(server, capsys):
    assert cli(server, "metrics", "task/report") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "task=report namespace=default"
    # latencies 400, 1600, 1000 -> avg 1000, p95 1600
    assert lines[1] == ("messages=5 in_flight=2 retry_count=3 deadletters=1 latency_ms_avg=1000 "
                        "latency_ms_p95=1600")
    assert lines[2] == "per-agent:"
    rows = _lines(out.split("per-agent:", 1)[1].split("per-edge:", 1)[0])
    assert rows[0] == ["AGENT", "INBOUND", "OUTBOUND", "IN_FLIGHT", "SUCCEEDED", "DEADLETTER", "LAT_MS_AVG",
                       "LAT_MS_P95"]
    assert [r for r in rows[1:] if len(r) == 8] == [
        ["planner", "1", "2", "0", "1", "0", "400", "400"],
        ["research", "1", "2", "0", "1", "0", "1600", "1600"],
        ["system", "0", "1", "0", "0", "0", "0", "0"],
        ["writer", "3", "0", "2", "0", "1", "1000", "1000"],
    ]
    edges = _lines(out.split("per-edge:", 1)[1])
    assert edges[0][:3] == ["FROM", "TO", "MESSAGES"]
    assert [r[:3] for r in edges[1:] if len(r) == 9] == [
        ["planner", "research", "1"], ["planner", "writer", "1"], ["research", "writer", "2"],
        ["system", "planner", "1"]]


def test_metrics_json_and_filters(server, capsys):
    assert cli(server, "metrics", "task", "report", "--phase", "succeeded", "-o", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["filters"] == {"phase_filtered": True}
    assert body["totals"]["messages"] == 2 and body["totals"]["latency_ms_p95"] == 1600
    assert body == {**server.client.metrics("report", phase="succeeded"), "generated_at": body["generated_at"]}

    assert cli(server, "metrics", "task/report", "--limit", "2") == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("messages=2 in_flight=1 ")

    assert cli(server, "metrics", "task/parked", "-n", "team-a") == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["task=parked namespace=team-a",
                                "messages=0 in_flight=0 retry_count=0 deadletters=0 latency_ms_avg=0 "
                                "latency_ms_p95=0"]
    assert cli(server, "metrics", "task/report", "--limit", "-1") == 2


def test_client_message_filters(server):
    body = server.client.messages("report", to_agent="writer", phase=["deadletter", "running"], limit=1)
    assert [m["message_id"] for m in body["messages"]] == ["m5"]
    assert body["filtered_from"] == 3
    assert server.client.messages("report", branch_id="b002")["total"] == 1
    assert server.client.metrics("report", from_agent="research")["totals"]["messages"] == 2
    with pytest.raises(TypeError):
        server.client.messages("report", agent="writer")
