"""Agent memory: the built-in memory.* tools over the in-memory and pgvector providers, embeddings
through the gateway (mock provider) with the lexical fallback, the entries API, and a task whose
agents share a Memory."""

from __future__ import annotations

import asyncio
import json

import httpx
import psycopg
import pytest

from orloj_ray.engine.controller import Controller
from orloj_ray.errors import InvalidResource
from orloj_ray.engine.reconcile import reconcile
from orloj_ray.engine.resolve import resolve_memory, resolve_task
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.gateway import CompletionReply, CompletionRequest, Endpoint, ModelGateway, ToolCall, default_gateway
from orloj_ray.memory import LocalMemoryService, MemoryBackendError, MemoryToolRunner, chunk_text, register_memory
from orloj_ray.resources import normalize
from orloj_ray.store import MemoryStore
from orloj_ray.tools import ToolCallContext, ToolError, default_tool_runner
from serve.app import create_app

CTX = ToolCallContext("default", "t", "a", "k")


def doc(kind: str, name: str, **spec) -> dict:
    return normalize({"apiVersion": "orloj.dev/v1", "kind": kind, "metadata": {"name": name, "namespace": "default"},
                      "spec": spec}, kind=kind)


async def memory(store, name: str = "notes", **spec) -> tuple[dict, object]:
    obj = await store.create(doc("Memory", name, **spec))
    return obj, await resolve_memory(store, obj)


async def test_tool_operations_follow_upstream_shapes_and_search_is_lexical_without_embeddings():
    store = MemoryStore()
    _, ref = await memory(store)
    svc = LocalMemoryService(default_gateway())
    assert await svc.execute(ref, "memory.write", {"key": "doc/a", "value": "Ray actors restart on failure"}) == {
        "status": "ok", "key": "doc/a"}
    await svc.execute(ref, "write", {"key": "doc/b", "value": "PostgreSQL stores the tasks"})
    await svc.execute(ref, "write", {"key": "misc", "value": "actors actors actors everywhere"})
    assert await svc.execute(ref, "read", {"key": "doc/a"}) == {"found": True, "key": "doc/a",
                                                                "value": "Ray actors restart on failure"}
    assert await svc.execute(ref, "read", {"key": "nope"}) == {"found": False, "key": "nope"}
    listed = await svc.execute(ref, "list", {"prefix": "doc/"})
    assert listed == {"entries": [{"key": "doc/a", "value": "Ray actors restart on failure"},
                                  {"key": "doc/b", "value": "PostgreSQL stores the tasks"}], "count": 2}
    found = await svc.execute(ref, "search", {"query": "actors restart"})
    assert found["ranking"] == "lexical (no embedding model configured)"
    assert [r["key"] for r in found["results"]] == ["doc/a", "misc"] and found["count"] == 2
    assert found["results"][0]["score"] > found["results"][1]["score"] > 0
    assert (await svc.execute(ref, "search", {"query": "stores the", "top_k": 1}))["results"][0]["key"] == "doc/b"
    ingested = await svc.execute(ref, "ingest", {"source": "guide", "content": "x" * 2500})
    assert ingested == {"status": "ok", "source": "guide", "chunks_stored": 3}
    assert [e["key"] for e in (await svc.execute(ref, "list", {"prefix": "guide/"}))["entries"]] == [
        "guide/chunk-0000", "guide/chunk-0001", "guide/chunk-0002"]
    assert [len(c) for c in chunk_text("y" * 2500, 1000, 200)] == [1000, 1000, 900]
    with pytest.raises(MemoryBackendError, match="key is required"):
        await svc.execute(ref, "write", {"value": "v"})


