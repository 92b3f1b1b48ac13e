"""PostgresStore specifics (the shared behaviour is in test_store_contract.py): migrations,
NOTIFY wake-ups across instances, SQL-level concurrency, SKIP LOCKED claims, restarts."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest
from pg_server import PgServer, fresh_postgres_store

from orloj_ray.config import ServerConfig
from orloj_ray.errors import Conflict, InvalidResource, NotFound, Unavailable
from orloj_ray.store import MemoryStore, Store, open_store
from orloj_ray.store.migrations import apply_migrations, migrations
from orloj_ray.store.postgres import PostgresStore


def agent(name: str, **spec) -> dict:
    return {"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def fresh_db(pg_url):
    """A database of its own (not the session's shared one), dropped afterwards."""
    server = PgServer(pg_url)
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
async def store(pg_url):
    async with fresh_postgres_store(pg_url) as pg:
        yield pg


async def sql(url: str, query: str, params=None) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


# -- migrations ---------------------------------------------------------------------------------


async def test_migrations_are_recorded_and_idempotent(fresh_db):
    async with await PostgresStore.connect(fresh_db) as store:
        assert isinstance(store, Store)
    versions = [m.version for m in migrations()]
    assert versions and versions[0] == 1
    assert [r[0] for r in await sql(fresh_db, "SELECT version FROM orloj_schema_migrations ORDER BY 1")] == versions
    async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
        assert await apply_migrations(conn) == []
    async with await PostgresStore.connect(fresh_db):
        pass
    assert len(await sql(fresh_db, "SELECT version FROM orloj_schema_migrations")) == len(versions)


async def test_concurrent_starters_migrate_once(fresh_db):
    stores = await asyncio.gather(*(PostgresStore.connect(fresh_db) for _ in range(6)))
    try:
        rows = await sql(fresh_db, "SELECT version FROM orloj_schema_migrations")
        assert sorted(r[0] for r in rows) == [m.version for m in migrations()]
        await stores[0].create(agent("a"))
        assert (await stores[5].get("Agent", "default", "a"))["metadata"]["resourceVersion"] == "1"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_newer_schema_is_refused(fresh_db):
    async with await PostgresStore.connect(fresh_db):
        pass
    await sql(fresh_db, "INSERT INTO orloj_schema_migrations (version, name) VALUES (9999, 'future')")
    with pytest.raises(Unavailable, match="schema version 9999 is newer"):
        await PostgresStore.connect(fresh_db)


async def test_list_queries_use_the_indexes(store, pg_url):
    await sql(pg_url, "INSERT INTO orloj_resources (kind, namespace, name, resource_version, generation, created_at,"
                      " labels, body) SELECT 'Task', 'ns' || (i % 20), 't' || i, 1, 1, '', "
                      " jsonb_build_object('team', 't' || i), '{\"metadata\": {}}' FROM generate_series(1, 5000) i;"
                      " ANALYZE orloj_resources")
    plans = {}
    for label, query in {
        "namespace": "SELECT * FROM orloj_resources WHERE kind = 'Task' AND namespace = 'ns3' ORDER BY namespace, name",
        "labels": "SELECT * FROM orloj_resources WHERE kind = 'Task' AND labels @> '{\"team\": \"t7\"}'",
    }.items():
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            cur = await conn.execute("EXPLAIN " + query)
            plans[label] = " ".join(r[0] for r in await cur.fetchall())
    assert "orloj_resources_pkey" in plans["namespace"]
    assert "orloj_resources_labels" in plans["labels"]


# -- connection problems ------------------------------------------------------------------------


async def test_unreachable_database_is_unavailable_and_hides_the_password():
    from pg_server import free_port

    url = f"postgresql://orloj:s3cret-pw@127.0.0.1:{free_port()}/nope"
    started = time.monotonic()
    with pytest.raises(Unavailable) as err:
        await PostgresStore.connect(url, connect_timeout_s=2)
    assert time.monotonic() - started < 15
    assert "s3cret-pw" not in str(err.value) and "orloj:***@127.0.0.1" in str(err.value)


async def test_listener_reconnects_after_its_connection_is_killed(store, pg_url):
    killed = await sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE datname = current_database() AND application_name = 'orloj-store-listen'"
                               " AND pid <> pg_backend_pid()")
    assert killed == [(True,)]
    since = await store.last_event_id()
    async with await PostgresStore.connect(pg_url) as writer:
        waiter = asyncio.create_task(store.events_after(since, timeout_s=10))
        await asyncio.sleep(0.3)
        await writer.create(agent("after-kill"))
        events = await asyncio.wait_for(waiter, 5)
    assert [e.name for e in events] == ["after-kill"]
    deadline = time.monotonic() + 10
    while not store._listening.is_set():
        assert time.monotonic() < deadline, "listener did not reconnect"
        await asyncio.sleep(0.05)


# -- events -------------------------------------------------------------------------------------


async def test_write_in_another_instance_wakes_a_waiter_through_notify(store, pg_url):
    async with await PostgresStore.connect(pg_url) as other:
        since = await store.last_event_id()
        waiter = asyncio.create_task(store.events_after(since, timeout_s=10))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        started = time.monotonic()
        await other.create(agent("remote"))
        events = await asyncio.wait_for(waiter, 3)
        assert time.monotonic() - started < 1
        assert [e.name for e in events] == ["remote"]


