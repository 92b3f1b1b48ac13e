"""The Store contract: every implementation must pass this suite through the protocol alone."""

from __future__ import annotations

import asyncio
import copy
import re
import time

import pytest

from orloj_ray.errors import Conflict, InvalidResource, NotFound
from orloj_ray.store import Event, MemoryStore, Store, mutate_status, parse_label_selector


class Serialized:
    """A MemoryStore as the store actor runs it (``copy_values=False``) behind a boundary that
    copies every argument and answer, as Ray's serialization does."""

    def __init__(self):
        self._store = MemoryStore(copy_values=False)

    def __getattr__(self, method):
        async def call(*args, **kwargs):
            return copy.deepcopy(await getattr(self._store, method)(*copy.deepcopy(args), **copy.deepcopy(kwargs)))
        return call


@pytest.fixture(params=["memory", "memory-serialized", "postgres"])
async def store(request) -> Store:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "memory-serialized":
        yield Serialized()
    else:
        from pg_server import fresh_postgres_store

        async with fresh_postgres_store(request.getfixturevalue("pg_url")) as pg:
            yield pg


def agent(name: str, namespace: str | None = "default", *, labels: dict | None = None, **spec) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": meta,
            "spec": {"model_ref": "m", "prompt": "hi", **spec}}


async def new_events(store: Store, since: int) -> list[Event]:
    return await store.events_after(since)


# -- create / get / delete --------------------------------------------------------------------


async def test_create_sets_store_owned_metadata(store):
    created = await store.create(agent("a"))
    meta = created["metadata"]
    assert meta["resourceVersion"] == "1"
    assert meta["generation"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["createdAt"])
    assert created["status"] == {}
    assert await store.get("Agent", "default", "a") == created


async def test_create_defaults_namespace(store):
    created = await store.create(agent("a", namespace=None))
    assert created["metadata"]["namespace"] == "default"
    assert (await store.get("Agent", "", "a"))["metadata"]["name"] == "a"


async def test_create_keeps_body_status(store):
    obj = agent("a")
    obj["status"] = {"phase": "Pending"}
    assert (await store.create(obj))["status"] == {"phase": "Pending"}


async def test_create_existing_conflicts(store):
    await store.create(agent("a"))
    with pytest.raises(Conflict):
        await store.create(agent("a"))


@pytest.mark.parametrize("rv", ["", "0"])
async def test_create_accepts_empty_or_zero_body_rv(store, rv):
    obj = agent("a")
    obj["metadata"]["resourceVersion"] = rv
    assert (await store.create(obj))["metadata"]["resourceVersion"] == "1"


async def test_create_with_body_rv_conflicts(store):
    obj = agent("a")
    obj["metadata"]["resourceVersion"] = "5"
    with pytest.raises(Conflict, match='Agent resourceVersion conflict: expected="5" current=""'):
        await store.create(obj)
    with pytest.raises(Conflict):
        await store.upsert(obj)
    with pytest.raises(NotFound):
        await store.get("Agent", "default", "a")


@pytest.mark.parametrize("bad, field", [
    ({"metadata": {"name": "a"}}, "kind"),
    ({"kind": "Agent", "metadata": {}}, "metadata.name"),
    ({"kind": "Agent"}, "metadata.name"),
])
async def test_create_requires_identity(store, bad, field):
    with pytest.raises(InvalidResource) as err:
        await store.create(bad)
    assert err.value.field == field


async def test_not_found_messages(store):
    with pytest.raises(NotFound, match='^agentsystem "x" not found$'):
        await store.get("AgentSystem", "default", "x")
    with pytest.raises(NotFound, match='^agent "x" not found$'):
        await store.delete("Agent", "default", "x")
    with pytest.raises(NotFound, match='^task "x" not found$'):
        await store.update_status("Task", "default", "x", {}, "*")
    with pytest.raises(NotFound, match='^agent "x" not found$'):
        await store.update(agent("x"), "*")


async def test_delete_returns_object_and_removes_it(store):
    created = await store.create(agent("a"))
    assert await store.delete("Agent", "default", "a") == created
    with pytest.raises(NotFound):
        await store.get("Agent", "default", "a")
    recreated = await store.create(agent("a"))
    assert recreated["metadata"]["resourceVersion"] == "1"


