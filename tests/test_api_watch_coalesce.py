"""A busy resource watch: writes of one object that arrive in one read of the event log are
sent as its latest state once (the event's own status plus the spec the stream already has),
and a delete in between is never folded away. The event stream itself is never coalesced."""

from __future__ import annotations

import asyncio

import pytest

from orloj_ray.store import MemoryStore
from serve.app import create_app
from test_api_watch import Stream, agent


class CountingStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.gets = 0

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        self.gets += 1
        return await super().get(kind, namespace, name)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def app(store):
    return create_app(store, wait_s=0.1, heartbeat_s=15.0)


async def burst(store, phases: list[str], rv: str) -> str:
    """Status writes with no suspension in between: the watch reads them in one batch."""
    for phase in phases:
        rv = (await store.update_status("Agent", "default", "a", {"phase": phase}, rv))["metadata"]["resourceVersion"]
    return rv


async def test_a_burst_of_status_writes_reaches_a_watch_once_as_the_latest_state_with_its_spec(app, store):
    await store.create(agent("a", prompt="p1"))
    async with Stream(app, "/v1/agents/watch") as s:
        _, first = await s.next_event()
        assert first["type"] == "added"
        gets = store.gets
        rv = await burst(store, [f"P{i}" for i in range(5)], first["resource"]["metadata"]["resourceVersion"])
        _, data = await s.next_event()
        assert data["type"] == "updated" and data["resource"]["status"]["phase"] == "P4"
        assert data["resource"]["spec"]["prompt"] == "p1" and data["resource"]["kind"] == "Agent"
        assert data["resource"]["metadata"]["resourceVersion"] == rv
        assert store.gets == gets  # built from the status event and the spec the stream sent before
        with pytest.raises(TimeoutError):  # the four superseded writes were not sent
            await s.next_event(timeout=0.5)


async def test_an_object_created_and_written_in_one_batch_is_sent_once_with_its_spec_without_a_read(app, store):
    async with Stream(app, "/v1/agents/watch") as s:
        await asyncio.sleep(0.2)  # the stream took its cursor
        gets = store.gets
        await store.create(agent("a", prompt="p1"))
        rv = await burst(store, ["Running", "Ready"], "1")
        _, data = await s.next_event()
        assert data["type"] == "added" and data["resource"]["status"]["phase"] == "Ready"
        assert data["resource"]["spec"]["prompt"] == "p1" and data["resource"]["metadata"]["resourceVersion"] == rv
        assert store.gets == gets  # the create event's spec completed the status event
        with pytest.raises(TimeoutError):
            await s.next_event(timeout=0.5)


async def test_a_delete_and_recreate_in_one_batch_is_sent_as_deleted_then_added(app, store):
    await store.create(agent("a", prompt="p1"))
    async with Stream(app, "/v1/agents/watch") as s:
        await s.next_event()
        await store.delete("Agent", "default", "a")
        await store.create(agent("a", prompt="p2"))
        await burst(store, ["New"], "1")
        _, gone = await s.next_event()
        _, back = await s.next_event()
        assert gone["type"] == "deleted" and gone["resource"]["metadata"]["name"] == "a"
        assert back["type"] == "added" and back["resource"]["spec"]["prompt"] == "p2"
        assert back["resource"]["status"]["phase"] == "New"


async def test_the_event_stream_keeps_every_write(app, store):
    await store.create(agent("a"))
    async with Stream(app, "/v1/events/watch", "kind=Agent") as s:
        await asyncio.sleep(0.2)  # the stream took its cursor
        await burst(store, ["A", "B", "C"], "1")
        phases = [(await s.next_event())[1]["data"]["status"]["phase"] for _ in range(3)]
        assert phases == ["A", "B", "C"]
