"""The audit trail: Store append/list, ``GET /v1/audit`` with filters and paging, the event
stream, and no secrets in records."""

from __future__ import annotations

import httpx

from orloj_ray.engine.approvals import persist_audit
from orloj_ray.governance import audit_record
from orloj_ray.store import MemoryStore
from serve.app import create_app


def _rec(decision: str, task: str = "t1", ns: str = "default", **kw) -> dict:
    return audit_record(decision, namespace=ns, task=task, agent="a", subject_kind="tool", subject="x", **kw)


async def test_the_store_appends_and_filters_records_in_order():
    store = MemoryStore()
    first = await store.append_audit(_rec("requested"))
    await store.append_audit(_rec("denied", code="tool_permission_denied"))
    await store.append_audit(_rec("denied", task="t2", ns="team-b", code="tool_blocked"))
    assert first["id"] == 1 and first["decision"] == "requested"
    first["decision"] = "tampered"  # the stored record is a copy
    assert [r["id"] for r in await store.list_audit()] == [1, 2, 3]
    assert (await store.list_audit())[0]["decision"] == "requested"
    assert [r["id"] for r in await store.list_audit("default")] == [1, 2]
    assert [r["id"] for r in await store.list_audit(decision="denied")] == [2, 3]
    assert [r["id"] for r in await store.list_audit(code="tool_blocked", task="t2")] == [3]
    assert [r["id"] for r in await store.list_audit(after=1, limit=1)] == [2]
    assert await store.list_audit(agent="nobody") == []


async def test_records_hold_no_secrets():
    record = _rec("denied", reason="tool said Authorization: Bearer abcdef123456 and api_key=sk-live-0123456789abc")
    assert "abcdef123456" not in str(record) and "sk-live" not in str(record)
    assert "[REDACTED]" in record["reason"]


async def test_persist_publishes_each_record_on_the_event_stream():
    store = MemoryStore()
    cursor = await store.last_event_id()
    await persist_audit(store, [_rec("approval_requested", code="approval_pending")])
    (event,) = await store.events_after(cursor)
    assert event.type == "audit.approval_requested" and event.kind == "AuditRecord" and event.name == "t1"
    assert event.data["id"] == 1 and event.data["code"] == "approval_pending"


async def test_get_v1_audit_filters_and_pages():
    store = MemoryStore()
    for i in range(5):
        await store.append_audit(_rec("denied" if i % 2 else "allowed", task=f"t{i % 2}"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://api") as api:
        body = (await api.get("/v1/audit", params={"decision": "denied"})).json()
        assert [r["id"] for r in body["items"]] == [2, 4] and "continue" not in body
        page = (await api.get("/v1/audit", params={"limit": 2})).json()
        assert [r["id"] for r in page["items"]] == [1, 2] and page["continue"] == "2"
        rest = (await api.get("/v1/audit", params={"after": page["continue"]})).json()
        assert [r["id"] for r in rest["items"]] == [3, 4, 5]
        assert (await api.get("/v1/audit", params={"namespace": "elsewhere"})).json() == {"items": []}
        bad = await api.get("/v1/audit", params={"after": "x"})
        assert bad.status_code == 400 and "after" in bad.text
