"""The token buffer (``orloj_ray.observability.tokens``) and ``GET /v1/tasks/{name}/stream`` over
it, in process: bounded memory, readers that wait, the watched set agent actors follow, late
joiners, and the stream's events and end. The same route on the Ray deployment, fed by a real
agent actor, is in tests/test_token_stream_ray.py."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from orloj_ray.observability.tokens import TokenBuffer, TokenLimits, token_key
from orloj_ray.store import MemoryStore
from serve.app import create_app
from tests_support import free_port


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _tok(delta: str, step: int = 1, agent: str = "a") -> dict:
    return {"event": "token", "data": {"agent": agent, "message_id": "m1", "step": step, "delta": delta}}


async def test_readers_get_what_was_published_after_their_cursor_and_wait_for_more():
    buf = TokenBuffer()
    buf.publish("ns/t", [_tok("Hel"), _tok("lo")])
    got = await buf.read("ns/t")
    assert [e["data"]["delta"] for e in got["events"]] == ["Hel", "lo"] and got["cursor"] == 2
    waiting = asyncio.ensure_future(buf.read("ns/t", got["cursor"], timeout_s=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    buf.publish("ns/t", [_tok(" world")])
    more = await asyncio.wait_for(waiting, 1)
    assert [(e["seq"], e["data"]["delta"]) for e in more["events"]] == [(3, " world")]
    empty = await buf.read("ns/t", 3, timeout_s=0.05)
    assert empty["events"] == [] and empty["cursor"] == 3 and not empty["ended"]


async def test_a_cursor_from_a_restarted_buffer_reads_from_the_start():
    buf = TokenBuffer()
    buf.publish("ns/t", [_tok("fresh")])
    got = await buf.read("ns/t", after=57)
    assert [e["data"]["delta"] for e in got["events"]] == ["fresh"] and got["cursor"] == 1


async def test_reading_marks_a_task_watched_and_followers_hear_of_it_at_once():
    clock = Clock()
    buf = TokenBuffer(TokenLimits(watch_ttl_s=30), clock=clock)
    version, keys = buf.watched()
    assert keys == []
    follower = asyncio.ensure_future(buf.watched_changes(version, timeout_s=5))
    await asyncio.sleep(0.02)
    assert not follower.done()
    await buf.read("ns/t")
    new_version, keys = await asyncio.wait_for(follower, 1)
    assert keys == ["ns/t"] and new_version != version
    # a watcher that stops reading stops counting after the TTL
    clock.now += 36
    assert buf.watched()[1] == []
    # finish: not watched any more, readers told it ended
    await buf.read("ns/t")
    assert buf.watched()[1] == ["ns/t"]
    await buf.finish("ns/t")
    assert buf.watched()[1] == []
    assert (await buf.read("ns/t"))["ended"]


async def test_memory_is_bounded_per_task_and_in_tasks():
    clock = Clock()
    buf = TokenBuffer(TokenLimits(max_events=5, max_chars=12, max_streams=3, idle_ttl_s=60, linger_s=10), clock=clock)
    buf.publish("ns/t", [_tok(str(i)) for i in range(10)])
    assert [e["data"]["delta"] for e in (await buf.read("ns/t"))["events"]] == ["5", "6", "7", "8", "9"]
    buf.publish("ns/t", [_tok("x" * 10)])
    assert sum(len(e["data"]["delta"]) for e in (await buf.read("ns/t"))["events"]) <= 12
    for name in ("a", "b", "c"):
        clock.now += 1
        buf.publish(f"ns/{name}", [_tok("hi")])
    assert buf.stats()["streams"] == 3  # ns/t, the least recently used, went first
    assert (await buf.read("ns/t"))["events"] == []
    # a finished task's buffer stays linger_s for late readers, an idle one idle_ttl_s
    await buf.finish("ns/b")
    clock.now += 5
    assert (await buf.read("ns/b"))["ended"]
    clock.now += 6
    buf.watched()  # a sweep
    late = await buf.read("ns/b")
    assert late["events"] == [] and not late["ended"]  # gone: a new, empty buffer
    clock.now += 61
    buf.watched()
    assert buf.stats()["streams"] == 0
    with pytest.raises(ValueError, match="max_chars"):
        TokenLimits(max_chars=0)


# ---------------------------------------------------------------------------------------------
# The route, in process


def _task(name: str, phase: str = "Running") -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": name, "namespace": "default"},
            "spec": {"system": "s"}, "status": {"phase": phase}}


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = next(line[7:] for line in lines if line.startswith("event: "))
            out.append((name, json.loads(next(line[6:] for line in lines if line.startswith("data: ")))))
    return out


async def _set_phase(store: MemoryStore, name: str, phase: str) -> None:
    from orloj_ray.store.util import mutate_status

    await mutate_status(store, "Task", "default", name, lambda st: {**st, "phase": phase})


@contextlib.asynccontextmanager
async def serving(app):
    """``app`` on uvicorn on loopback, in this test's event loop (so the test may publish into
    the app's buffer directly); yields an httpx client for it. ASGITransport would hold a
    streamed body back until it ends."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           lifespan="off", access_log=False))
    running = asyncio.ensure_future(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.config.port}", timeout=10) as http:
            yield http
    finally:
        server.should_exit = True
        await asyncio.wait_for(running, 10)