async def test_kinds_are_separate(store):
    await store.create(agent("a"))
    with pytest.raises(NotFound):
        await store.get("Tool", "default", "a")
    assert (await store.list("Tool")).items == []


# -- upsert / update: rv, generation, status ---------------------------------------------------


async def test_upsert_creates_then_updates(store):
    first, created = await store.upsert(agent("a"))
    assert created and first["metadata"]["resourceVersion"] == "1"
    second, created = await store.upsert(agent("a", prompt="changed"))
    assert not created
    assert second["metadata"]["resourceVersion"] == "2"
    assert second["metadata"]["generation"] == 2
    assert second["metadata"]["createdAt"] == first["metadata"]["createdAt"]
    assert second["spec"]["prompt"] == "changed"


async def test_generation_bumps_only_on_spec_change(store):
    await store.create(agent("a"))
    same, _ = await store.upsert(agent("a", labels={"team": "x"}))
    assert same["metadata"]["resourceVersion"] == "2"
    assert same["metadata"]["generation"] == 1
    assert same["metadata"]["labels"] == {"team": "x"}
    changed = await store.update(agent("a", tools=["t"]), "2")
    assert changed["metadata"]["resourceVersion"] == "3"
    assert changed["metadata"]["generation"] == 2
    assert "labels" not in changed["metadata"]  # labels replaced wholesale


async def test_upsert_keeps_stored_status(store):
    await store.create(agent("a"))
    await store.update_status("Agent", "default", "a", {"phase": "Ready"}, "1")
    body = agent("a", prompt="new")
    body["status"] = {"phase": "Bogus"}
    stored, _ = await store.upsert(body)
    assert stored["status"] == {"phase": "Ready", "observedGeneration": 1}


async def test_upsert_body_rv_must_match(store):
    await store.create(agent("a"))
    body = agent("a")
    body["metadata"]["resourceVersion"] = "7"
    with pytest.raises(Conflict, match='expected="7" current="1"'):
        await store.upsert(body)
    body["metadata"]["resourceVersion"] = "0"
    with pytest.raises(Conflict):
        await store.upsert(body)
    body["metadata"]["resourceVersion"] = "1"
    stored, created = await store.upsert(body)
    assert not created and stored["metadata"]["resourceVersion"] == "2"


async def test_update_keeps_status(store):
    await store.create(agent("a"))
    await store.update_status("Agent", "default", "a", {"phase": "Ready", "observedGeneration": 1}, "1")
    body = agent("a", prompt="x")
    body["status"] = {"phase": "Ignored"}
    updated = await store.update(body, "2")
    assert updated["status"] == {"phase": "Ready", "observedGeneration": 1}


async def test_update_stale_rv_conflicts(store):
    await store.create(agent("a"))
    await store.update(agent("a", prompt="1"), "1")
    with pytest.raises(Conflict, match='^Agent resourceVersion conflict: expected="1" current="2"$'):
        await store.update(agent("a", prompt="2"), "1")
    assert (await store.get("Agent", "default", "a"))["spec"]["prompt"] == "1"


@pytest.mark.parametrize("rv", ["*", 'W/"1"', '"1"', " 1 "])
async def test_update_precondition_forms(store, rv):
    await store.create(agent("a"))
    assert (await store.update(agent("a", prompt="x"), rv))["metadata"]["resourceVersion"] == "2"


async def test_update_requires_precondition(store):
    await store.create(agent("a"))
    with pytest.raises(Conflict, match="resourceVersion precondition required"):
        await store.update(agent("a"), "")
    with pytest.raises(Conflict, match="resourceVersion precondition required"):
        await store.update_status("Agent", "default", "a", {}, "")


# -- status writes ----------------------------------------------------------------------------


