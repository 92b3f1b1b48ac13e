"""``open_store``: the Store a ``ServerConfig`` asks for, opened and ready."""

from __future__ import annotations

from orloj_ray.config import ServerConfig
from orloj_ray.store.base import Store
from orloj_ray.store.memory import MemoryStore


async def open_store(config: ServerConfig, *, copy_values: bool = True) -> Store:
    """``store: memory`` -> a new ``MemoryStore``; ``store: postgres`` -> a connected, migrated
    ``PostgresStore`` on ``config.database_url`` (``Unavailable`` when it cannot be reached).
    Either way with its Secrets encrypted at rest (``orloj_ray.store.encryption``; a
    ``ConfigError`` when the store holds secrets the configured keys cannot open).

    ``copy_values``: see ``MemoryStore``. Close a PostgreSQL store with ``await store.close()``.
    """
    from orloj_ray.store.encryption import encrypted

    if config.store == "postgres":
        from orloj_ray.store.postgres import PostgresStore  # psycopg is only loaded when asked for

        store = await PostgresStore.connect(config.database_url)
        try:
            return await encrypted(store, config)
        except BaseException:
            await store.close()
            raise
    return await encrypted(MemoryStore(copy_values=copy_values), config)
