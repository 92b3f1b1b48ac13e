"""The ``pgvector`` provider: entries in PostgreSQL, vectors in a pgvector ``vector`` column.

``spec.endpoint`` is the DSN; ``spec.auth.secretRef`` the password. The ``vector`` extension
must be installed on the server: on first use the backend runs ``CREATE EXTENSION IF NOT
EXISTS vector`` and, when PostgreSQL has no such extension, fails with an error naming it and
how to install it (nothing is created). Rows live in one table, ``orloj_memory_entries``, keyed
by (memory ``<namespace>/<name>``, key). Search is cosine distance (``<=>``) over embeddings
when the Memory has an embedder, else lexical ranking of the memory's rows.
"""

from __future__ import annotations

import asyncio

import psycopg

from orloj_ray.memory import lexical
from orloj_ray.memory.base import Entry, MemoryBackendError, SearchResult
from orloj_ray.memory.embeddings import Embedder

CONNECT_TIMEOUT_S = 5
LEXICAL_SCAN_LIMIT = 10_000
"""Rows ranked in Python by lexical search (without embeddings), newest first."""
INSTALL_HINT = ('install pgvector on the PostgreSQL server (for example "apt install postgresql-<version>-pgvector" '
                'or build it from https://github.com/pgvector/pgvector), then run "CREATE EXTENSION vector" as a '
                "superuser in that database")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orloj_memory_entries (
    memory     text        NOT NULL,
    key        text        NOT NULL,
    value      text        NOT NULL,
    embedding  vector,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (memory, key)
)"""


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PgVectorBackend:
    def __init__(self, memory: str, dsn: str, password: str = "", embedder: Embedder | None = None,
                 lexical_reason: str = ""):
        if not dsn:
            raise MemoryBackendError(f'memory "{memory}": provider pgvector needs spec.endpoint (a PostgreSQL DSN, '
                                     'e.g. "postgresql://user@host:5432/db")', code="memory_config_invalid")
        self.memory = memory
        self._dsn = dsn
        self._password = password
        self._embedder = embedder
        self._lexical = "lexical" + (f" ({lexical_reason})" if lexical_reason else "")
        self._ready = False
        self._lock = asyncio.Lock()

    async def _connect(self) -> psycopg.AsyncConnection:
        kwargs = {"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True}
        if self._password:
            kwargs["password"] = self._password
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, **kwargs)
        except psycopg.Error as exc:
            raise MemoryBackendError(f'memory "{self.memory}": backend connectivity failed: '
                                     f"{_first_line(exc)}", retryable=True) from None
        if not self._ready:
            async with self._lock:
                if not self._ready:
                    try:
                        await self._ensure_schema(conn)
                    except BaseException:
                        await conn.close()
                        raise
                    self._ready = True
        return conn

    async def _ensure_schema(self, conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
        if await cur.fetchone() is None:
            cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
            if await cur.fetchone() is None:
                raise MemoryBackendError(
                    f'memory "{self.memory}": the PostgreSQL extension "vector" (pgvector) is not installed on this '
                    f"server: {INSTALL_HINT}", code="memory_backend_unavailable")
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                raise MemoryBackendError(
                    f'memory "{self.memory}": the PostgreSQL extension "vector" is available but could not be '
                    f'created ({_first_line(exc)}): run "CREATE EXTENSION vector" as a superuser',
                    code="memory_backend_unavailable") from None
        await conn.execute(SCHEMA)

    async def _run(self, sql: str, params: tuple = (), fetch: bool = True) -> list[tuple]:
        conn = await self._connect()
        try:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if fetch else []
        except psycopg.Error as exc:
            raise MemoryBackendError(f'memory "{self.memory}": {_first_line(exc)}', retryable=True) from None
        finally:
            await conn.close()

    async def put(self, key: str, value: str) -> None:
        vector = (await self._embedder.embed([f"{key}\n{value}"]))[0] if self._embedder else None
        await self._run(
            "INSERT INTO orloj_memory_entries (memory, key, value, embedding) VALUES (%s, %s, %s, %s::vector) "
            "ON CONFLICT (memory, key) DO UPDATE SET value = EXCLUDED.value, embedding = EXCLUDED.embedding, "
            "updated_at = now()",
            (self.memory, key, value, _vector_literal(vector) if vector is not None else None), fetch=False)

    async def get(self, key: str) -> str | None:
        rows = await self._run("SELECT value FROM orloj_memory_entries WHERE memory = %s AND key = %s",
                               (self.memory, key))
        return rows[0][0] if rows else None

    async def list(self, prefix: str = "") -> list[Entry]:
        rows = await self._run("SELECT key, value FROM orloj_memory_entries WHERE memory = %s AND key LIKE %s "
                               "ORDER BY key", (self.memory, _like_prefix(prefix)))
        return [Entry(k, v) for k, v in rows]

    async def search(self, query: str, top_k: int) -> SearchResult:
        if self._embedder is not None:
            (qv,) = await self._embedder.embed([query])
            rows = await self._run(
                "SELECT key, value, 1 - (embedding <=> %s::vector) AS score FROM orloj_memory_entries "
                "WHERE memory = %s AND embedding IS NOT NULL ORDER BY embedding <=> %s::vector, key LIMIT %s",
                (_vector_literal(qv), self.memory, _vector_literal(qv), top_k))
            return SearchResult([Entry(k, v, float(s)) for k, v, s in rows], self._embedder.name)
        rows = await self._run("SELECT key, value FROM orloj_memory_entries WHERE memory = %s "
                               "ORDER BY updated_at DESC LIMIT %s", (self.memory, LEXICAL_SCAN_LIMIT))
        return SearchResult(lexical.rank(query, rows, top_k), self._lexical)

    async def ping(self) -> None:
        conn = await self._connect()
        await conn.close()

    async def aclose(self) -> None:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