async def test_update_status_replaces_whole_status(store):
    obj = agent("a")
    obj["status"] = {"phase": "Pending", "lastError": "boom"}
    await store.create(obj)
    written = await store.update_status("Agent", "default", "a", {"phase": "Ready", "observedGeneration": 1}, "1")
    assert written["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert written["metadata"]["resourceVersion"] == "2"
    assert written["metadata"]["generation"] == 1
    assert await store.get("Agent", "default", "a") == written


async def test_update_status_fills_zero_observed_generation(store):
    await store.create(agent("a"))
    await store.update(agent("a", prompt="x"), "1")  # generation 2
    written = await store.update_status("Agent", "default", "a", {"phase": "Ready", "observedGeneration": 0}, "2")
    assert written["status"]["observedGeneration"] == 2
    kept = await store.update_status("Agent", "default", "a", {"observedGeneration": 1}, "*")
    assert kept["status"]["observedGeneration"] == 1


async def test_update_status_stale_rv_conflicts(store):
    await store.create(agent("a"))
    await store.update_status("Agent", "default", "a", {"phase": "A"}, "1")
    with pytest.raises(Conflict, match='^Agent resourceVersion conflict: expected="1" current="2"$'):
        await store.update_status("Agent", "default", "a", {"phase": "B"}, "1")


async def test_update_status_rejects_non_object(store):
    await store.create(agent("a"))
    with pytest.raises(InvalidResource):
        await store.update_status("Agent", "default", "a", ["x"], "*")


# -- namespaces, selectors, pagination ---------------------------------------------------------


async def test_same_name_in_two_namespaces(store):
    await store.create(agent("a", "team-1", prompt="one"))
    await store.create(agent("a", "team-2", prompt="two"))
    assert (await store.get("Agent", "team-1", "a"))["spec"]["prompt"] == "one"
    assert (await store.get("Agent", "team-2", "a"))["spec"]["prompt"] == "two"
    with pytest.raises(NotFound):
        await store.get("Agent", "default", "a")
    await store.delete("Agent", "team-1", "a")
    assert (await store.get("Agent", "team-2", "a"))["spec"]["prompt"] == "two"


async def test_list_sorted_and_filtered_by_namespace(store):
    for ns, name in [("b", "x"), ("a", "z"), ("a", "y"), ("b", "a")]:
        await store.create(agent(name, ns))
    page = await store.list("Agent")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in page.items] == [
        ("a", "y"), ("a", "z"), ("b", "a"), ("b", "x")]
    assert page.continue_ is None
    assert [o["metadata"]["name"] for o in (await store.list("Agent", "b")).items] == ["a", "x"]
    assert (await store.list("Agent", "nope")).items == []


async def test_list_label_selector(store):
    await store.create(agent("a", labels={"team": "x", "tier": "1"}))
    await store.create(agent("b", labels={"team": "y"}))
    await store.create(agent("c", labels={"team": "x"}))
    names = lambda page: [o["metadata"]["name"] for o in page.items]  # noqa: E731
    assert names(await store.list("Agent", selector=parse_label_selector("team=x"))) == ["a", "c"]
    assert names(await store.list("Agent", selector=parse_label_selector("team=x,tier=1"))) == ["a"]
    assert names(await store.list("Agent", selector=parse_label_selector("team=z"))) == []
    assert names(await store.list("Agent", selector=parse_label_selector(""))) == ["a", "b", "c"]


async def test_label_selector_applies_before_page_is_cut(store):
    for i in range(6):
        await store.create(agent(f"a{i}", labels={"even": str(i % 2 == 0).lower()}))
    page = await store.list("Agent", "default", selector=parse_label_selector("even=true"), limit=2)
    assert [o["metadata"]["name"] for o in page.items] == ["a0", "a2"]
    assert page.continue_ == "a2"
    rest = await store.list("Agent", "default", selector=parse_label_selector("even=true"), limit=2,
                            after=page.continue_)
    assert [o["metadata"]["name"] for o in rest.items] == ["a4"]
    assert rest.continue_ is None


async def test_pagination_in_one_namespace(store):
    for i in range(5):
        await store.create(agent(f"n{i}"))
    seen, after = [], None
    while True:
        page = await store.list("Agent", "default", limit=2, after=after)
        seen += [o["metadata"]["name"] for o in page.items]
        if page.continue_ is None:
            break
        assert page.continue_ == page.items[-1]["metadata"]["name"]
        after = page.continue_
    assert seen == ["n0", "n1", "n2", "n3", "n4"]


async def test_pagination_across_namespaces_loses_nothing(store):
    keys = [("a", "x"), ("a", "z"), ("b", "a"), ("b", "x"), ("c", "x")]
    for ns, name in keys:
        await store.create(agent(name, ns))
    seen, after = [], None
    while True:
        page = await store.list("Agent", limit=2, after=after)
        seen += [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in page.items]
        if page.continue_ is None:
            break
        after = page.continue_
    assert seen == keys


