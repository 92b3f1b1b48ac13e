"""Agents in the announcement's form read back to upstream clients in upstream's shape (issue 17,
point 7): ``model_ref`` from the namespace's default endpoint, ``tools`` as names, the generated
role in ``roles``, the grants beside them; what such a client writes back changes nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from live_server import LiveServer
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from serve.app import create_app

CHECKER = {"kind": "Agent", "metadata": {"name": "compliance-checker"},
           "spec": {"model": "gpt-4", "prompt": "Check documents.",
                    "tools": [{"name": "scan-documents", "permissions": [{"read": "compliance_docs"}]}, "web_search"],
                    "roles": ["auditor"], "governance": {"maxTokensPerMinute": 8000, "auditLog": True}}}
DEFAULT = {"kind": "ModelEndpoint", "metadata": {"name": "default"}, "spec": {"provider": "mock", "default_model": "m"}}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://test") as c:
        yield c


async def test_upstream_clients_read_model_ref_tool_names_and_the_generated_role(client, store):
    assert (await client.post("/v1/model-endpoints", json=DEFAULT)).status_code == 201
    created = await client.post("/v1/agents", json=CHECKER)
    assert created.status_code == 201
    for body in (created.json(), (await client.get("/v1/agents/compliance-checker")).json(),
                 (await client.get("/v1/agents")).json()["items"][0]):
        spec = body["spec"]
        assert spec["model_ref"] == "default" and spec["model"] == "gpt-4"
        assert spec["tools"] == ["scan-documents", "web_search"]
        assert spec["roles"] == ["auditor", "compliance-checker-grants"]
        assert spec["tool_grants"] == [{"name": "scan-documents", "permissions": [{"read": "compliance_docs"}]}]
        assert spec["governance"] == {"maxTokensPerMinute": 8000, "auditLog": True}
        assert body["metadata"]["annotations"] == {"orloj.dev/derived": "spec.model_ref"}
    # stored as written: the view is only how it is read
    assert (await store.get("Agent", "default", "compliance-checker"))["spec"] == normalize(CHECKER)["spec"]


async def test_writing_the_view_back_changes_nothing(client, store):
    await client.post("/v1/model-endpoints", json=DEFAULT)
    await client.post("/v1/agents", json=CHECKER)
    read = (await client.get("/v1/agents/compliance-checker")).json()
    read["spec"]["prompt"] = "Check documents twice."  # what an upstream console edit sends
    r = await client.put("/v1/agents/compliance-checker", json=read,
                         headers={"If-Match": read["metadata"]["resourceVersion"]})
    assert r.status_code == 200, r.text
    stored = await store.get("Agent", "default", "compliance-checker")
    assert stored["spec"] == {**normalize(CHECKER)["spec"], "prompt": "Check documents twice."}
    assert "annotations" not in stored["metadata"]
    assert r.json()["spec"]["model_ref"] == "default"  # and it still reads the same way


async def test_without_a_default_endpoint_model_ref_stays_empty(client):
    await client.post("/v1/agents", json=CHECKER)
    spec = (await client.get("/v1/agents/compliance-checker")).json()["spec"]
    assert "model_ref" not in spec and spec["tools"] == ["scan-documents", "web_search"]


async def test_an_explicit_model_ref_is_kept_on_write_back(client, store):
    agent = {**CHECKER, "spec": {**CHECKER["spec"], "model_ref": "pinned"}}
    await client.post("/v1/agents", json=agent)
    read = (await client.get("/v1/agents/compliance-checker")).json()
    assert read["spec"]["model_ref"] == "pinned" and "annotations" not in read["metadata"]
    await client.put("/v1/agents/compliance-checker", json=read, headers={"If-Match": "1"})
    assert (await store.get("Agent", "default", "compliance-checker"))["spec"]["model_ref"] == "pinned"


async def test_upstream_agents_read_back_unchanged(client):
    agent = {"kind": "Agent", "metadata": {"name": "a"}, "spec": {"model_ref": "m", "tools": ["t"], "roles": ["r"]}}
    created = (await client.post("/v1/agents", json=agent)).json()
    assert created["spec"] == normalize(agent)["spec"] and "annotations" not in created["metadata"]


def test_the_watch_stream_shows_the_view_too():
    store = MemoryStore()
    with LiveServer(create_app(store)) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/model-endpoints", json=DEFAULT)
        http.post("/v1/agents", json=CHECKER)
        with http.stream("GET", "/v1/agents/watch") as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    spec = json.loads(line[6:])["resource"]["spec"]
                    assert spec["model_ref"] == "default" and spec["tools"] == ["scan-documents", "web_search"]
                    break
