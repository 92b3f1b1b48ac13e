"""The StoreHost actor hosting a PostgresStore (``store: postgres``), reached through RemoteStore."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pg_server import PgServer

from orloj_ray.config import ServerConfig
from orloj_ray.errors import Conflict

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(pg_url):
    server = PgServer(pg_url)
    url = server.create_database()
    yield url
    server.drop_database(url)


async def _once_back(call, tries: int = 100):
    """``call()`` once the restarting host answers (Ray may report the restart on a later call)."""
    for _ in range(tries):
        try:
            return await call()
        except Exception:  # noqa: BLE001 - unavailable while restarting
            await asyncio.sleep(0.2)
    pytest.fail("StoreHost did not come back")


async def test_store_host_serves_postgres_and_survives_its_own_death(ray_cluster, db_url):
    import ray

    from actors.store_host import RemoteStore, start_store_host

    config = ServerConfig(store="postgres", database_url=db_url)
    handle = start_store_host(config, detached=False, name=f"orloj:store-test-{uuid.uuid4().hex[:8]}")
    try:
        assert await handle.store_kind.remote() == "PostgresStore"
        store = RemoteStore(handle)
        since = await store.last_event_id()
        waiter = asyncio.create_task(store.events_after(since, timeout_s=20))
        created = await store.create({"apiVersion": "orloj.dev/v1", "kind": "Agent", "metadata": {"name": "a"},
                                      "spec": {"prompt": "hi"}})
        assert [e.name for e in await asyncio.wait_for(waiter, 10)] == ["a"]
        with pytest.raises(Conflict):
            await store.update_status("Agent", "default", "a", {}, "9")

        ray.kill(handle, no_restart=False)  # the host dies; Ray restarts it; PostgreSQL kept the data
        got = await _once_back(lambda: store.get("Agent", "default", "a"))
        assert got == created
        assert await _once_back(store.last_event_id) == since + 1
    finally:
        ray.kill(handle, no_restart=True)