async def test_after_with_bare_name_filters_by_name(store):
    for ns, name in [("a", "m"), ("a", "z"), ("b", "a"), ("b", "n")]:
        await store.create(agent(name, ns))
    page = await store.list("Agent", after="m")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in page.items] == [("a", "z"), ("b", "n")]


async def test_list_limit_clamped(store):
    for i in range(3):
        await store.create(agent(f"n{i}"))
    assert len((await store.list("Agent", limit=0)).items) == 3
    assert len((await store.list("Agent", limit=-4)).items) == 3
    assert len((await store.list("Agent", limit=5000)).items) == 3
    full = await store.list("Agent", limit=3)
    assert full.continue_ == "default/n2"


async def test_list_limit_caps_at_1000(store):
    for i in range(1001):
        await store.create(agent(f"n{i:04d}"))
    page = await store.list("Agent", "default", limit=5000)
    assert len(page.items) == 1000
    assert page.continue_ == "n0999"
    assert [o["metadata"]["name"] for o in (await store.list("Agent", "default", after=page.continue_)).items] == [
        "n1000"]


# -- events -----------------------------------------------------------------------------------


async def test_every_write_appends_an_event_in_order(store):
    since = await store.last_event_id()
    await store.create(agent("a"))
    await store.upsert(agent("a", prompt="p2"))
    await store.upsert(agent("b"))
    await store.update(agent("a", prompt="p3"), "2")
    await store.update_status("Agent", "default", "a", {"phase": "Ready"}, "3")
    await store.delete("Agent", "default", "a")
    events = await new_events(store, since)
    assert [(e.type, e.action, e.name, e.resource_version) for e in events] == [
        ("resource.created", "created", "a", "1"),
        ("resource.updated", "updated", "a", "2"),
        ("resource.created", "created", "b", "1"),
        ("resource.updated", "updated", "a", "3"),
        ("resource.status", "status", "a", "4"),
        ("resource.deleted", "deleted", "a", "4"),
    ]
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > since
    assert await store.last_event_id() == ids[-1]
    assert all(e.kind == "Agent" and e.namespace == "default" and e.source == "apiserver" for e in events)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", e.timestamp) for e in events)


async def test_event_payloads(store):
    since = await store.last_event_id()
    created = await store.create(agent("a"), source="cli")
    updated = await store.update(agent("a", prompt="x"), "1")
    status = await store.update_status("Agent", "default", "a", {"phase": "Ready"}, "2", source="agent-controller")
    await store.delete("Agent", "default", "a")
    c, u, s, d = await new_events(store, since)
    assert c.source == "cli" and c.data == created
    assert u.data == updated
    assert s.source == "agent-controller"
    assert s.data == {"metadata": status["metadata"], "status": status["status"]}
    assert d.data == {"metadata": {"name": "a", "namespace": "default", "resourceVersion": "3"}}
    assert d.to_dict()["type"] == "resource.deleted"


async def test_failed_writes_append_no_event(store):
    await store.create(agent("a"))
    since = await store.last_event_id()
    for write in (store.create(agent("a")), store.update(agent("a"), "9"), store.delete("Agent", "default", "b"),
                  store.update_status("Agent", "default", "a", {}, "9")):
        with pytest.raises((Conflict, NotFound)):
            await write
    assert await store.events_after(since) == []


async def test_secret_values_never_appear_in_events(store):
    since = await store.last_event_id()
    secret = {"apiVersion": "orloj.dev/v1", "kind": "Secret", "metadata": {"name": "s"},
              "spec": {"data": {"token": "c2VjcmV0"}, "stringData": {"pw": "hunter2"}}}
    await store.create(secret)
    await store.update({**secret, "spec": {"data": {"token": "b3RoZXI="}}}, "1")
    events = await new_events(store, since)
    assert [e.data["spec"] for e in events] == [{"data": {"token": "***"}}, {"data": {"token": "***"}}]
    assert (await store.get("Secret", "default", "s"))["spec"]["data"] == {"token": "b3RoZXI="}