async def test_concurrent_writers_event_ids_follow_commit_order(store, pg_url):
    """A reader following the log never sees an id appear below one it has already passed."""
    async with await PostgresStore.connect(pg_url, max_connections=8) as other:
        writers = 40
        seen: list[int] = []
        done = asyncio.Event()

        base = await store.last_event_id()

        async def follow():
            cursor = base
            deadline = time.monotonic() + 20
            while len(seen) < writers and time.monotonic() < deadline:
                for event in await store.events_after(cursor, timeout_s=1):
                    seen.append(event.id)
                    cursor = event.id
            done.set()

        reader = asyncio.create_task(follow())
        await asyncio.gather(*((store if i % 2 else other).create(agent(f"w{i}")) for i in range(writers)))
        await asyncio.wait_for(reader, 25)
    assert seen == list(range(base + 1, base + writers + 1))


async def test_old_events_are_trimmed_to_the_retention(pg_url):
    async with fresh_postgres_store(pg_url, event_retention=5) as store:
        for i in range(12):
            await store.create(agent(f"n{i}"))
        kept = [e.id for e in await store.events_after(0)]
    assert kept[-1] == 12 and kept == list(range(kept[0], 13))
    assert 2 <= kept[0] <= 7  # trimmed in batches: at least the newest 5 kept, the oldest gone


# -- concurrency in SQL -------------------------------------------------------------------------


async def test_two_instances_racing_on_one_version_one_wins(store, pg_url):
    await store.create(agent("a"))
    async with await PostgresStore.connect(pg_url) as other:
        results = await asyncio.gather(
            *((store if i % 2 else other).update_status("Agent", "default", "a", {"by": i}, "1") for i in range(10)),
            return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1 and all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))
    assert (await store.get("Agent", "default", "a"))["metadata"]["resourceVersion"] == "2"


async def test_claim_skips_a_locked_row_instead_of_waiting(store, pg_url):
    await store.create(agent("t"))
    take = lambda obj: {**obj["status"], "claimedBy": "w1"}  # noqa: E731
    async with await psycopg.AsyncConnection.connect(pg_url) as holder:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM orloj_resources WHERE name = 't' FOR UPDATE")
            started = time.monotonic()
            assert await store.claim("Agent", "default", "t", take) is None
            assert time.monotonic() - started < 1  # skipped, not queued behind the holder
    claimed = await store.claim("Agent", "default", "t", take)
    assert claimed["status"]["claimedBy"] == "w1" and claimed["metadata"]["resourceVersion"] == "2"


async def test_two_instances_claiming_take_each_task_once(store, pg_url):
    names = [f"t{i:02d}" for i in range(30)]
    for name in names:
        await store.create(agent(name))

    def take_for(worker: str):
        return lambda obj: None if obj["status"].get("claimedBy") else {**obj["status"], "claimedBy": worker}

    async with await PostgresStore.connect(pg_url) as other:
        async def claimer(s: PostgresStore, worker: str) -> list[str]:
            got = [await s.claim("Agent", "default", n, take_for(worker)) for n in names]
            return [obj["metadata"]["name"] for obj in got if obj is not None]

        results = await asyncio.gather(*(claimer(store if i % 2 else other, f"w{i}") for i in range(4)))
    assert sorted(n for names_ in results for n in names_) == names


async def test_values_postgres_cannot_hold_are_invalid(store):
    with pytest.raises(InvalidResource):
        await store.create(agent("nul", prompt="a\u0000b"))
    with pytest.raises(InvalidResource):
        await store.create(agent("nan", temperature=float("nan")))
    with pytest.raises(NotFound):
        await store.get("Agent", "default", "nul")


# -- restarts -----------------------------------------------------------------------------------


async def test_data_and_event_ids_survive_a_restart(fresh_db):
    first = await PostgresStore.connect(fresh_db)
    obj = agent("a", prompt="p")
    obj["metadata"]["labels"] = {"team": "x"}
    await first.create(obj)
    await first.update(agent("a", prompt="p2"), "1")
    await first.update_status("Agent", "default", "a", {"phase": "Ready"}, "2")
    before = [e.id for e in await first.events_after(0)]
    stored = await first.get("Agent", "default", "a")
    await first.close()

    second = await PostgresStore.connect(fresh_db)
    try:
        assert await second.get("Agent", "default", "a") == stored
        assert await second.last_event_id() == before[-1] == 3
        assert [e.id for e in await second.events_after(0)] == before
        updated = await second.update(agent("a", prompt="p3"), "3")
        assert updated["metadata"]["resourceVersion"] == "4" and updated["metadata"]["generation"] == 3
        assert updated["status"]["phase"] == "Ready"
        [event] = await second.events_after(before[-1])
        assert event.id == 4 and event.resource_version == "4"
    finally:
        await second.close()


# -- selection ----------------------------------------------------------------------------------


async def test_open_store_follows_the_config(fresh_db):
    assert isinstance((await open_store(ServerConfig())).inner, MemoryStore)  # Secrets encrypted at rest
    store = await open_store(ServerConfig(store="postgres", database_url=fresh_db, secret_key="a" * 64))
    try:
        assert isinstance(store.inner, PostgresStore)
        await store.create(agent("via-factory"))
        assert (await store.list("Agent")).items[0]["metadata"]["name"] == "via-factory"
    finally:
        await store.close()
