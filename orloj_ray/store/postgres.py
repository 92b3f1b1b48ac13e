"""``PostgresStore``: the durable Store, on PostgreSQL through psycopg 3 (async, pooled).

    store = await PostgresStore.connect("postgresql://user@host:5432/orloj")
    ...
    await store.close()

Behaves as ``MemoryStore`` (one contract suite runs against both); how it gets there:

- The schema is versioned (``orloj_ray/store/migrations``) and brought up to date by
  ``open()``, under an advisory lock, so several processes may start at once.
- Optimistic concurrency is one statement: ``UPDATE ... WHERE resource_version = expected``;
  no row updated means the object is missing (NotFound) or moved on (Conflict).
- Every write and its event commit together. The event id comes from a one-row counter
  locked as the transaction's last statement, so ids are handed out in commit order and a
  reader that has seen id N never sees a smaller id appear later.
- ``events_after`` waits on LISTEN/NOTIFY (a trigger on the events table notifies with the
  id): a dedicated connection listens and wakes waiters; while it is down and reconnecting,
  waiters fall back to re-reading every half second.
- Claims (``claim``) lock the row with ``FOR UPDATE SKIP LOCKED``: a claimer that finds it
  busy moves on at once instead of queueing behind the holder, so supervisors racing for
  due tasks get disjoint work and the decision is made on the row as locked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from collections.abc import Collection
from typing import Any, AsyncIterator, Callable

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orloj_ray.retry import Backoff
from orloj_ray.config import mask_url
from orloj_ray.errors import Conflict, InvalidResource, NotFound, Unavailable
from orloj_ray.store.base import Event, LabelSelector, ListPage
from orloj_ray.store.events import resource_event
from orloj_ray.store.migrations import apply_migrations
from orloj_ray.store.util import (
    clamp_limit, clean_rv, clone, incoming, now_rfc3339, now_rfc3339_nano, quote, required_rv, rv_conflict,
)

log = logging.getLogger("orloj_ray.store.postgres")

CHANNEL = "orloj_events"
DEFAULT_EVENT_RETENTION = 100_000
"""Events kept in the table; older ones are deleted in batches as new ones arrive."""
_TRIM_EVERY = 1000
_POLL_WHEN_DEAF_S = 0.5
_COLS = "body, status, resource_version, generation, created_at"
_WHERE_KEY = "kind = %(kind)s AND namespace = %(ns)s AND name = %(name)s"
_RV_MATCHES = "(%(rv)s = '*' OR resource_version::text = %(rv)s)"


class PostgresStore:
    """The Store protocol on PostgreSQL. Open it (``connect``/``open``) before use; ``close`` when done."""

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 10,
                 event_retention: int = DEFAULT_EVENT_RETENTION, connect_timeout_s: float = 10.0):
        if not url:
            raise ValueError("PostgresStore needs a database URL (postgresql://user@host:5432/db)")
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._event_retention = max(1, event_retention)
        self._pool = AsyncConnectionPool(url, min_size=min_connections, max_size=max_connections, open=False,
                                         kwargs={"autocommit": True, "application_name": "orloj-store"},
                                         name="orloj-store")
        self._listener: asyncio.Task | None = None
        self._listening = asyncio.Event()
        self._wakeup: asyncio.Event | None = None
        self._seen_id = 0
        self._closing = False

    @classmethod
    async def connect(cls, url: str, **options) -> "PostgresStore":
        store = cls(url, **options)
        await store.open()
        return store

    async def open(self) -> None:
        """Connect the pool, apply pending migrations and start listening for events."""
        try:
            await self._pool.open(wait=True, timeout=self._connect_timeout_s)
        except Exception as exc:  # PoolTimeout carries the last connection error
            await self._pool.close()
            raise Unavailable(f"cannot connect to PostgreSQL at {mask_url(self._url)}: {exc}") from None
        try:
            async with self._errors(), self._pool.connection() as conn:
                applied = await apply_migrations(conn)
                self._seen_id = await self._read_last_id(conn)
        except BaseException:
            await self._pool.close()
            raise
        if applied:
            log.info("applied store migrations %s on %s", applied, mask_url(self._url))
        self._listener = asyncio.create_task(self._listen(), name="orloj-store-listen")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._listening.wait()
        except TimeoutError:
            await self.close()
            raise Unavailable(f"cannot LISTEN on PostgreSQL at {mask_url(self._url)}") from None

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except BaseException:  # noqa: BLE001 - cancelled or already failed: either way it is gone
                pass
            self._listener = None
        await self._pool.close()

    async def __aenter__(self) -> "PostgresStore":
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- the Store protocol ------------------------------------------------------------------

    async def create(self, obj: dict, *, source: str = "apiserver") -> dict:
        kind, (ns, name), body = incoming(obj)
        body_rv = clean_rv(body["metadata"].get("resourceVersion"))
        async with self._errors():
            if body_rv not in ("", "0"):
                exists = await self._current_rv(None, kind, ns, name) is not None
                raise Conflict(f"{kind.lower()} {quote(name)} already exists") if exists else rv_conflict(
                    kind, body_rv, "")
            async with self._tx() as conn:
                stored = await self._insert(conn, kind, ns, name, body)
                if stored is None:
                    raise Conflict(f"{kind.lower()} {quote(name)} already exists")
                event = await self._append(conn, resource_event("created", stored, source))
        self._wake(event.id)
        return stored

    async def upsert(self, obj: dict, *, source: str = "apiserver") -> tuple[dict, bool]:
        kind, (ns, name), body = incoming(obj)
        body_rv = clean_rv(body["metadata"].get("resourceVersion"))
        async with self._errors(), self._tx() as conn:
            for _ in range(3):  # an insert that loses a race to a concurrent create tries the update again
                stored = await self._replace(conn, kind, ns, name, body, body_rv or "*")
                created = False
                if stored is None:
                    current = await self._current_rv(conn, kind, ns, name)
                    if current is not None:
                        raise rv_conflict(kind, body_rv, current)
                    if body_rv not in ("", "0"):
                        raise rv_conflict(kind, body_rv, "")
                    stored = await self._insert(conn, kind, ns, name, body)
                    created = True
                if stored is not None:
                    break
            else:
                raise Conflict(f"{kind.lower()} {quote(name)} is being written concurrently; retry")
            event = await self._append(conn, resource_event("created" if created else "updated", stored, source))
        self._wake(event.id)
        return stored, created

    async def get(self, kind: str, namespace: str, name: str) -> dict:
        async with self._errors(), self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLS} FROM orloj_resources WHERE {_WHERE_KEY}",
                                     _key(kind, namespace, name))
            row = await cur.fetchone()
        if row is None:
            raise _not_found(kind, name)
        return _assemble(row)

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        selector: LabelSelector | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> ListPage:
        limit = clamp_limit(limit)
        where, params = ["kind = %s"], [kind]
        if namespace:
            where.append("namespace = %s")
            params.append(namespace)
        if after and "/" in after:
            where.append("(namespace, name) > (%s, %s)")
            params += after.split("/", 1)
        elif after:
            where.append("name > %s")
            params.append(after)
        if selector and selector.terms:
            where.append("labels @> %s")
            params.append(Jsonb(selector.terms))
        sql = (f"SELECT {_COLS}, namespace, name FROM orloj_resources WHERE {' AND '.join(where)}"
               " ORDER BY namespace, name LIMIT %s")
        async with self._errors(), self._pool.connection() as conn:
            cur = await conn.execute(sql, [*params, limit])
            rows = await cur.fetchall()
        cont = None
        if rows and len(rows) == limit:
            ns, last = rows[-1][-2:]
            cont = last if namespace else f"{ns}/{last}"
        return ListPage(items=[_assemble(row[:-2]) for row in rows], continue_=cont)

    async def update(self, obj: dict, expected_rv: str, *, source: str = "apiserver") -> dict:
        kind, (ns, name), body = incoming(obj)
        rv = required_rv(expected_rv)
        async with self._errors(), self._tx() as conn:
            stored = await self._replace(conn, kind, ns, name, body, rv)
            if stored is None:
                raise await self._why_not(conn, kind, ns, name, rv)
            event = await self._append(conn, resource_event("updated", stored, source))
        self._wake(event.id)
        return stored

    async def update_status(
        self, kind: str, namespace: str, name: str, status: dict, expected_rv: str,
        *, source: str = "apiserver",
    ) -> dict:
        if not isinstance(status, dict):
            raise InvalidResource("status must be an object", field="status")
        rv = required_rv(expected_rv)
        async with self._errors(), self._tx() as conn:
            stored = await self._write_status(conn, kind, namespace, name, status, f"AND {_RV_MATCHES}", rv)
            if stored is None:
                raise await self._why_not(conn, kind, namespace or "default", name, rv)
            event = await self._append(conn, resource_event("status", stored, source))
        self._wake(event.id)
        return stored

    async def delete(self, kind: str, namespace: str, name: str, *, source: str = "apiserver") -> dict:
        async with self._errors(), self._tx() as conn:
            cur = await conn.execute(f"DELETE FROM orloj_resources WHERE {_WHERE_KEY} RETURNING {_COLS}",
                                     _key(kind, namespace, name))
            row = await cur.fetchone()
            if row is None:
                raise _not_found(kind, name)
            stored = _assemble(row)
            event = await self._append(conn, resource_event("deleted", stored, source))
        self._wake(event.id)
        return stored

    async def publish(self, event: Event) -> Event:
        async with self._errors(), self._tx() as conn:
            stored = await self._append(conn, event)
        self._wake(stored.id)
        return stored

    async def events_after(self, after_id: int, timeout_s: float = 0.0, limit: int = 1000,
                           kinds: Collection[str] | None = None) -> list[Event]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        read = True
        while True:
            wakeup = self._wakeup_event()  # taken before reading, so no NOTIFY slips in between
            if read:
                found = await self._read_events(after_id, limit, kinds)
                if found:
                    return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            deaf = not self._listening.is_set()
            try:
                async with asyncio.timeout(min(remaining, _POLL_WHEN_DEAF_S) if deaf else remaining):
                    await wakeup.wait()
            except TimeoutError:
                if not deaf:
                    return []
            read = deaf or self._seen_id > after_id

    async def last_event_id(self) -> int:
        async with self._errors(), self._pool.connection() as conn:
            return await self._read_last_id(conn)

    async def append_audit(self, record: dict) -> dict:
        body = {k: v for k, v in record.items() if k != "id"}
        async with self._errors(), self._tx() as conn:
            cur = await conn.execute(
                "WITH seq AS (UPDATE orloj_audit_seq SET last_id = last_id + 1 RETURNING last_id)"
                " INSERT INTO orloj_audit (id, record) SELECT last_id, %s FROM seq RETURNING id", (_jsonb(body),))
            (audit_id,) = await cur.fetchone()
        return {**clone(body), "id": audit_id}

    async def list_audit(
        self,
        namespace: str | None = None,
        *,
        task: str | None = None,
        agent: str | None = None,
        decision: str | None = None,
        code: str | None = None,
        subject: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[dict]:
        limit = clamp_limit(limit)
        wanted = {k: v for k, v in (("namespace", namespace), ("task", task), ("agent", agent),
                                    ("decision", decision), ("code", code), ("subject", subject)) if v}
        sql = "SELECT id, record FROM orloj_audit WHERE id > %s"
        params: list = [max(0, int(after or 0))]
        if wanted:
            sql += " AND record @> %s"
            params.append(_jsonb(wanted))
        async with self._errors(), self._pool.connection() as conn:
            cur = await conn.execute(sql + " ORDER BY id LIMIT %s", [*params, limit])
            rows = await cur.fetchall()
        return [{**record, "id": audit_id} for audit_id, record in rows]

    async def claim(
        self, kind: str, namespace: str, name: str, decide: Callable[[dict], dict | None],
        *, source: str = "apiserver",
    ) -> dict | None:
        """The row is taken with ``SELECT ... FOR UPDATE SKIP LOCKED``: when another transaction
        holds it (another claimer), this returns None at once instead of queueing behind it."""
        async with self._errors(), self._tx() as conn:
            key = _key(kind, namespace, name)
            cur = await conn.execute(
                f"SELECT {_COLS} FROM orloj_resources WHERE {_WHERE_KEY} FOR UPDATE SKIP LOCKED", key)
            row = await cur.fetchone()
            if row is None:
                if await self._current_rv(conn, kind, key["ns"], name) is None:
                    raise _not_found(kind, name)
                return None
            status = decide(_assemble(row))
            if status is None:
                return None
            if not isinstance(status, dict):
                raise InvalidResource("status must be an object", field="status")
            stored = await self._write_status(conn, kind, namespace, name, status, "", "*")
            event = await self._append(conn, resource_event("status", stored, source))
        self._wake(event.id)
        return stored

    # -- SQL ---------------------------------------------------------------------------------

    async def _insert(self, conn, kind: str, ns: str, name: str, body: dict) -> dict | None:
        status = body.pop("status", None)
        cur = await conn.execute(
            "INSERT INTO orloj_resources (kind, namespace, name, resource_version, generation, created_at,"
            " labels, body, status) VALUES (%s, %s, %s, 1, 1, %s, %s, %s, %s)"
            f" ON CONFLICT DO NOTHING RETURNING {_COLS}",
            (kind, ns, name, now_rfc3339(), _labels(body), _jsonb(_stored_body(body)),
             _jsonb(status if isinstance(status, dict) else {})))
        row = await cur.fetchone()
        return None if row is None else _assemble(row)

    async def _replace(self, conn, kind: str, ns: str, name: str, body: dict, rv: str) -> dict | None:
        """Replace metadata and spec, keep status; generation +1 only when the spec changed."""
        body = _stored_body(body)
        cur = await conn.execute(
            "UPDATE orloj_resources SET body = %(body)s, labels = %(labels)s,"
            " resource_version = resource_version + 1,"
            " generation = generation + CASE WHEN coalesce(body->'spec', 'null') IS DISTINCT FROM"
            "   coalesce(%(body)s::jsonb->'spec', 'null') THEN 1 ELSE 0 END"
            f" WHERE {_WHERE_KEY} AND {_RV_MATCHES} RETURNING {_COLS}",
            {**_key(kind, ns, name), "body": _jsonb(body), "labels": _labels(body), "rv": rv})
        row = await cur.fetchone()
        return None if row is None else _assemble(row)

    async def _write_status(self, conn, kind: str, namespace: str, name: str, status: dict,
                            condition: str, rv: str) -> dict | None:
        """Set the whole status (``observedGeneration`` filled when falsy) and bump the RV."""
        cur = await conn.execute(
            "UPDATE orloj_resources SET resource_version = resource_version + 1,"
            " status = CASE WHEN %(fill)s"
            "   THEN jsonb_set(%(status)s::jsonb, '{observedGeneration}', to_jsonb(generation))"
            "   ELSE %(status)s::jsonb END"
            f" WHERE {_WHERE_KEY} {condition} RETURNING {_COLS}",
            {**_key(kind, namespace, name), "status": _jsonb(status), "fill": not status.get("observedGeneration"),
             "rv": rv})
        row = await cur.fetchone()
        return None if row is None else _assemble(row)

    async def _current_rv(self, conn, kind: str, ns: str, name: str) -> str | None:
        if conn is None:
            async with self._pool.connection() as own:
                return await self._current_rv(own, kind, ns, name)
        cur = await conn.execute(f"SELECT resource_version FROM orloj_resources WHERE {_WHERE_KEY}",
                                 _key(kind, ns, name))
        row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def _why_not(self, conn, kind: str, ns: str, name: str, expected: str) -> Exception:
        """The error for a conditional write that matched no row."""
        current = await self._current_rv(conn, kind, ns, name)
        return _not_found(kind, name) if current is None else rv_conflict(kind, expected, current)

    async def _append(self, conn, event: Event) -> Event:
        """Insert the event with the next id; the counter row stays locked until commit."""
        timestamp = now_rfc3339_nano()
        cur = await conn.execute(
            "WITH seq AS (UPDATE orloj_event_seq SET last_id = last_id + 1 RETURNING last_id)"
            " INSERT INTO orloj_events (id, ts, source, type, kind, namespace, name, action, data,"
            " resource_version) SELECT last_id, %s, %s, %s, %s, %s, %s, %s, %s, %s FROM seq RETURNING id",
            (timestamp, event.source, event.type, event.kind, event.namespace, event.name, event.action,
             _jsonb(event.data), event.resource_version))
        (event_id,) = await cur.fetchone()
        if event_id % min(_TRIM_EVERY, self._event_retention) == 0 and event_id > self._event_retention:
            await conn.execute("DELETE FROM orloj_events WHERE id <= %s", (event_id - self._event_retention,))
        return replace(event, id=event_id, timestamp=timestamp, data=clone(event.data))

    async def _read_events(self, after_id: int, limit: int, kinds: Collection[str] | None = None) -> list[Event]:
        where, params = "id > %s", [after_id]
        if kinds is not None:
            where += " AND kind = ANY(%s)"
            params.append(sorted(kinds))
        async with self._errors(), self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, ts, source, type, kind, namespace, name, action, data, resource_version"
                f" FROM orloj_events WHERE {where} ORDER BY id LIMIT %s", [*params, max(1, limit)])
            rows = await cur.fetchall()
        return [Event(id=r[0], timestamp=r[1], source=r[2], type=r[3], kind=r[4], namespace=r[5], name=r[6],
                      action=r[7], data=r[8], resource_version=r[9]) for r in rows]

    @staticmethod
    async def _read_last_id(conn) -> int:
        cur = await conn.execute("SELECT last_id FROM orloj_event_seq")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        async with self._pool.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Translate driver errors at the boundary: busy -> Conflict, bad data -> Invalid, down -> Unavailable."""
        try:
            yield
        except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected, pg_errors.LockNotAvailable) as exc:
            raise Conflict(f"concurrent write, retry: {exc.diag.message_primary or type(exc).__name__}") from None
        except (pg_errors.UntranslatableCharacter, pg_errors.InvalidTextRepresentation,
                pg_errors.CharacterNotInRepertoire) as exc:
            raise InvalidResource(f"value cannot be stored: {exc.diag.message_primary}") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # incl. PoolTimeout, AdminShutdown
            raise Unavailable(f"store unavailable (PostgreSQL): {type(exc).__name__}: {exc}") from None

    # -- waking waiters ----------------------------------------------------------------------

    def _wakeup_event(self) -> asyncio.Event:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        return self._wakeup

    def _wake(self, event_id: int | None = None) -> None:
        """Record a newer event id (``None``: unknown, wake everyone to re-read) and wake waiters."""
        if event_id is not None:
            self._seen_id = max(self._seen_id, event_id)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection for the life of the store, reconnecting with backoff."""
        backoff = Backoff(0.1, 5.0)
        while not self._closing:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name="orloj-store-listen",
                    connect_timeout=max(2, int(self._connect_timeout_s)))
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._seen_id = max(self._seen_id, await self._read_last_id(conn))
                    self._listening.set()
                    self._wake(None)  # anything missed while deaf: re-read
                    backoff.reset()
                    async for note in conn.notifies():
                        try:
                            self._wake(int(note.payload))
                        except ValueError:
                            continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a lost connection
                if not self._closing:
                    log.warning("store event listener lost PostgreSQL (%s); reconnecting", type(exc).__name__)
            self._listening.clear()
            self._wake(None)
            await asyncio.sleep(backoff.next())


def _key(kind: str, namespace: str | None, name: str) -> dict:
    return {"kind": kind, "ns": namespace or "default", "name": name}


def _not_found(kind: str, name: str) -> NotFound:
    return NotFound(f"{kind.lower()} {quote(name)} not found")


def _stored_body(body: dict) -> dict:
    """The object as kept in ``body``: without status and the store-owned metadata (columns)."""
    body = {k: v for k, v in body.items() if k != "status"}
    body["metadata"] = {k: v for k, v in body["metadata"].items()
                        if k not in ("resourceVersion", "generation", "createdAt")}
    return body


def _labels(body: dict) -> Jsonb:
    labels = body["metadata"].get("labels")
    return _jsonb(labels if isinstance(labels, dict) else {})


def _jsonb(value: Any) -> Jsonb:
    """JSON for a jsonb column; NaN/Infinity and non-JSON values are refused up front."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidResource(f"value is not storable JSON: {exc}") from None
    return Jsonb(text, dumps=lambda s: s)


def _assemble(row) -> dict:
    body, status, rv, generation, created_at = row
    body["metadata"].update(resourceVersion=str(rv), generation=int(generation), createdAt=created_at)
    body["status"] = status
    return body