async def test_publish_assigns_id_and_timestamp(store):
    await store.create(agent("a"))
    since = await store.last_event_id()
    published = await store.publish(Event(id=0, timestamp="", source="task-controller", type="task.claimed",
                                           kind="Task", name="t", namespace="default", action="claimed",
                                           data={"phase": "Running"}))
    assert published.id == since + 1 and published.timestamp
    [got] = await store.events_after(since)
    assert got.type == "task.claimed" and got.data == {"phase": "Running"} and got.id == published.id


async def test_events_after_limit(store):
    since = await store.last_event_id()
    for i in range(5):
        await store.create(agent(f"n{i}"))
    first = await store.events_after(since, limit=2)
    assert [e.name for e in first] == ["n0", "n1"]
    rest = await store.events_after(first[-1].id, limit=100)
    assert [e.name for e in rest] == ["n2", "n3", "n4"]


async def test_events_after_of_some_kinds(store):
    since = await store.last_event_id()
    await store.create(agent("a"))
    await store.create({"apiVersion": "orloj.dev/v1", "kind": "Task", "metadata": {"name": "t"}, "spec": {}})
    await store.create(agent("b"))
    await store.create({"apiVersion": "orloj.dev/v1", "kind": "AgentPolicy", "metadata": {"name": "p"}, "spec": {}})
    assert [(e.kind, e.name) for e in await store.events_after(since, kinds={"Agent", "AgentPolicy"})] == [
        ("Agent", "a"), ("Agent", "b"), ("AgentPolicy", "p")]
    assert [e.name for e in await store.events_after(since, limit=1, kinds=["Agent"])] == ["a"]
    assert await store.events_after(since, kinds=["Memory"]) == []


async def test_uncopied_memory_store_never_changes_what_it_handed_out():
    """Why the store actor may skip copies: Ray serializes an answer after the call returned,
    while later calls run, so a write must never change an object or event already handed out."""
    store = MemoryStore(copy_values=False)
    since = await store.last_event_id()
    created = await store.create(agent("a"))
    got = await store.get("Agent", "default", "a")
    await store.update_status("Agent", "default", "a", {"phase": "Ready"}, got["metadata"]["resourceVersion"])
    first = (await store.events_after(since))[1]
    await store.update_status("Agent", "default", "a", {"phase": "Failed"}, "*")
    await store.update(agent("a", prompt="changed"), "*")
    assert got == created and got["metadata"]["resourceVersion"] == "1" and got["status"] == {}
    assert first.data["status"]["phase"] == "Ready" and first.resource_version == first.data["metadata"]["resourceVersion"]
    assert (await store.get("Agent", "default", "a"))["status"]["phase"] == "Failed"


async def test_events_after_returns_empty_on_timeout(store):
    since = await store.last_event_id()
    start = time.monotonic()
    assert await store.events_after(since, timeout_s=0.2) == []
    assert 0.15 <= time.monotonic() - start < 2


async def test_events_after_returns_at_once_when_newer_exist(store):
    since = await store.last_event_id()
    await store.create(agent("a"))
    start = time.monotonic()
    assert [e.name for e in await store.events_after(since, timeout_s=10)] == ["a"]
    assert time.monotonic() - start < 1


