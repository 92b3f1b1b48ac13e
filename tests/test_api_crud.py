"""REST CRUD over the generic resource routes (api.md sections 3-6), through httpx ASGITransport."""

from __future__ import annotations

import json

import httpx
import pytest

from orloj_ray.resources.kinds import KINDS
from orloj_ray.store import MemoryStore
from serve.app import create_app

MINIMAL_SPECS = {
    "agents": {"model_ref": "m1", "prompt": "hi"},
    "agent-systems": {"agents": ["a1"]},
    "model-endpoints": {"provider": "mock", "default_model": "mock-1"},
    "tools": {"type": "http", "endpoint": "https://example.com"},
    "secrets": {"stringData": {"value": "s3cr3t"}},
    "memories": {"type": "kv"},
    "agent-policies": {"max_tokens_per_run": 1000},
    "agent-roles": {"permissions": ["tool:web:invoke"]},
    "tool-permissions": {"tool_ref": "t1"},
    "tool-approvals": {"task_ref": "default/t1", "tool": "t1"},
    "tasks": {"system": "sys1", "input": {"topic": "x"}},
    "task-schedules": {"task_ref": "tmpl", "schedule": "*/5 * * * *"},
    "task-webhooks": {"task_ref": "tmpl", "auth": {"secret_ref": "wh"}},
    "workers": {"region": "default"},
    "mcp-servers": {"transport": "http", "endpoint": "http://localhost:9000"},
}


def manifest(info, name: str, namespace: str | None = None, labels: dict | None = None, **spec) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "orloj.dev/v1", "kind": info.kind, "metadata": meta,
            "spec": {**MINIMAL_SPECS[info.plural], **spec}}


def agent(name: str, **kw) -> dict:
    return manifest(_info("agents"), name, **kw)


def _info(plural: str):
    return next(k for k in KINDS if k.plural == plural)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store):
    app = create_app(store, runtime_info=_runtime_info)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test",
                                 timeout=5) as c:
        yield c


async def _runtime_info() -> dict:
    return {"mode": "test", "agents": 0}


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    if code:
        assert err["code"] == code
    return err


# --- every collection -----------------------------------------------------------------------


