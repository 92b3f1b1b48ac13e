"""SSE resource watches and the control-plane event stream.

httpx's ASGITransport buffers the whole response, which never ends for a stream, so these
tests drive the ASGI app directly: ``Stream`` plays the server, hands body chunks over as
they are sent, and can disconnect like a client closing the socket. Every read is bounded.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from orloj_ray.store import MemoryStore
from serve.app import create_app

READ_TIMEOUT_S = 5.0


class Stream:
    def __init__(self, app, path: str, query: str = "", spec_version: str = "2.3", headers: dict | None = None):
        self.app, self.path, self.query, self.spec_version = app, path, query, spec_version
        self.extra_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.messages: asyncio.Queue = asyncio.Queue()
        self.disconnected = asyncio.Event()
        self.buffer = ""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> "Stream":
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": self.spec_version}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": self.path, "raw_path": self.path.encode(),
            "query_string": self.query.encode(), "root_path": "", "headers": [(b"host", b"test"), *self.extra_headers],
            "server": ("test", 80), "client": ("127.0.0.1", 5000),
        }
        sent_request = False

        async def receive():
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            await self.messages.put(message)

        self.task = asyncio.create_task(self.app(scope, receive, send))
        start = await asyncio.wait_for(self.messages.get(), READ_TIMEOUT_S)
        assert start["type"] == "http.response.start"
        self.status = start["status"]
        self.headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        self.disconnected.set()
        await asyncio.wait_for(self.task, READ_TIMEOUT_S)  # the stream must stop on its own

    async def next_frame(self, timeout: float = READ_TIMEOUT_S) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while "\n\n" not in self.buffer:
            message = await asyncio.wait_for(self.messages.get(), max(0.01, deadline - loop.time()))
            if message["type"] == "http.response.body":
                self.buffer += message.get("body", b"").decode()
                if not message.get("more_body", False) and "\n\n" not in self.buffer:
                    raise AssertionError("stream ended")
        frame, self.buffer = self.buffer.split("\n\n", 1)
        return frame

    async def next_event(self, timeout: float = READ_TIMEOUT_S) -> tuple[str, dict]:
        """The next ``event:`` frame as (event name, data), skipping keep-alive comments."""
        while True:
            frame = await self.next_frame(timeout)
            if frame.startswith(":"):
                continue
            lines = dict(line.split(": ", 1) for line in frame.split("\n"))
            return lines["event"], json.loads(lines["data"])


def agent(name: str, namespace: str = "default", prompt: str = "hi") -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": name, "namespace": namespace},
            "spec": {"model_ref": "m", "prompt": prompt}}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def app(store):
    return create_app(store, wait_s=0.1, heartbeat_s=15.0)


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=5) as c:
        yield c


async def test_watch_headers_and_added_after_connect(app, client):
    async with Stream(app, "/v1/agents/watch") as s:
        assert s.status == 200
        assert s.headers["content-type"] == "text/event-stream"
        assert s.headers["cache-control"] == "no-cache"
        assert "x-request-id" in s.headers
        assert (await client.post("/v1/agents", json=agent("late"))).status_code == 201
        name, data = await s.next_event()
        assert name == "resource"
        assert data["type"] == "added"
        assert data["resource"]["metadata"]["name"] == "late"
        assert data["resource"]["kind"] == "Agent"


async def test_watch_snapshot_then_updates_and_deletes(app, client):
    await client.post("/v1/agents", json=agent("b"))
    await client.post("/v1/agents", json=agent("a", namespace="z"))
    await client.post("/v1/agents", json=agent("a"))
    await client.post("/v1/tools", json={"kind": "Tool", "metadata": {"name": "other-kind"}, "spec": {}})
    async with Stream(app, "/v1/agents/watch") as s:
        snapshot = [await s.next_event() for _ in range(3)]
        assert [(d["type"], d["resource"]["metadata"]["namespace"], d["resource"]["metadata"]["name"])
                for _, d in snapshot] == [("added", "default", "a"), ("added", "default", "b"), ("added", "z", "a")]

        await client.post("/v1/agents", json=agent("a", prompt="v2"))
        _, data = await s.next_event()
        assert data["type"] == "updated" and data["resource"]["spec"]["prompt"] == "v2"
        assert data["resource"]["metadata"]["resourceVersion"] == "2"

        await client.put("/v1/agents/a/status", json={"metadata": {"resourceVersion": "2"},
                                                      "status": {"phase": "Ready"}})
        _, data = await s.next_event()
        assert data["type"] == "updated" and data["resource"]["status"]["phase"] == "Ready"
        assert data["resource"]["spec"]["prompt"] == "v2"

        await client.delete("/v1/agents/b")
        _, data = await s.next_event()
        assert data == {"type": "deleted",
                        "resource": {"metadata": {"name": "b", "namespace": "default", "resourceVersion": "1"}}}


async def test_watch_filters(app, client):
    await client.post("/v1/agents", json=agent("keep", namespace="ns1"))
    await client.post("/v1/agents", json=agent("drop", namespace="ns1"))
    await client.post("/v1/agents", json=agent("keep", namespace="ns2"))
    async with Stream(app, "/v1/agents/watch", "namespace=ns1&name=KEEP") as s:
        _, data = await s.next_event()
        assert data["resource"]["metadata"] == {**data["resource"]["metadata"], "name": "keep", "namespace": "ns1"}
        await client.post("/v1/agents", json=agent("drop", namespace="ns1", prompt="x"))
        await client.post("/v1/agents", json=agent("keep", namespace="ns2", prompt="x"))
        await client.post("/v1/agents", json=agent("keep", namespace="ns1", prompt="x"))
        _, data = await s.next_event()
        assert data["type"] == "updated"
        assert (data["resource"]["metadata"]["namespace"], data["resource"]["spec"]["prompt"]) == ("ns1", "x")


async def test_watch_resource_version_skips_known_objects(app, client):
    await client.post("/v1/agents", json=agent("old"))           # RV 1
    await client.post("/v1/agents", json=agent("newer"))
    await client.post("/v1/agents", json=agent("newer", prompt="2"))  # RV 2
    async with Stream(app, "/v1/agents/watch", "resourceVersion=1") as s:
        _, data = await s.next_event()
        assert data["resource"]["metadata"]["name"] == "newer"
        await client.post("/v1/agents", json=agent("old", prompt="2"))  # RV 2 > 1
        _, data = await s.next_event()
        assert data["type"] == "updated" and data["resource"]["metadata"]["name"] == "old"


async def test_watch_heartbeat(store):
    app = create_app(store, wait_s=0.05, heartbeat_s=0.2)
    async with Stream(app, "/v1/tasks/watch") as s:
        assert await s.next_frame(timeout=3) == ": keep-alive"


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_watch_stops_when_client_disconnects(app, spec_version):
    s = Stream(app, "/v1/task-schedules/watch", spec_version=spec_version)
    await s.__aenter__()
    await asyncio.sleep(0.05)
    await s.close()  # asserts the app task finished within the timeout
    assert s.task.done() and s.task.exception() is None


async def test_non_watchable_kind_has_no_watch(client):
    r = await client.get("/v1/tools/watch")
    assert r.status_code == 404  # read as a tool named "watch"


async def test_events_since_zero_replays_created(app, client):
    await client.post("/v1/tools", json={"kind": "Tool", "metadata": {"name": "t"}, "spec": {}})
    await client.post("/v1/agents", json=agent("a"))
    async with Stream(app, "/v1/events/watch", "since=0&kind=agent") as s:
        name, data = await s.next_event()
        assert name == "event"
        assert data["type"] == "resource.created"
        assert data["kind"] == "Agent" and data["name"] == "a" and data["namespace"] == "default"
        assert data["source"] == "apiserver" and data["action"] == "created"
        assert data["id"] >= 2 and data["timestamp"]
        assert data["data"]["metadata"]["name"] == "a"

        await client.delete("/v1/agents/a")
        _, data = await s.next_event()
        assert data["type"] == "resource.deleted" and data["data"]["metadata"]["name"] == "a"


async def test_events_without_since_are_live_only(app, client):
    await client.post("/v1/agents", json=agent("before"))
    async with Stream(app, "/v1/events/watch", "type=resource.created") as s:
        await client.post("/v1/agents", json=agent("after"))
        _, data = await s.next_event()
        assert data["name"] == "after"


async def test_events_secret_data_redacted(app, client):
    secret = {"kind": "Secret", "metadata": {"name": "k"}, "spec": {"stringData": {"value": "hunter2"}}}
    await client.post("/v1/secrets", json=secret)
    async with Stream(app, "/v1/events/watch", "since=0&kind=Secret") as s:
        _, data = await s.next_event()
        assert data["type"] == "resource.created"
        assert set(data["data"]["spec"]["data"].values()) == {"***"}
        assert "hunter2" not in json.dumps(data)
        assert "stringData" not in data["data"]["spec"]


async def test_events_bad_since_is_400(client):
    r = await client.get("/v1/events/watch", params={"since": "abc"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "since"