async def test_events_after_wakes_when_another_coroutine_writes(store):
    since = await store.last_event_id()
    waiter = asyncio.create_task(store.events_after(since, timeout_s=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    start = time.monotonic()
    await store.create(agent("a"))
    events = await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - start < 1
    assert [e.name for e in events] == ["a"]


async def test_many_waiters_all_wake(store):
    since = await store.last_event_id()
    waiters = [asyncio.create_task(store.events_after(since, timeout_s=10)) for _ in range(200)]
    await asyncio.sleep(0.05)
    await store.create(agent("a"))
    results = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert all([e.name for e in r] == ["a"] for r in results)


async def test_waiter_ahead_of_log_keeps_waiting(store):
    since = await store.last_event_id()
    waiter = asyncio.create_task(store.events_after(since + 1, timeout_s=10))
    await asyncio.sleep(0.02)
    await store.create(agent("a"))  # id since+1: not newer than what the waiter asked for
    await asyncio.sleep(0.02)
    assert not waiter.done()
    await store.create(agent("b"))
    assert [e.name for e in await asyncio.wait_for(waiter, 2)] == ["b"]


# -- isolation --------------------------------------------------------------------------------


async def test_deep_copy_isolation(store):
    body = agent("a", tools=["t1"])
    created = await store.create(body)
    body["spec"]["tools"].append("from-input")
    created["spec"]["tools"].append("from-create-result")
    got = await store.get("Agent", "default", "a")
    got["spec"]["tools"].append("from-get")
    (await store.list("Agent")).items[0]["spec"]["tools"].append("from-list")
    status = {"phase": "Ready", "conditions": [{"type": "X"}]}
    await store.update_status("Agent", "default", "a", status, "1")
    status["conditions"].append({"type": "from-status-input"})
    for event in await store.events_after(0):
        if event.data and "spec" in event.data:
            event.data["spec"]["tools"].append("from-event")
    stored = await store.get("Agent", "default", "a")
    assert stored["spec"]["tools"] == ["t1"]
    assert stored["status"]["conditions"] == [{"type": "X"}]
    assert [e.data["spec"]["tools"] for e in await store.events_after(0) if "spec" in (e.data or {})] == [["t1"]]


# -- concurrency ------------------------------------------------------------------------------


class Interleaving:
    """Wraps a store so every read yields to the loop: concurrent read-modify-writes collide."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.conflicts = 0

    async def get(self, kind, namespace, name):
        obj = await self.inner.get(kind, namespace, name)
        await asyncio.sleep(0)
        return obj

    async def update_status(self, *args, **kwargs):
        try:
            return await self.inner.update_status(*args, **kwargs)
        except Conflict:
            self.conflicts += 1
            raise


async def test_concurrent_mutate_status_loses_no_update(store):
    await store.create(agent("counter"))
    racing = Interleaving(store)

    def bump(status: dict) -> dict:
        status["count"] = status.get("count", 0) + 1
        return status

    writers = 25
    await asyncio.gather(*(mutate_status(racing, "Agent", "default", "counter", bump, retries=200)
                           for _ in range(writers)))
    final = await store.get("Agent", "default", "counter")
    assert final["status"]["count"] == writers
    assert final["metadata"]["resourceVersion"] == str(1 + writers)
    assert racing.conflicts > 0


async def test_mutate_status_none_writes_nothing(store):
    await store.create(agent("a"))
    since = await store.last_event_id()
    obj = await mutate_status(store, "Agent", "default", "a", lambda status: None)
    assert obj["metadata"]["resourceVersion"] == "1"
    assert await store.events_after(since) == []


async def test_mutate_status_gives_up_after_retries(store):
    await store.create(agent("a"))

    class StaleReads(Interleaving):
        async def get(self, kind, namespace, name):
            obj = await self.inner.get(kind, namespace, name)
            await self.inner.update_status(kind, namespace, name, {}, "*")  # someone else wins
            return obj

    racing = StaleReads(store)
    with pytest.raises(Conflict):
        await mutate_status(racing, "Agent", "default", "a", lambda s: {"x": 1}, retries=2)
    assert racing.conflicts == 3


async def test_mutate_status_missing_object(store):
    with pytest.raises(NotFound):
        await mutate_status(store, "Agent", "default", "nope", lambda s: s)


# -- claims -----------------------------------------------------------------------------------


def take_unless_claimed(worker: str):
    def decide(obj: dict) -> dict | None:
        if obj["status"].get("claimedBy"):
            return None
        return {**obj["status"], "phase": "Running", "claimedBy": worker}
    return decide


async def test_claim_writes_the_status_decide_returns(store):
    await store.create(agent("t"))
    since = await store.last_event_id()
    seen = []
    decide = take_unless_claimed("w1")
    claimed = await store.claim("Agent", "default", "t", lambda obj: seen.append(obj) or decide(obj),
                                source="task-controller")
    assert seen[0]["metadata"]["resourceVersion"] == "1"  # decided on the current object
    assert claimed["status"] == {"phase": "Running", "claimedBy": "w1", "observedGeneration": 1}
    assert claimed["metadata"]["resourceVersion"] == "2"
    [event] = await new_events(store, since)
    assert (event.type, event.source) == ("resource.status", "task-controller")
    assert await store.claim("Agent", "default", "t", take_unless_claimed("w2")) is None  # decide passed
    assert (await store.get("Agent", "default", "t"))["metadata"]["resourceVersion"] == "2"
    assert await new_events(store, event.id) == []
    with pytest.raises(NotFound):
        await store.claim("Agent", "default", "missing", decide)


async def test_concurrent_claimers_take_each_object_once(store):
    names = [f"t{i:02d}" for i in range(12)]
    for name in names:
        await store.create(agent(name))

    async def claimer(worker: str) -> list[str]:
        got = await asyncio.gather(*(store.claim("Agent", "default", n, take_unless_claimed(worker)) for n in names))
        return [obj["metadata"]["name"] for obj in got if obj is not None]

    taken = [n for names_ in await asyncio.gather(*(claimer(f"w{i}") for i in range(4))) for n in names_]
    assert sorted(taken) == names  # each exactly once
    for item in (await store.list("Agent")).items:
        assert item["metadata"]["resourceVersion"] == "2"


# -- audit trail ------------------------------------------------------------------------------


def audit(decision: str, **fields) -> dict:
    return {"timestamp": "2026-01-01T00:00:00Z", "namespace": "default", "task": "t", "agent": "a",
            "subject_kind": "tool", "subject": "web", "decision": decision, "code": "", **fields}


async def test_append_audit_assigns_increasing_ids(store):
    first = await store.append_audit(audit("allowed", id=99, attempt=2))
    second = await store.append_audit(audit("denied", code="tool_not_permitted"))
    assert (first["id"], second["id"]) == (1, 2)
    assert first == {**audit("allowed", attempt=2), "id": 1}
    assert await store.list_audit() == [first, second]


async def test_list_audit_filters_after_and_limit(store):
    await store.append_audit(audit("allowed"))
    await store.append_audit(audit("denied", namespace="team", task="x", code="c1"))
    await store.append_audit(audit("denied", agent="b", subject="shell", code="c2"))
    await store.append_audit(audit("approved", namespace="team"))
    ids = lambda records: [r["id"] for r in records]  # noqa: E731
    assert ids(await store.list_audit(decision="denied")) == [2, 3]
    assert ids(await store.list_audit("team")) == [2, 4]
    assert ids(await store.list_audit("")) == [1, 2, 3, 4]
    assert ids(await store.list_audit(task="x", code="c1")) == [2]
    assert ids(await store.list_audit(agent="b", subject="shell")) == [3]
    assert ids(await store.list_audit(decision="denied", task="t")) == [3]
    assert ids(await store.list_audit(decision="nope")) == []
    assert ids(await store.list_audit(after=2)) == [3, 4]
    assert ids(await store.list_audit(limit=2)) == [1, 2]
    assert ids(await store.list_audit(after=1, limit=2)) == [2, 3]
    assert ids(await store.list_audit(limit=0)) == [1, 2, 3, 4]


async def test_audit_records_are_copies(store):
    record = audit("denied", code="c")
    stored = await store.append_audit(record)
    record["code"] = "changed-input"
    stored["code"] = "changed-output"
    (await store.list_audit())[0]["code"] = "changed-list"
    assert [r["code"] for r in await store.list_audit()] == ["c"]


# -- label selector parser ---------------------------------------------------------------------


def test_parse_label_selector_terms():
    assert parse_label_selector("a=b, c==d ,,e=").terms == {"a": "b", "c": "d", "e": ""}
    assert parse_label_selector("").terms == {}
    assert parse_label_selector(None).terms == {}
    sel = parse_label_selector("team=x")
    assert sel.matches({"team": "x", "other": "y"})
    assert not sel.matches({"team": "y"})
    assert not sel.matches(None)
    assert parse_label_selector("e=").matches({"e": ""})
    assert not parse_label_selector("e=").matches({})


@pytest.mark.parametrize("text, term, problem", [
    ("team", "team", "expected key=value pairs"),
    ("a=b,oops", "oops", "expected key=value pairs"),
    ("a!=b", "a!=b", "expected key=value pairs"),
    ("=b", "=b", "key is required"),
])
def test_parse_label_selector_errors(text, term, problem):
    with pytest.raises(InvalidResource) as err:
        parse_label_selector(text)
    assert err.value.message == f'invalid label selector "{term}": {problem}'
    assert err.value.field == "labelSelector"
    assert err.value.status == 400
