"""``/openapi.json`` and ``/docs`` (issue 15, point 4): an OpenAPI 3.1 description of every
route, in upstream's shapes, with upstream's 119 operations all served."""

from __future__ import annotations

import httpx
import jsonschema
import pytest

from orloj_ray.resources import KINDS, normalize
from orloj_ray.store import MemoryStore
from serve.app import create_app
from serve.openapi import openapi_document

# Upstream's openapi/openapi.yaml: "<methods> <path>" per path (119 operations).
UPSTREAM_OPERATIONS = """
GET POST /v1/agents
GET /v1/agents/watch
GET PUT /v1/agents/{name}/status
GET /v1/agents/{name}/logs
GET PUT DELETE /v1/agents/{name}
GET POST /v1/agent-systems
GET PUT /v1/agent-systems/{name}/status
GET PUT DELETE /v1/agent-systems/{name}
GET POST /v1/model-endpoints
GET PUT /v1/model-endpoints/{name}/status
GET PUT DELETE /v1/model-endpoints/{name}
GET POST /v1/tools
GET PUT /v1/tools/{name}/status
GET PUT DELETE /v1/tools/{name}
GET POST /v1/secrets
GET PUT DELETE /v1/secrets/{name}
GET POST /v1/memories
GET PUT /v1/memories/{name}/status
GET PUT DELETE /v1/memories/{name}
GET /v1/memories/{name}/entries
GET POST /v1/agent-policies
GET PUT /v1/agent-policies/{name}/status
GET PUT DELETE /v1/agent-policies/{name}
GET POST /v1/agent-roles
GET PUT DELETE /v1/agent-roles/{name}
GET POST /v1/tool-permissions
GET PUT DELETE /v1/tool-permissions/{name}
GET POST /v1/tool-approvals
GET DELETE PUT /v1/tool-approvals/{name}
POST /v1/tool-approvals/{name}/approve
POST /v1/tool-approvals/{name}/deny
GET POST /v1/tasks
GET /v1/tasks/watch
GET PUT /v1/tasks/{name}/status
GET /v1/tasks/{name}/logs
GET /v1/tasks/{name}/messages
GET /v1/tasks/{name}/metrics
GET PUT DELETE /v1/tasks/{name}
GET POST /v1/task-schedules
GET PUT /v1/task-schedules/{name}/status
GET PUT DELETE /v1/task-schedules/{name}
GET /v1/task-schedules/watch
GET POST /v1/task-webhooks
GET /v1/task-webhooks/watch
GET PUT /v1/task-webhooks/{name}/status
GET PUT DELETE /v1/task-webhooks/{name}
GET POST /v1/workers
GET PUT /v1/workers/{name}/status
GET PUT DELETE /v1/workers/{name}
GET POST /v1/mcp-servers
GET PUT DELETE /v1/mcp-servers/{name}
POST /v1/webhook-deliveries/{endpoint_id}
GET /v1/events/watch
GET /v1/namespaces
GET /v1/capabilities
GET /healthz
GET /metrics
GET /v1/auth/config
POST /v1/auth/setup
POST /v1/auth/login
POST /v1/auth/logout
GET /v1/auth/me
POST /v1/auth/change-password
POST /v1/auth/admin/reset-password
"""


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(MemoryStore())),
                                 base_url="http://test") as c:
        yield c


def operations(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in ("get", "put", "post", "delete",
                                                                                   "head", "patch")}


def test_every_upstream_operation_is_described_and_served():
    upstream = {(m, line.split()[-1]) for line in UPSTREAM_OPERATIONS.split("\n") if line.strip()
                for m in line.split()[:-1]}
    assert len(upstream) == 119
    ours = operations(openapi_document())
    assert upstream <= ours
    assert ours - upstream == {("GET", "/v1/runtime"), ("GET", "/v1/audit"), ("HEAD", "/healthz"),
                               ("POST", "/v1/tasks/{name}/cancel"), ("POST", "/v1/admin/rotate-secret-key"),
                               ("GET", "/v1/tasks/{name}/stream")}


def test_the_document_and_the_routes_agree():
    app = create_app(MemoryStore())
    served = {(m, r.path) for r in app.routes if getattr(r, "include_in_schema", False)
              for m in (r.methods or ())}
    assert served == operations(openapi_document())


async def test_served_as_openapi_3_1_with_every_kind(client):
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    for info in KINDS:
        assert {info.kind, f"{info.kind}List", f"{info.kind}Spec"} <= set(schemas), info.kind
    agent_spec = schemas["AgentSpec"]["properties"]
    assert agent_spec["model_ref"] == {"type": "string"}
    assert agent_spec["replicas"] == {"type": "integer", "minimum": 0, "maximum": 100}
    assert schemas["ToolAuth"]["properties"].keys() >= {"secretRef", "headerName", "tokenURL"}
    assert schemas["ObjectMeta"]["properties"]["name"]["maxLength"] == 253


async def test_docs_page_and_its_assets_are_served_locally(client):
    page = await client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = await client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000, asset


async def test_responses_match_their_schemas(client):
    doc = openapi_document()
    await client.post("/v1/agents", json={"kind": "Agent", "metadata": {"name": "a"},
                                          "spec": {"model": "gpt-4", "tools": [{"name": "t", "permissions": [
                                              {"read": "docs"}]}, "u"], "governance": {"auditLog": True}}})
    resolver = {"components": doc["components"]}
    for path, schema in (("/v1/agents/a", "Agent"), ("/v1/agents", "AgentList"), ("/v1/agents/a/status",
                                                                                  "StatusEnvelope")):
        body = (await client.get(path)).json()
        jsonschema.validate(body, {**resolver, "$ref": f"#/components/schemas/{schema}"})
    err = (await client.get("/v1/agents/missing")).json()
    jsonschema.validate(err, {**resolver, "$ref": "#/components/schemas/Error"})


@pytest.mark.parametrize("path", ["/v1/auth/setup", "/v1/auth/login", "/v1/auth/change-password",
                                  "/v1/auth/admin/reset-password"])
async def test_native_auth_routes_say_to_use_tokens(client, path):
    r = await client.post(path, json={"username": "admin", "password": "x" * 12})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "native_auth_unsupported" and "use token auth" in err["message"]


async def test_logout_is_ok_and_healthz_refuses_put(client):
    r = await client.post("/v1/auth/logout")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert (await client.put("/healthz")).status_code == 405
