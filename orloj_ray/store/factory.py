"""``open_store``: the Store a ``ServerConfig`` asks for, opened and ready."""

from __future__ import annotations

from orloj_ray.config import ServerConfig
from orloj_ray.store.base import Store
from orloj_ray.store.memory import MemoryStore


async def open_store(config: ServerConfig) -> Store:
    """``store: memory`` -> a new ``MemoryStore``; ``store: postgres`` -> a connected, migrated
    ``PostgresStore`` on ``config.database_url`` (``Unavailable`` when it cannot be reached).

    Close a PostgresStore with ``await store.close()`` when done.
    """
    if config.store == "postgres":
        from orloj_ray.store.postgres import PostgresStore  # psycopg is only loaded when asked for

        return await PostgresStore.connect(config.database_url)
    return MemoryStore()
