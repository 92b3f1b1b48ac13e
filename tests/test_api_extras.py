"""Secret redaction, tool-approval decisions and derived logs."""

from __future__ import annotations

import httpx
import pytest

from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.routes_tasks import task_log_lines


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store):
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 timeout=5) as c:
        yield c


SECRET = {
    "apiVersion": "orloj.dev/v1",
    "kind": "Secret",
    "metadata": {"name": "api-key"},
    "spec": {"stringData": {"value": "hunter2-plain"}, "data": {"other": "aHVudGVyMi1iNjQ="}},
}


def _no_secret_text(text: str) -> None:
    assert "hunter2" not in text
    assert "aHVudGVyMi1iNjQ=" not in text
    assert "stringData" not in text


def _assert_redacted(obj: dict) -> None:
    assert obj["spec"]["data"], obj
    assert set(obj["spec"]["data"].values()) == {"***"}
    assert "stringData" not in obj["spec"]


async def test_secret_values_never_returned(client, store):
    r = await client.post("/v1/secrets", json=SECRET)
    assert r.status_code == 201, r.text
    _assert_redacted(r.json())
    _no_secret_text(r.text)

    r = await client.get("/v1/secrets/api-key")
    _assert_redacted(r.json())
    _no_secret_text(r.text)

    r = await client.get("/v1/secrets")
    _assert_redacted(r.json()["items"][0])
    _no_secret_text(r.text)

    r = await client.put("/v1/secrets/api-key", json=SECRET, headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    _assert_redacted(r.json())
    _no_secret_text(r.text)

    # the stored object still has the real value
    stored = await store.get("Secret", "default", "api-key")
    assert stored["spec"]["data"]["value"] != "***"


async def test_approve_flow(client, store):
    body = {"apiVersion": "orloj.dev/v1", "kind": "ToolApproval", "metadata": {"name": "ta-1"},
            "spec": {"task_ref": "default/t", "tool": "deploy", "operation_class": "write"}}
    r = await client.post("/v1/tool-approvals", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"]["phase"] == "Pending"
    cursor = await store.last_event_id()

    r = await client.post("/v1/tool-approvals/ta-1/approve", json={"decided_by": "alice", "reason": "ok"})
    assert r.status_code == 200, r.text
    status = r.json()["status"]
    assert status["phase"] == "Approved"
    assert status["decision"] == "approved"
    assert status["decided_by"] == "alice"
    assert status["decided_at"].endswith("Z")

    events = await store.events_after(cursor)
    # the decision is also an audit record, published on the stream
    assert [e.type for e in events] == ["resource.status", "resource.approved", "audit.approved"]
    assert events[1].kind == "ToolApproval" and events[1].name == "ta-1" and events[1].action == "approved"

    r = await client.post("/v1/tool-approvals/ta-1/deny")
    assert r.status_code == 409
    assert r.json()["error"]["message"] == 'toolapproval "ta-1" is already Approved'
    assert (await client.get("/v1/tool-approvals/ta-1")).json()["status"]["phase"] == "Approved"


async def test_deny_flow_and_missing(client, store):
    body = {"kind": "ToolApproval", "metadata": {"name": "ta-2"}, "spec": {"task_ref": "t", "tool": "rm"}}
    await client.post("/v1/tool-approvals", json=body)
    cursor = await store.last_event_id()
    r = await client.post("/v1/tool-approvals/ta-2/deny", content=b"not json")  # bad JSON is ignored
    assert r.status_code == 200, r.text
    assert r.json()["status"]["phase"] == "Denied"
    assert r.json()["status"]["decision"] == "denied"
    assert [e.type for e in await store.events_after(cursor)][-2:] == ["resource.denied", "audit.approval_denied"]

    r = await client.post("/v1/tool-approvals/nope/approve")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/tool-approvals/ta-2/approve")).status_code == 405


async def test_decision_retries_on_conflict(store):
    class Flaky(MemoryStore):
        failures = 2

        async def update_status(self, *a, **kw):
            if self.failures:
                self.failures -= 1
                from orloj_ray.errors import Conflict
                raise Conflict("stale")
            return await super().update_status(*a, **kw)

    flaky = Flaky()
    app = create_app(flaky)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=5) as c:
        await c.post("/v1/tool-approvals", json={"kind": "ToolApproval", "metadata": {"name": "x"},
                                                 "spec": {"task_ref": "t", "tool": "w"}})
        r = await c.post("/v1/tool-approvals/x/approve")
        assert r.status_code == 200 and r.json()["status"]["phase"] == "Approved"
        flaky.failures = 100
        await c.post("/v1/tool-approvals", json={"kind": "ToolApproval", "metadata": {"name": "y"},
                                                 "spec": {"task_ref": "t", "tool": "w"}})
        r = await c.post("/v1/tool-approvals/y/approve")
        assert r.status_code == 409
        assert r.json()["error"]["message"] == "conflict updating tool approval, please retry"


async def test_task_logs_derived_from_status(client, store):
    await client.post("/v1/tasks", json={"kind": "Task", "metadata": {"name": "t"}, "spec": {"system": "s"}})
    status = {
        "phase": "Succeeded",
        "history": [
            {"timestamp": "2026-03-29T10:00:01Z", "type": "claim", "worker": "w1", "message": "task claimed"},
            {"timestamp": "2026-03-29T10:00:05Z", "type": "succeeded", "message": "done"},
        ],
        "trace": [
            {"timestamp": "2026-03-29T10:00:02.5Z", "type": "agent_start", "agent": "planner", "message": "go"},
            {"timestamp": "2026-03-29T10:00:03.123456789Z", "type": "agent_end", "agent": "planner",
             "message": "ok"},
        ],
    }
    await store.update_status("Task", "default", "t", status, "*")
    r = await client.get("/v1/tasks/t/logs")
    assert r.status_code == 200
    assert r.json() == {"name": "t", "logs": [
        "2026-03-29T10:00:01Z claim worker=w1: task claimed",
        "2026-03-29T10:00:02.5Z agent_start agent=planner: go",
        "2026-03-29T10:00:03.123456789Z agent_end agent=planner: ok",
        "2026-03-29T10:00:05Z succeeded: done",
    ]}
    assert (await client.get("/v1/tasks/nope/logs")).status_code == 404


def test_task_logs_keep_newest_500():
    trace = [{"timestamp": f"2026-03-29T10:{i // 60:02d}:{i % 60:02d}Z", "type": "step", "message": str(i)}
             for i in range(700)]
    lines = task_log_lines({"status": {"trace": trace}})
    assert len(lines) == 500
    assert lines[-1].endswith("step: 699") and lines[0].endswith("step: 200")


async def test_agent_logs(client, store):
    await client.post("/v1/agents", json={"kind": "Agent", "metadata": {"name": "a"}, "spec": {"model_ref": "m"}})
    await store.update_status("Agent", "default", "a", {"phase": "Error", "lastError": "model down"}, "*")
    r = await client.get("/v1/agents/a/logs")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "a"
    assert any(line.endswith("phase=Error") for line in body["logs"])
    assert any(line.endswith("lastError: model down") for line in body["logs"])
    assert (await client.get("/v1/agents/nope/logs")).status_code == 404