async def test_the_stream_sends_tokens_as_published_then_ends_with_the_task():
    store, buf = MemoryStore(), TokenBuffer()
    await store.create(_task("t1"))
    app = create_app(store, token_streams=buf, wait_s=0.2)
    seen: list[tuple[str, dict]] = []
    async with serving(app) as http:
        async def follow():
            async with http.stream("GET", "/v1/tasks/t1/stream") as resp:
                assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
                text = ""
                async for chunk in resp.aiter_text():
                    text += chunk
                    seen[:] = _events(text)
        reader = asyncio.ensure_future(follow())
        for _ in range(100):  # the reader has registered: the task is watched
            if buf.watched()[1]:
                break
            await asyncio.sleep(0.01)
        assert buf.watched()[1] == [token_key("default", "t1")]
        buf.publish("default/t1", [_tok("Hello"), _tok(" there")])
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert [(n, d["delta"]) for n, d in seen] == [("token", "Hello"), ("token", " there")]  # before the end
        buf.publish("default/t1", [{"event": "turn_end", "data": {"agent": "a", "message_id": "m1", "step": 1}}])
        await _set_phase(store, "t1", "Succeeded")
        await asyncio.wait_for(reader, 5)
    assert [n for n, _ in seen] == ["token", "token", "turn_end", "end"]
    assert seen[0][1] == {"agent": "a", "message_id": "m1", "step": 1, "delta": "Hello", "seq": 1}
    assert seen[-1][1] == {"phase": "Succeeded"}
    assert buf.watched()[1] == []  # finished: nobody streams it any more


async def test_a_late_joiner_gets_the_buffer_first_and_can_resume_after_a_seq():
    store, buf = MemoryStore(), TokenBuffer()
    await store.create(_task("t2", "Succeeded"))
    buf.publish("default/t2", [_tok("one "), _tok("two", step=2), {"event": "turn_end", "data": {"agent": "a"}}])
    app = create_app(store, token_streams=buf)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        whole = _events((await http.get("/v1/tasks/t2/stream")).text)
        resumed = _events((await http.get("/v1/tasks/t2/stream", params={"after": 2})).text)
    assert [(n, d.get("delta")) for n, d in whole] == [("token", "one "), ("token", "two"), ("turn_end", None),
                                                        ("end", None)]
    assert [n for n, _ in resumed] == ["turn_end", "end"]


async def test_the_stream_refuses_bad_input_and_unknown_tasks():
    store = MemoryStore()
    await store.create(_task("t3"))
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        missing = await http.get("/v1/tasks/nope/stream")
        bad = await http.get("/v1/tasks/t3/stream", params={"after": "soon"})
        other_ns = await http.get("/v1/tasks/t3/stream", params={"namespace": "elsewhere"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert bad.status_code == 400 and "after" in bad.json()["error"]["message"]
    assert other_ns.status_code == 404


async def test_a_deleted_task_ends_its_stream():
    store, buf = MemoryStore(), TokenBuffer()
    await store.create(_task("t4"))
    app = create_app(store, token_streams=buf, wait_s=0.2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        reading = asyncio.ensure_future(http.get("/v1/tasks/t4/stream"))
        await asyncio.sleep(0.3)
        await store.delete("Task", "default", "t4")
        resp = await asyncio.wait_for(reading, 5)
    assert _events(resp.text) == [("end", {"phase": "", "deleted": True})]


async def test_a_namespace_scoped_token_streams_its_own_tasks_only():
    from orloj_ray.config import ServerConfig
    from serve.auth import Authenticator

    store, buf = MemoryStore(), TokenBuffer()
    for ns in ("team-a", "team-b"):
        await store.create({**_task("t5", "Succeeded"), "metadata": {"name": "t5", "namespace": ns}})
        buf.publish(token_key(ns, "t5"), [_tok(f"said in {ns}")])
    auth = Authenticator.from_config(ServerConfig(auth_mode="token", api_tokens="a:tok-a-1234:reader:team-a"))
    app = create_app(store, token_streams=buf, auth=auth)
    headers = {"Authorization": "Bearer tok-a-1234"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        own = await http.get("/v1/tasks/t5/stream", params={"namespace": "team-a"}, headers=headers)
        other = await http.get("/v1/tasks/t5/stream", params={"namespace": "team-b"}, headers=headers)
        anonymous = await http.get("/v1/tasks/t5/stream", params={"namespace": "team-a"})
    assert [d.get("delta") for _, d in _events(own.text)] == ["said in team-a", None]
    assert other.status_code == 404  # as if it did not exist
    assert anonymous.status_code == 401