def test_minimal_specs_cover_all_kinds():
    assert set(MINIMAL_SPECS) == {k.plural for k in KINDS} and len(KINDS) == 15


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.plural)
async def test_crud_every_collection(client, info):
    base = f"/v1/{info.plural}"
    r = await client.post(base, json=manifest(info, "one"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["kind"] == info.kind
    assert created["metadata"]["name"] == "one"
    assert created["metadata"]["namespace"] == "default"
    assert created["metadata"]["resourceVersion"] == "1"
    assert "status" in created

    r = await client.get(f"{base}/one")
    assert r.status_code == 200 and r.json()["metadata"]["name"] == "one"

    r = await client.get(base)
    assert r.status_code == 200
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["one"]

    if info.status_route:
        r = await client.get(f"{base}/one/status")
        assert r.status_code == 200 and set(r.json()) == {"metadata", "status"}
    else:
        assert (await client.get(f"{base}/one/status")).status_code == 404

    # every kind has PUT, as in upstream's OpenAPI (its server has none for these two)
    r = await client.put(f"{base}/one", json=manifest(info, "one"), headers={"If-Match": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["resourceVersion"] == "2"

    r = await client.delete(f"{base}/one")
    if info.kind == "McpServer":
        assert r.status_code == 200 and r.json() == {"deleted": "one"}
    else:
        assert r.status_code == 204 and r.content == b""
    assert_error(await client.get(f"{base}/one"), 404, "not_found")


# --- create / upsert ------------------------------------------------------------------------


async def test_post_upsert_keeps_status_and_replaces_spec(client, store):
    r = await client.post("/v1/agents", json=agent("a"))
    assert r.status_code == 201
    stored = await store.get("Agent", "default", "a")
    await store.update_status("Agent", "default", "a", {"phase": "Ready", "lastError": "x"},
                              stored["metadata"]["resourceVersion"])

    r = await client.post("/v1/agents", json=agent("a", prompt="changed", labels={"team": "b"}))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["spec"]["prompt"] == "changed"
    assert body["metadata"]["labels"] == {"team": "b"}
    assert body["status"]["phase"] == "Ready" and body["status"]["lastError"] == "x"
    assert body["metadata"]["resourceVersion"] == "3"

    # GET shows the stored status (no demo-loop override)
    assert (await client.get("/v1/agents/a")).json()["status"]["phase"] == "Ready"


async def test_post_with_stale_resource_version_conflicts(client):
    await client.post("/v1/agents", json=agent("a"))
    doc = agent("a")
    doc["metadata"]["resourceVersion"] = "7"
    assert_error(await client.post("/v1/agents", json=doc), 409, "conflict")


async def test_post_namespace_must_match_query(client):
    r = await client.post("/v1/agents?namespace=team", json=agent("a", namespace="other"))
    err = assert_error(r, 400, "invalid")
    assert err["message"] == 'metadata.namespace "other" does not match request namespace "team"'
    r = await client.post("/v1/agents?namespace=team", json=agent("a", namespace="team"))
    assert r.status_code == 201
    assert (await client.get("/v1/agents/a?namespace=team")).status_code == 200
    assert (await client.get("/v1/agents/a")).status_code == 404


async def test_post_kind_must_match_collection(client):
    doc = agent("a")
    doc["kind"] = "Tool"
    err = assert_error(await client.post("/v1/agents", json=doc), 400, "invalid")
    assert err["field"] == "kind"
    doc.pop("kind")
    r = await client.post("/v1/agents", json=doc)
    assert r.status_code == 201 and r.json()["kind"] == "Agent"


async def test_yaml_body_is_sniffed_even_with_json_content_type(client):
    body = (
        "apiVersion: orloj.dev/v1\n"
        "kind: Agent\n"
        "metadata:\n"
        "  name: yaml-agent\n"
        "  labels:\n"
        "    team: blue\n"
        "spec:\n"
        "  model_ref: m1\n"
        "  prompt: |\n"
        "    line one\n"
        "    line two\n"
    )
    r = await client.post("/v1/agents", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["prompt"].rstrip("\n") == "line one\nline two"
    assert r.json()["metadata"]["labels"] == {"team": "blue"}


async def test_unparseable_body_is_json_400(client):
    err = assert_error(await client.post("/v1/agents", content=b"{not: [valid"), 400, "invalid")
    assert "manifest" in err["message"]
    assert_error(await client.post("/v1/agents", content=b"[1, 2]"), 400, "invalid")
    assert_error(await client.post("/v1/agents", content=b""), 400, "invalid")


async def test_bad_nested_type_names_the_field(client, store):
    doc = agent("a")
    doc["spec"]["limits"] = {"max_steps": "lots"}
    err = assert_error(await client.post("/v1/agents", json=doc), 400, "invalid")
    assert "max_steps" in (err.get("field") or "") + err["message"]
    assert (await store.list("Agent")).items == []


async def test_missing_required_field_is_400(client):
    doc = agent("a")
    del doc["spec"]["model_ref"]
    err = assert_error(await client.post("/v1/agents", json=doc), 400, "invalid")
    assert "model_ref" in (err.get("field") or "") + err["message"]


async def test_tool_approval_post_is_json_only(client):
    body = "apiVersion: orloj.dev/v1\nkind: ToolApproval\nmetadata:\n  name: x\nspec:\n  task_ref: t\n  tool: w\n"
    err = assert_error(await client.post("/v1/tool-approvals", content=body), 400, "invalid")
    assert err["message"].startswith("invalid JSON: ")


# --- replace (PUT) preconditions --------------------------------------------------------------


async def test_put_requires_precondition(client):
    await client.post("/v1/agents", json=agent("a"))
    err = assert_error(await client.put("/v1/agents/a", json=agent("a")), 409, "conflict")
    assert err["message"] == (
        "resourceVersion precondition required for update (set metadata.resourceVersion or If-Match)")


async def test_put_stale_and_current(client):
    await client.post("/v1/agents", json=agent("a"))
    await client.post("/v1/agents", json=agent("a", prompt="v2"))  # RV 2

    err = assert_error(await client.put("/v1/agents/a", json=agent("a"), headers={"If-Match": "1"}), 409)
    assert err["message"] == 'Agent resourceVersion conflict: expected="1" current="2"'

    doc = agent("a", prompt="v3")
    doc["metadata"]["resourceVersion"] = "2"
    r = await client.put("/v1/agents/a", json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["resourceVersion"] == "3"
    assert r.json()["spec"]["prompt"] == "v3"

    r = await client.put("/v1/agents/a", json=agent("a", prompt="v4"), headers={"If-Match": 'W/"3"'})
    assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == "4"

    r = await client.put("/v1/agents/a", json=agent("a", prompt="v5"), headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json()["metadata"]["resourceVersion"] == "5"


async def test_put_body_rv_must_agree_with_if_match(client):
    await client.post("/v1/agents", json=agent("a"))
    doc = agent("a")
    doc["metadata"]["resourceVersion"] = "1"
    assert_error(await client.put("/v1/agents/a", json=doc, headers={"If-Match": "2"}), 409, "conflict")


async def test_put_takes_name_from_path_and_404s_when_missing(client):
    await client.post("/v1/agents", json=agent("a"))
    r = await client.put("/v1/agents/a", json=agent("whatever", prompt="p"), headers={"If-Match": "1"})
    assert r.status_code == 200 and r.json()["metadata"]["name"] == "a"
    assert_error(await client.put("/v1/agents/nope", json=agent("nope"), headers={"If-Match": "*"}), 404)


async def test_put_keeps_status(client, store):
    await client.post("/v1/tasks", json=manifest(_info("tasks"), "t"))
    await store.update_status("Task", "default", "t", {"phase": "Running"}, "1")
    r = await client.put("/v1/tasks/t", json=manifest(_info("tasks"), "t", priority="high"), headers={"If-Match": "2"})
    assert r.status_code == 200
    assert r.json()["status"]["phase"] == "Running"


# --- delete, status ---------------------------------------------------------------------------


async def test_delete_then_404(client):
    await client.post("/v1/tools", json=manifest(_info("tools"), "t"))
    r = await client.delete("/v1/tools/t")
    assert r.status_code == 204 and r.content == b""
    err = assert_error(await client.delete("/v1/tools/t"), 404, "not_found")
    assert err["message"] == 'tool "t" not found'


async def test_status_get_and_put(client):
    await client.post("/v1/tasks", json=manifest(_info("tasks"), "t"))
    r = await client.get("/v1/tasks/t/status")
    assert r.status_code == 200
    assert r.json()["metadata"]["name"] == "t"

    # missing precondition
    assert_error(await client.put("/v1/tasks/t/status", json={"status": {"phase": "Failed"}}), 409)
    # stale
    assert_error(await client.put("/v1/tasks/t/status",
                                  json={"metadata": {"resourceVersion": "9"}, "status": {"phase": "Failed"}}), 409)
    # current
    r = await client.put("/v1/tasks/t/status",
                         json={"metadata": {"resourceVersion": "1"}, "status": {"phase": "Failed", "lastError": "x"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"]["phase"] == "Failed"
    assert body["status"]["observedGeneration"] == 1
    assert body["metadata"]["resourceVersion"] == "2"
    # JSON only
    assert_error(await client.put("/v1/tasks/t/status", content="status:\n  phase: Failed\n",
                                  headers={"If-Match": "2"}), 400, "invalid")
    # kinds without a status route
    assert (await client.put("/v1/secrets/s/status", json={})).status_code == 404


# --- lists --------------------------------------------------------------------------------------


async def test_list_namespace_filter_and_all(client):
    for ns, name in (("a", "x"), ("b", "y"), ("default", "z")):
        assert (await client.post("/v1/agents", json=agent(name, namespace=ns))).status_code == 201
    names = lambda r: [o["metadata"]["name"] for o in r.json()["items"]]  # noqa: E731
    assert names(await client.get("/v1/agents")) == ["x", "y", "z"]
    assert names(await client.get("/v1/agents?namespace=b")) == ["y"]
    assert (await client.get("/v1/agents?namespace=none")).json() == {"items": []}


async def test_label_selector(client):
    await client.post("/v1/agents", json=agent("a", labels={"team": "red", "tier": "1"}))
    await client.post("/v1/agents", json=agent("b", labels={"team": "blue"}))
    r = await client.get("/v1/agents", params={"labelSelector": "team=red"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["a"]
    r = await client.get("/v1/agents", params={"labels": "team=blue"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["b"]
    r = await client.get("/v1/agents", params={"labelSelector": "team=red,tier=2"})
    assert r.json()["items"] == []
    err = assert_error(await client.get("/v1/agents", params={"labelSelector": "team"}), 400, "invalid")
    assert err["message"] == 'invalid label selector "team": expected key=value pairs'


async def test_pagination_continue_and_after(client):
    for i in range(5):
        await client.post("/v1/tools", json=manifest(_info("tools"), f"t{i}"))
    r = await client.get("/v1/tools", params={"namespace": "default", "limit": 2})
    body = r.json()
    assert [o["metadata"]["name"] for o in body["items"]] == ["t0", "t1"]
    assert body["continue"] == "t1"
    r = await client.get("/v1/tools", params={"namespace": "default", "limit": 2, "after": body["continue"]})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["t2", "t3"]
    r = await client.get("/v1/tools", params={"namespace": "default", "limit": 2, "after": "t3"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["t4"]
    assert "continue" not in r.json()

    # across namespaces: follow whatever cursor the server hands out
    seen, after = [], None
    for _ in range(5):
        params = {"limit": 2, **({"after": after} if after else {})}
        page = (await client.get("/v1/tools", params=params)).json()
        seen += [o["metadata"]["name"] for o in page["items"]]
        after = page.get("continue")
        if not after:
            break
    assert seen == [f"t{i}" for i in range(5)]

    # junk / out-of-range limits are ignored or clamped
    assert len((await client.get("/v1/tools?limit=abc")).json()["items"]) == 5
    assert len((await client.get("/v1/tools?limit=0")).json()["items"]) == 5
    assert len((await client.get("/v1/tools?limit=5000")).json()["items"]) == 5


async def test_task_offset_paging(client):
    for i in range(4):
        await client.post("/v1/tasks", json=manifest(_info("tasks"), f"t{i}"))
    r = await client.get("/v1/tasks", params={"offset": 1, "limit": 2, "namespace": "default"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["t1", "t2"]
    assert r.json()["continue"] == "t2"


async def test_namespaces(client):
    assert (await client.get("/v1/namespaces")).json() == {"namespaces": ["default"]}
    await client.post("/v1/agents", json=agent("a", namespace="zeta"))
    await client.post("/v1/tools", json=manifest(_info("tools"), "t", namespace="alpha"))
    await client.post("/v1/agent-roles", json=manifest(_info("agent-roles"), "r", namespace="roles-only"))
    assert (await client.get("/v1/namespaces")).json() == {"namespaces": ["alpha", "zeta"]}


# --- transport ----------------------------------------------------------------------------------


async def test_body_over_4mib_is_413_and_changes_nothing(client, store):
    doc = agent("big", prompt="x" * (4 * 1024 * 1024 + 10))
    err = assert_error(await client.post("/v1/agents", json=doc), 413, "too_large")
    assert "too large" in err["message"]
    assert (await store.list("Agent")).items == []


async def test_body_over_4mib_without_content_length_is_413(client, store):
    payload = json.dumps(agent("big", prompt="x" * (4 * 1024 * 1024 + 10))).encode()

    async def chunks():
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i:i + 256 * 1024]

    r = await client.post("/v1/agents", content=chunks())
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "too_large")
    assert (await store.list("Agent")).items == []


async def test_method_not_allowed_and_unknown_route(client):
    err = assert_error(await client.delete("/v1/agents"), 405, "method_not_allowed")
    assert err["message"] == "method not allowed"
    r = await client.post("/v1/agents/a")
    assert_error(r, 405)
    assert r.headers["allow"] == "DELETE, GET, PUT"
    r = await client.post("/v1/tool-approvals/a", json={})
    assert_error(r, 405)
    assert r.headers["allow"] == "DELETE, GET, PUT"
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        r = await client.request(method, "/healthz")
        assert_error(r, 405)
        assert r.headers["allow"] == "GET, HEAD"
    assert (await client.head("/healthz")).status_code == 200
    assert_error(await client.get("/v1/nope"), 404, "not_found")
    assert_error(await client.get("/nope/deeper"), 404, "not_found")


async def test_request_id_echoed_or_generated(client):
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/v1/agents/missing")
    assert r.status_code == 404 and len(r.headers["x-request-id"]) >= 16


async def test_unexpected_error_is_json_500_with_request_id(store, caplog):
    class Broken(MemoryStore):
        async def get(self, *a, **kw):
            raise RuntimeError("boom")

    app = create_app(Broken())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.get("/v1/agents/a", headers={"X-Request-ID": "rid"})
    err = assert_error(r, 500, "internal")
    assert "boom" not in err["message"]
    assert err["message"] == "internal server error (request id rid)"
    assert r.headers["x-request-id"] == "rid"
    (record,) = [r for r in caplog.records if r.name == "orloj_ray.serve" and r.levelname == "ERROR"]
    assert "request id rid" in record.getMessage() and "boom" in caplog.text


async def test_healthz_capabilities_runtime_metrics(client, store):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    caps = (await client.get("/v1/capabilities")).json()
    assert caps["generated_at"].endswith("Z")
    assert [c["id"] for c in caps["capabilities"]] == [
        "core.api.crud", "core.runtime.sequential", "core.runtime.message_driven",
        "core.governance.agent_roles", "core.ui.baseline", "core.self_host"]
    assert all(c["enabled"] and c["source"] == "oss" and c["description"] for c in caps["capabilities"])

    assert (await client.get("/v1/runtime")).json() == {"mode": "test", "agents": 0}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://t") as c:
        assert (await c.get("/v1/runtime")).json() == {}

    await client.post("/v1/tasks", json=manifest(_info("tasks"), "t1"))
    await client.post("/v1/tasks", json=manifest(_info("tasks"), "t2"))
    await store.update_status("Task", "default", "t2", {"phase": "Succeeded"}, "*")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'orloj_tasks{phase="Succeeded"} 1' in r.text
    assert 'orloj_tasks{phase="Pending"} 1' in r.text
    assert 'orloj_tasks{phase="Failed"} 0' in r.text


async def test_creating_a_task_only_stores_it(client, store):
    r = await client.post("/v1/tasks", json=manifest(_info("tasks"), "t"))
    assert r.status_code == 201
    assert r.json()["status"].get("phase", "Pending") == "Pending"
