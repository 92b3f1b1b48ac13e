"""Namespaces as a boundary when auth is on (``serve/tenancy.py``, ``orloj_ray/tenancy.py``).

Tokens with a namespace list see and change only those namespaces (reads elsewhere 404, lists
and watches filtered, writes elsewhere 403); references across namespaces need the target's
``orloj.dev/shared-with``; a global AgentPolicy written by a token that is not admin governs
its own namespace only; every write is an audit record naming the token. The engine half runs
real tasks in-process; the API half goes through the ASGI app (SSE streams driven directly).
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from governance_support import Running, mock_endpoint, wait_phase
from orloj_ray.config import ConfigError, ServerConfig
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from orloj_ray.webhooks import create_run_task
from serve.app import create_app
from serve.auth import Authenticator, parse_tokens
from test_api_watch import Stream

TOKENS = ("a-writer:tok-a-1234:writer:team-a,b-writer:tok-b-1234:writer:team-b,"
          "ab-reader:tok-ab-1234:reader:team-a|team-b,ops:tok-admin-1234:admin,wide:tok-w-1234:writer")
A, B, AB, ADMIN, WIDE = ({"Authorization": f"Bearer tok-{t}-1234"} for t in ("a", "b", "ab", "admin", "w"))


def doc(kind: str, name: str, namespace: str, spec: dict, **meta) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace, **meta},
            "spec": spec}


def agent(name: str, namespace: str, **spec) -> dict:
    return doc("Agent", name, namespace, {"model_ref": "openai-default", "prompt": "hi", **spec})


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
async def api(store):
    app = create_app(store, auth=Authenticator.from_config(ServerConfig(auth_mode="token", api_tokens=TOKENS)),
                     wait_s=0.1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        http.app = app
        yield http


# -- tokens ---------------------------------------------------------------------------------------


def test_token_entries_take_a_namespace_list_and_admins_take_none():
    (_, p), = parse_tokens("ci:t0k-ci:writer:team-a|team-b")
    assert (p.name, p.role, p.namespaces) == ("ci", "writer", frozenset({"team-a", "team-b"}))
    (_, q), = parse_tokens("ci:t0k-ci:writer")
    assert q.namespaces is None  # no list: every namespace, as before
    with pytest.raises(ConfigError, match='entry "root": an admin token is cluster-wide'):
        parse_tokens("root:t0k-root:admin:team-a")


async def test_me_says_which_namespaces_a_token_holds(api):
    me = (await api.get("/v1/auth/me", headers=AB)).json()
    assert me["username"] == "ab-reader" and me["namespaces"] == ["team-a", "team-b"]
    assert "namespaces" not in (await api.get("/v1/auth/me", headers=ADMIN)).json()


# -- reads and writes across namespaces -------------------------------------------------------------


async def test_a_token_reads_and_writes_its_namespaces_only(api):
    assert (await api.post("/v1/agents", json=agent("a1", "team-a"), headers=A)).status_code == 201
    assert (await api.post("/v1/agents", json=agent("b1", "team-b"), headers=B)).status_code == 201
    refused = await api.post("/v1/agents", json=agent("a2", "team-b"), headers=A)
    assert refused.status_code == 403
    assert refused.json()["error"] == {"code": "forbidden", "field": "metadata.namespace",
                                       "message": 'token "a-writer" may not write namespace "team-b" '
                                                  "(its namespaces: team-a)"}
    assert (await api.post("/v1/agents?namespace=team-b", json=agent("a2", ""), headers=A)).status_code == 403
    # a GET elsewhere is a 404, as if the object did not exist; so are its sub-resources
    missing = await api.get("/v1/agents/b1", params={"namespace": "team-b"}, headers=A)
    assert missing.status_code == 404 and missing.json()["error"]["message"] == 'agent "b1" not found'
    assert (await api.get("/v1/agents/b1/logs", params={"namespace": "team-b"}, headers=A)).status_code == 404
    for verb, path in (("PUT", "/v1/agents/b1"), ("DELETE", "/v1/agents/b1")):
        answer = await api.request(verb, path, params={"namespace": "team-b"}, json=agent("b1", "team-b"),
                                   headers={**A, "If-Match": "*"})
        assert answer.status_code == 403, (verb, answer.text)
    # lists are filtered, not refused
    listed = (await api.get("/v1/agents", headers=A)).json()["items"]
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in listed] == [("team-a", "a1")]
    assert (await api.get("/v1/agents", params={"namespace": "team-b"}, headers=A)).json()["items"] == []
    both = (await api.get("/v1/agents", headers=AB)).json()["items"]
    assert [o["metadata"]["name"] for o in both] == ["a1", "b1"]
    assert (await api.get("/v1/namespaces", headers=A)).json() == {"namespaces": ["team-a"]}
    assert (await api.get("/v1/namespaces", headers=ADMIN)).json() == {"namespaces": ["team-a", "team-b"]}
    # nothing of B was touched
    assert (await api.get("/v1/agents/b1", params={"namespace": "team-b"}, headers=B)).status_code == 200


async def test_lists_across_a_tokens_namespaces_page_in_order(api):
    for ns, names in (("team-a", ["x", "y", "z"]), ("team-b", ["m", "n"]), ("team-c", ["hidden"])):
        for name in names:
            assert (await api.post("/v1/agents", json=agent(name, ns), headers=ADMIN)).status_code == 201
    seen, after = [], None
    for _ in range(10):
        params = {"limit": 2, **({"after": after} if after else {})}
        body = (await api.get("/v1/agents", params=params, headers=AB)).json()
        seen += [f'{o["metadata"]["namespace"]}/{o["metadata"]["name"]}' for o in body["items"]]
        after = body.get("continue")
        if not after:
            break
    assert seen == ["team-a/x", "team-a/y", "team-a/z", "team-b/m", "team-b/n"]


async def test_running_a_task_in_another_namespace_is_refused(api, store):
    task = doc("Task", "t1", "team-b", {"system": "s", "input": {"topic": "x"}})
    assert (await api.post("/v1/tasks", json=task, headers=A)).status_code == 403
    assert (await store.list("Task")).items == []
    assert (await api.post("/v1/tasks", json=task, headers=B)).status_code == 201
    assert (await api.get("/v1/tasks/t1/messages", params={"namespace": "team-b"}, headers=A)).status_code == 404
    metrics = (await api.get("/metrics", headers=A)).text
    assert 'orloj_tasks{phase="Pending"} 0' in metrics
    assert 'orloj_tasks{phase="Pending"} 1' in (await api.get("/metrics", headers=B)).text


async def test_watches_and_the_event_stream_leave_other_namespaces_out(api, store):
    async with Stream(api.app, "/v1/agents/watch", headers=A) as watch, \
            Stream(api.app, "/v1/events/watch", headers=A) as events:
        assert watch.status == 200 and events.status == 200
        for i in range(30):  # other tenants' traffic first: the streams move past it
            await store.create(normalize(agent(f"b{i}", "team-b")))
        await store.create(normalize(agent("a1", "team-a")))
        _, frame = await watch.next_event()
        assert frame["type"] == "added" and frame["resource"]["metadata"]["name"] == "a1"
        _, event = await events.next_event()
        assert (event["namespace"], event["name"]) == ("team-a", "a1")
        with pytest.raises(asyncio.TimeoutError):
            await watch.next_event(timeout=0.5)


async def test_the_audit_trail_names_the_token_behind_every_write(api):
    await api.post("/v1/agents", json=agent("a1", "team-a"), headers=A)
    await api.post("/v1/agents", json=agent("a1", "team-a"), headers=A)
    await api.post("/v1/agents", json=agent("nope", "team-b"), headers=A)
    await api.delete("/v1/agents/a1", params={"namespace": "team-a"}, headers=WIDE)
    trail = (await api.get("/v1/audit", headers=ADMIN)).json()["items"]
    got = [(r["decision"], r["namespace"], r["subject_kind"], r["subject"], r["decided_by"], r.get("code", ""))
           for r in trail]
    assert got == [("created", "team-a", "Agent", "a1", "a-writer", ""),
                   ("updated", "team-a", "Agent", "a1", "a-writer", ""),
                   ("denied", "team-b", "Agent", "nope", "a-writer", "forbidden"),
                   ("deleted", "team-a", "Agent", "a1", "wide", "")]
    # a scoped token reads the trail of its own namespaces only
    own = (await api.get("/v1/audit", headers=B)).json()["items"]
    assert [r["subject"] for r in own] == ["nope"]
    assert (await api.get("/v1/audit", params={"namespace": "team-a"}, headers=B)).json()["items"] == []


async def test_an_approval_records_the_token_that_decided_not_the_name_in_the_body(api, store):
    approval = normalize(doc("ToolApproval", "ta-1", "team-a", {"task_ref": "team-a/t", "tool": "deploy"}))
    await store.create(approval)
    refused = await api.post("/v1/tool-approvals/ta-1/approve", params={"namespace": "team-a"}, headers=B,
                             json={"decided_by": "a-writer"})
    assert refused.status_code == 404  # not B's to see, let alone decide
    done = await api.post("/v1/tool-approvals/ta-1/approve", params={"namespace": "team-a"}, headers=A,
                          json={"decided_by": "the-ceo"})
    assert done.status_code == 200 and done.json()["status"]["decided_by"] == "a-writer"


# -- cluster-wide policies are an admin's ------------------------------------------------------------


async def test_only_an_admin_writes_a_policy_that_governs_every_namespace(api, store):
    budget = {"apply_mode": "global", "max_tokens_per_run": 10}
    await api.post("/v1/agent-policies", json=doc("AgentPolicy", "tight", "team-b", budget), headers=B)
    tight = await store.get("AgentPolicy", "team-b", "tight")
    assert tight["metadata"]["annotations"]["orloj.dev/policy-scope"] == "namespace"
    # the annotation cannot be lifted by writing it differently
    forged = doc("AgentPolicy", "tight", "team-b", budget, annotations={"orloj.dev/policy-scope": "cluster"})
    assert (await api.put("/v1/agent-policies/tight", params={"namespace": "team-b"}, json=forged,
                          headers={**B, "If-Match": "*"})).status_code == 200
    assert (await store.get("AgentPolicy", "team-b", "tight"))["metadata"]["annotations"][
        "orloj.dev/policy-scope"] == "namespace"
    # an admin's global policy is cluster-wide, and no other token may change or delete it
    await api.post("/v1/agent-policies", json=doc("AgentPolicy", "org", "team-b", budget), headers=ADMIN)
    org = await store.get("AgentPolicy", "team-b", "org")
    assert "orloj.dev/policy-scope" not in (org["metadata"].get("annotations") or {})
    for token in (B, WIDE):
        assert (await api.delete("/v1/agent-policies/org", params={"namespace": "team-b"},
                                 headers=token)).status_code == 403
        put = await api.post("/v1/agent-policies", json=doc("AgentPolicy", "org", "team-b", budget), headers=token)
        assert put.status_code == 403 and "only an admin" in put.json()["error"]["message"]
    assert (await api.delete("/v1/agent-policies/org", params={"namespace": "team-b"},
                             headers=ADMIN)).status_code == 204


async def _tasks_in_two_namespaces(store, policy_meta: dict) -> dict[str, dict]:
    for ns in ("team-a", "team-b"):
        for obj in (mock_endpoint(), agent("worker", ns), doc("AgentSystem", "sys", ns, {"agents": ["worker"]})):
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": ns}}
            await store.upsert(normalize(obj))
    await store.create(normalize(doc("AgentPolicy", "tight", "team-a",
                                     {"apply_mode": "global", "max_tokens_per_run": 1}, **policy_meta)))
    for ns in ("team-a", "team-b"):
        await store.create(normalize(doc("Task", "job", ns, {"system": "sys", "input": {"topic": "x"}})))
    async with Running(store):
        return {ns: await wait_phase(store, "job", namespace=ns) for ns in ("team-a", "team-b")}


async def test_a_confined_global_policy_governs_its_namespace_and_no_other():
    """The issue's incident: a writer of team-a set max_tokens_per_run globally and every tenant's
    tasks failed. Written by a non-admin, it now fails only team-a's."""
    done = await _tasks_in_two_namespaces(MemoryStore(), {"annotations": {"orloj.dev/policy-scope": "namespace"}})
    assert done["team-a"]["status"]["errorCode"] == "token_budget_exceeded"
    assert done["team-b"]["status"]["phase"] == "Succeeded", done["team-b"]["status"].get("lastError")


