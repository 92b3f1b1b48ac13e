"""The test setup's throwaway PostgreSQL: started on a free loopback port even when 5432 answers."""

from __future__ import annotations

import socket

from pg_server import SHARED_URL, PgServer, reachable

from orloj_ray.store.postgres import PostgresStore


async def test_throwaway_server_starts_serves_and_stops():
    server = PgServer.start_throwaway()
    try:
        assert server.started and server.port != 5432
        assert server.admin_url != SHARED_URL
        assert reachable(server.admin_url)
        url = server.create_database()
        async with await PostgresStore.connect(url) as store:
            created = await store.create({"apiVersion": "orloj.dev/v1", "kind": "Agent",
                                          "metadata": {"name": "round-trip"}, "spec": {"prompt": "hi"}})
            assert await store.get("Agent", "default", "round-trip") == created
            [event] = await store.events_after(0)
            assert event.type == "resource.created" and event.id == 1
        server.drop_database(url)
        PgServer(server.admin_url).stop()  # a server this process did not start is never stopped
        assert reachable(server.admin_url)
    finally:
        workdir = server.workdir
        server.stop()
    assert not reachable(server.admin_url, 1)
    with socket.socket() as s:  # the port is free again (connections may linger in TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))
    assert workdir is not None and not workdir.exists()

