"""CachedReads: configuration reads from memory that are as fresh as a store read after sync()."""

from __future__ import annotations

import asyncio

import pytest

from orloj_ray.errors import NotFound
from orloj_ray.store import MemoryStore, parse_label_selector
from orloj_ray.store import cache as cache_module
from orloj_ray.store.cache import CachedReads
from test_store_contract import store  # noqa: F401 - the memory and PostgreSQL stores


def obj(kind: str, name: str, namespace: str = "default", labels: dict | None = None, **spec) -> dict:
    meta = {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})}
    return {"apiVersion": "orloj.dev/v1", "kind": kind, "metadata": meta, "spec": spec}


class Counting:
    """The store, counting calls by method."""

    def __init__(self, store):
        self.store, self.calls = store, {}

    def __getattr__(self, name):
        method = getattr(self.store, name)

        async def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return await method(*args, **kwargs)
        return counted


async def test_reads_after_sync_match_the_store(store):
    await store.create(obj("Agent", "a", prompt="one"))
    await store.create(obj("Agent", "b", namespace="team", labels={"tier": "gold"}))
    reads = CachedReads(store, ["Agent", "AgentPolicy"])
    await reads.sync()
    assert await reads.get("Agent", "default", "a") == await store.get("Agent", "default", "a")
    assert [o["metadata"]["name"] for o in (await reads.list("Agent")).items] == ["a", "b"]
    assert [o["metadata"]["name"] for o in (await reads.list("Agent", "team")).items] == ["b"]
    gold = await reads.list("Agent", None, parse_label_selector("tier=gold"))
    assert [o["metadata"]["name"] for o in gold.items] == ["b"]
    page = await reads.list("Agent", None, None, 1)
    assert [o["metadata"]["name"] for o in page.items] == ["a"] and page.continue_ == "default/a"

    # writes are seen after the next sync, not before
    await store.upsert(obj("Agent", "a", prompt="two"))
    await store.create(obj("AgentPolicy", "p"))
    await store.delete("Agent", "team", "b")
    assert (await reads.get("Agent", "default", "a"))["spec"]["prompt"] == "one"
    await reads.sync()
    assert await reads.get("Agent", "default", "a") == await store.get("Agent", "default", "a")
    assert (await reads.get("AgentPolicy", "default", "p"))["metadata"]["resourceVersion"] == "1"
    with pytest.raises(NotFound, match='agent "b" not found'):
        await reads.get("Agent", "team", "b")

    # status writes keep status and resourceVersion current
    current = await store.get("Agent", "default", "a")
    await store.update_status("Agent", "default", "a", {"phase": "Ready"}, current["metadata"]["resourceVersion"])
    await reads.sync()
    assert await reads.get("Agent", "default", "a") == await store.get("Agent", "default", "a")


async def test_other_kinds_are_read_from_the_store_and_secrets_are_refused(store):
    await store.create(obj("Secret", "s", data={"k": "dmFsdWU="}))
    reads = CachedReads(store, ["Agent"])
    await reads.sync()
    assert (await reads.get("Secret", "default", "s"))["spec"]["data"] == {"k": "dmFsdWU="}  # never the masked event
    with pytest.raises(ValueError, match="Secret"):
        CachedReads(store, ["Agent", "Secret"])
    with pytest.raises(RuntimeError, match="before its first sync"):
        await CachedReads(store, ["Agent"]).get("Agent", "default", "a")


async def test_concurrent_syncs_share_store_calls():
    store = MemoryStore()
    counting = Counting(store)
    reads = CachedReads(counting, ["Agent"])
    await reads.sync()
    before = dict(counting.calls)
    for i in range(20):
        await store.create(obj("Task", f"t{i}"))  # other kinds' events are not fetched
    await store.create(obj("Agent", "late"))
    await asyncio.gather(*(reads.sync() for _ in range(50)))
    made = {k: counting.calls.get(k, 0) - before.get(k, 0) for k in counting.calls}
    assert made["last_event_id"] <= 2 and made.get("events_after", 0) <= 2  # not 50 of each
    assert (await reads.get("Agent", "default", "late"))["metadata"]["name"] == "late"


async def test_a_cache_far_behind_reloads_instead_of_replaying(monkeypatch):
    monkeypatch.setattr(cache_module, "REFILL_AFTER", 5)
    store = MemoryStore(event_capacity=8)  # the events it missed are gone from the log
    reads = CachedReads(store, ["Agent"])
    await reads.sync()
    await store.create(obj("Agent", "kept"))
    await store.create(obj("Agent", "gone"))
    for i in range(10):
        await store.create(obj("Task", f"t{i}"))
    await store.delete("Agent", "default", "gone")
    await reads.sync()
    assert [o["metadata"]["name"] for o in (await reads.list("Agent")).items] == ["kept"]


async def test_a_failed_sync_raises_and_the_next_one_recovers():
    store = MemoryStore()
    reads = CachedReads(store, ["Agent"])
    await reads.sync()

    async def down(*args, **kwargs):
        raise ConnectionError("store down")

    reads.store = Counting(store)
    real = store.last_event_id
    store.last_event_id = down
    with pytest.raises(ConnectionError):
        await reads.sync()
    store.last_event_id = real
    await store.create(obj("Agent", "after"))
    await reads.sync()
    assert (await reads.get("Agent", "default", "after"))["metadata"]["name"] == "after"


async def test_sync_after_an_event_waits_only_when_no_sync_covered_it():
    """``sync(after=id)``: what a task created at event ``id`` needs (the engine's claim): the
    configuration committed up to that event, which a sync done since may already hold."""
    store = MemoryStore()
    counting = Counting(store)
    reads = CachedReads(counting, ["Agent"])
    await reads.sync()
    await store.create(obj("Agent", "a"))
    await store.create(obj("Task", "t"))
    created = await store.last_event_id()  # the task's creation
    await reads.sync(after=created)  # not covered yet: it syncs
    assert (await reads.get("Agent", "default", "a"))["metadata"]["name"] == "a"
    await reads.sync()  # a sync that read an id past the task's creation
    before = dict(counting.calls)
    await store.create(obj("Agent", "later"))
    await reads.sync(after=created)  # covered: no store call, and nothing newer is promised
    assert counting.calls == before
    with pytest.raises(NotFound):
        await reads.get("Agent", "default", "later")
    await reads.sync()
    assert (await reads.get("Agent", "default", "later"))["metadata"]["name"] == "later"