async def test_an_admins_global_policy_still_governs_every_namespace():
    done = await _tasks_in_two_namespaces(MemoryStore(), {})
    assert {ns: t["status"].get("errorCode") for ns, t in done.items()} == {
        "team-a": "token_budget_exceeded", "team-b": "token_budget_exceeded"}


# -- references across namespaces ---------------------------------------------------------------------


def _secret(name: str, namespace: str, value: str, **meta) -> dict:
    return doc("Secret", name, namespace, {"data": {"value": base64.b64encode(value.encode()).decode()}}, **meta)


async def _run(store, ns: str, *docs) -> dict:
    for obj in docs:
        await store.upsert(normalize(obj))
    await store.create(normalize(doc("Task", "job", ns, {"system": "sys", "input": {"topic": "x"}})))
    async with Running(store):
        return await wait_phase(store, "job", namespace=ns)


@pytest.mark.parametrize("shared", [None, "team-c, team-x", "team-a", "*"])
async def test_a_secret_model_and_role_of_another_namespace_need_its_consent(shared):
    meta = {"annotations": {"orloj.dev/shared-with": shared}} if shared else {}
    store = MemoryStore()
    task = await _run(
        store, "team-a",
        _secret("llm-key", "shared", "sk-shared-0123456789", **meta),
        doc("ModelEndpoint", "llm", "shared", {"provider": "mock", "default_model": "m",
                                               "auth": {"secretRef": "shared/llm-key"}}, **meta),
        doc("AgentRole", "reader", "shared", {"permissions": ["tool:x:invoke"]}, **meta),
        doc("Agent", "worker", "team-a", {"model_ref": "shared/llm", "prompt": "hi", "roles": ["shared/reader"]}),
        doc("AgentSystem", "sys", "team-a", {"agents": ["worker"]}))
    status = task["status"]
    if shared in ("team-a", "*"):
        assert status["phase"] == "Succeeded", status.get("lastError")
        return
    assert status["phase"] == "Failed" and status["errorCode"] == "task_invalid"
    for what in ("model endpoint", "role"):
        assert (f'{what} "shared/{"llm" if what == "model endpoint" else "reader"}" is in namespace "shared", which '
                f'does not share it with namespace "team-a"') in status["lastError"]
    assert "orloj.dev/shared-with" in status["lastError"]