async def test_runner_returns_json_and_reports_bad_input_with_codes():
    store = MemoryStore()
    await store.create(doc("Agent", "a1", model_ref="m", memory={"ref": "notes", "allow": ["read", "write"]}))
    _, ref = await memory(store)
    from orloj_ray.memory import memory_tools

    tools = {t["metadata"]["name"]: t for t in memory_tools(ref, ["read", "memory.write"])}
    assert sorted(tools) == ["memory.read", "memory.write"]
    assert tools["memory.write"]["spec"]["input_schema"]["required"] == ["key", "value"]
    runner = MemoryToolRunner(LocalMemoryService())
    assert json.loads(await runner.call(tools["memory.write"], '{"key": "k", "value": "v"}', CTX)) == {
        "status": "ok", "key": "k"}
    assert json.loads(await runner.call(tools["memory.read"], '{"key": "k"}', CTX))["value"] == "v"
    with pytest.raises(ToolError) as exc:
        await runner.call(tools["memory.read"], "not json", CTX)
    assert exc.value.code == "invalid_input"
    with pytest.raises(ToolError) as exc:
        await runner.call(tools["memory.read"], "{}", CTX)
    assert exc.value.code == "invalid_input" and "key is required" in exc.value.message


async def test_embeddings_through_the_gateway_rank_by_meaning_of_shared_words():
    store = MemoryStore()
    await store.create(doc("ModelEndpoint", "embedder", provider="mock", default_model="hash-64"))
    _, ref = await memory(store, embedding_model="embedder")
    assert ref.embedding is not None and ref.embedding.model == "hash-64"
    svc = LocalMemoryService(default_gateway())
    await svc.execute(ref, "write", {"key": "fruit", "value": "apples and pears grow on trees"})
    await svc.execute(ref, "write", {"key": "db", "value": "postgres replication and backups"})
    found = await svc.execute(ref, "search", {"query": "which trees grow apples", "top_k": 2})
    assert found["ranking"] == "embedding:embedder/hash-64"
    assert [r["key"] for r in found["results"]] == ["fruit", "db"]
    assert found["results"][0]["score"] > found["results"][1]["score"]
    _, missing = await memory(store, "other", embedding_model="no-such-endpoint")
    svc2 = LocalMemoryService(default_gateway())
    await svc2.execute(missing, "write", {"key": "k", "value": "some words"})
    ranking = (await svc2.execute(missing, "search", {"query": "words"}))["ranking"]
    assert ranking.startswith("lexical (embedding model unavailable: embedding model resolution failed:")
    assert "no-such-endpoint" in ranking


async def test_unsupported_provider_and_its_status():
    store = MemoryStore()
    with pytest.raises(InvalidResource, match='unsupported spec.provider "bogus"'):
        doc("Memory", "bogus", provider="bogus")  # refused at apply now ...
    legacy = doc("Memory", "bogus")
    legacy["spec"]["provider"] = "bogus"  # ... but one stored before that still gets a clear status
    bogus = await store.create(legacy)
    with pytest.raises(MemoryBackendError, match='unsupported memory provider "bogus"'):
        await resolve_memory(store, bogus)
    await reconcile(store, bogus)
    status = (await store.get("Memory", "default", "bogus"))["status"]
    assert status["phase"] == "Error" and "unsupported memory provider" in status["lastError"]
    ok = await store.create(doc("Memory", "fine"))
    await reconcile(store, ok)
    assert (await store.get("Memory", "default", "fine"))["status"]["phase"] == "Ready"


async def _has_vector_extension(url: str) -> bool:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return await cur.fetchone() is not None


