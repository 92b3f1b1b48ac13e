"""MemoryStore specifics (the shared behaviour is in test_store_contract.py) and store helpers."""

from __future__ import annotations

import asyncio
import re

import pytest

from orloj_ray.store import MemoryStore, Store
from orloj_ray.store.util import clean_rv, clone, now_rfc3339, now_rfc3339_nano


def agent(name: str) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": name}, "spec": {}}


def test_memory_store_satisfies_protocol():
    assert isinstance(MemoryStore(), Store)


async def test_event_ring_keeps_only_the_newest():
    store = MemoryStore(event_capacity=3)
    for i in range(5):
        await store.create(agent(f"n{i}"))
    kept = await store.events_after(0)
    assert [(e.id, e.name) for e in kept] == [(3, "n2"), (4, "n3"), (5, "n4")]
    assert [e.name for e in await store.events_after(3)] == ["n3", "n4"]
    assert await store.last_event_id() == 5


async def test_waiting_still_works_after_many_timeouts():
    store = MemoryStore()
    await asyncio.gather(*(store.events_after(0, timeout_s=0.01) for _ in range(100)))
    waiter = asyncio.create_task(store.events_after(0, timeout_s=5))
    await asyncio.sleep(0.01)
    await store.create(agent("a"))
    assert [e.name for e in await asyncio.wait_for(waiter, 1)] == ["a"]


def test_time_formats():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_rfc3339())
    stamp = now_rfc3339_nano()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", stamp)
    assert not re.search(r"\.\d*0Z$", stamp)


@pytest.mark.parametrize("raw, clean", [
    ("3", "3"), (' "3" ', "3"), ('W/"3"', "3"), ("*", "*"), ("", ""), (None, ""),
])
def test_clean_rv(raw, clean):
    assert clean_rv(raw) == clean


def test_clone_is_deep():
    data = {"a": [{"b": 1}], "c": ("x",)}
    copied = clone(data)
    copied["a"][0]["b"] = 2
    assert data == {"a": [{"b": 1}], "c": ("x",)}