async def test_a_secret_of_another_namespace_is_read_only_when_shared():
    from orloj_ray.secrets import resolve_secret

    store = MemoryStore()
    await store.create(normalize(_secret("key", "team-b", "b-secret-value")))
    with pytest.raises(LookupError, match='secret "team-b/key" is in namespace "team-b", which does not share it'):
        await resolve_secret(store, "team-a", "team-b/key")
    assert await resolve_secret(store, "team-b", "key") == "b-secret-value"
    await store.upsert(normalize(_secret("key", "team-b", "b-secret-value",
                                         annotations={"orloj.dev/shared-with": "team-a"})))
    assert await resolve_secret(store, "team-a", "team-b/key") == "b-secret-value"


async def test_a_webhook_runs_a_template_of_another_namespace_only_when_shared():
    from datetime import datetime, timezone

    store = MemoryStore()
    template = doc("Task", "tmpl", "team-b", {"system": "s", "mode": "template"})
    await store.create(normalize(template))
    hook = normalize(doc("TaskWebhook", "hook", "team-a", {"task_ref": "team-b/tmpl",
                                                         "auth": {"profile": "generic", "secret_ref": "k"}}))
    now = datetime.now(timezone.utc)
    with pytest.raises(ValueError, match='task template "team-b/tmpl" is in namespace "team-b", which does not'):
        await create_run_task(store, hook, "evt-1", b"{}", now)
    assert [t["metadata"]["name"] for t in (await store.list("Task")).items] == ["tmpl"]
    await store.upsert(normalize({**template, "metadata": {**template["metadata"],
                                                           "annotations": {"orloj.dev/shared-with": "team-a"}}}))
    assert (await create_run_task(store, hook, "evt-1", b"{}", now)).startswith("team-b/")


async def test_with_auth_off_the_api_is_as_before(store):
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.post("/v1/agents", json=agent("b1", "team-b"))).status_code == 201
        assert (await http.get("/v1/agents/b1", params={"namespace": "team-b"})).status_code == 200
        policy = doc("AgentPolicy", "org", "team-b", {"apply_mode": "global"})
        assert (await http.post("/v1/agent-policies", json=policy)).status_code == 201
    assert "annotations" not in (await store.get("AgentPolicy", "team-b", "org"))["metadata"] or \
        "orloj.dev/policy-scope" not in (await store.get("AgentPolicy", "team-b", "org"))["metadata"]["annotations"]
    assert await store.list_audit() == []