async def test_pgvector_provider_against_real_postgresql(pg_url):
    store = MemoryStore()
    await store.create(doc("ModelEndpoint", "embedder", provider="mock", default_model="hash-64"))
    obj, ref = await memory(store, "pg-notes", provider="pgvector", endpoint=pg_url, embedding_model="embedder")
    svc = LocalMemoryService(default_gateway())
    if not await _has_vector_extension(pg_url):
        # this PostgreSQL has no pgvector: a clear error naming the extension and how to install it
        with pytest.raises(MemoryBackendError) as exc:
            await svc.execute(ref, "write", {"key": "k", "value": "v"})
        assert exc.value.code == "memory_backend_unavailable"
        assert 'extension "vector"' in exc.value.message and "install pgvector" in exc.value.message
        assert "CREATE EXTENSION vector" in exc.value.message
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            cur = await conn.execute("SELECT to_regclass('orloj_memory_entries')")
            assert (await cur.fetchone())[0] is None  # nothing was created
        await reconcile(store, obj)
        status = (await store.get("Memory", "default", "pg-notes"))["status"]
        assert status["phase"] == "Error" and 'extension "vector"' in status["lastError"]
        return
    await svc.execute(ref, "write", {"key": "fruit", "value": "apples and pears grow on trees"})
    await svc.execute(ref, "write", {"key": "db", "value": "postgres replication and backups"})
    await svc.execute(ref, "write", {"key": "db", "value": "postgres replication, backups and vacuum"})
    assert (await svc.execute(ref, "read", {"key": "db"}))["value"] == "postgres replication, backups and vacuum"
    assert (await svc.execute(ref, "list", {}))["count"] == 2
    found = await svc.execute(ref, "search", {"query": "which trees grow apples"})
    assert found["ranking"].startswith("embedding:") and found["results"][0]["key"] == "fruit"
    fresh = LocalMemoryService(default_gateway())  # another process would see the same rows
    assert (await fresh.execute(ref, "read", {"key": "fruit"}))["found"] is True
    await reconcile(store, obj)
    assert (await store.get("Memory", "default", "pg-notes"))["status"]["phase"] == "Ready"


class ScriptedProvider:
    """Writer agents call memory.write, reader agents memory.read, then each reports what it got."""

    async def complete(self, endpoint: Endpoint, request: CompletionRequest) -> CompletionReply:
        agent = request.metadata["agent"]
        results = [m for m in request.messages if m.role == "tool"]
        if results:
            return CompletionReply(text=f"{agent} saw: {results[-1].content}")
        if agent == "writer":
            return CompletionReply(tool_calls=[ToolCall("c1", "memory.write", json.dumps(
                {"key": "finding", "value": "MCP and memory both work"}))])
        return CompletionReply(tool_calls=[ToolCall("c1", "memory.read", json.dumps({"key": "finding"}))])


async def test_agents_of_a_task_share_memory_and_the_api_lists_its_entries():
    store = MemoryStore()
    await store.create(doc("ModelEndpoint", "scripted", provider="mock", default_model="m"))
    await store.create(doc("Memory", "shared"))
    for name in ("writer", "reader"):
        await store.create(doc("Agent", name, model_ref="scripted", prompt=f"You are the {name}.",
                               memory={"ref": "shared", "allow": ["read", "write"] if name == "writer" else ["read"]}))
    await store.create(doc("AgentSystem", "mem-system", agents=["writer", "reader"],
                           graph={"writer": {"next": "reader"}}))
    await store.create(doc("Task", "mem-task", system="mem-system", input={"topic": "remember"}))
    resolved = await resolve_task(store, await store.get("Task", "default", "mem-task"))
    assert [t["metadata"]["name"] for t in resolved.tools["reader"]] == ["memory.read"]
    service = LocalMemoryService()
    tools = default_tool_runner()
    register_memory(tools, service)
    runtime = LocalAgentRuntime(gateway=ModelGateway({"mock": ScriptedProvider()}), tools=tools)
    controller = Controller(store, runtime, worker="test-worker")
    loop = asyncio.create_task(controller.run())
    try:
        async with asyncio.timeout(20):
            while (await store.get("Task", "default", "mem-task"))["status"].get("phase") not in (
                    "Succeeded", "Failed", "DeadLetter"):
                await asyncio.sleep(0.05)
    finally:
        controller.stop()
        await loop
    status = (await store.get("Task", "default", "mem-task"))["status"]
    assert status["phase"] == "Succeeded", status.get("lastError")
    assert "MCP and memory both work" in status["output"]["final_output"]
    assert status["output"]["final_output"].startswith("reader saw:")

    app = create_app(store)
    app.state.memory = service
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        listed = (await http.get("/v1/memories/shared/entries", params={"prefix": "fin"})).json()
        assert listed == {"entries": [{"key": "finding", "value": "MCP and memory both work"}], "count": 1}
        searched = (await http.get("/v1/memories/shared/entries", params={"q": "memory", "limit": "5"})).json()
        assert searched["count"] == 1 and searched["entries"][0]["key"] == "finding"
        assert searched["ranking"].startswith("lexical")
        missing = await http.get("/v1/memories/ghost/entries")
        assert missing.status_code == 404
