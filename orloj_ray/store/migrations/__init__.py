"""Versioned schema migrations of the PostgreSQL store.

Each ``NNNN_name.sql`` file of this folder is one version (``NNNN``), applied once, in order,
and recorded in ``orloj_schema_migrations``. ``apply_migrations`` runs them all in one
transaction under an advisory lock, so concurrent starters wait for each other and the second
finds nothing left to do; a failed migration leaves the database as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from orloj_ray.errors import Unavailable

ADVISORY_LOCK_KEY = 0x6F726C6F6A  # "orloj": held by whoever is migrating
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations shipped with this package, by version."""
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in orloj_ray/store/migrations: {versions}")
    return found


async def apply_migrations(conn) -> list[int]:
    """Bring the schema up to date on ``conn`` (a psycopg ``AsyncConnection``); returns the versions applied.

    Refuses (``Unavailable``) a database migrated by a newer orloj-ray than this one.
    """
    known = migrations()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS orloj_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM orloj_schema_migrations")
        applied = {row[0] for row in await cur.fetchall()}
        newest = max((m.version for m in known), default=0)
        if applied and max(applied) > newest:
            raise Unavailable(
                f"database schema version {max(applied)} is newer than this orloj-ray supports ({newest}): "
                "upgrade orloj-ray, or point --database-url at another database"
            )
        done = []
        for migration in known:
            if migration.version in applied:
                continue
            await conn.execute(migration.sql)
            await conn.execute("INSERT INTO orloj_schema_migrations (version, name) VALUES (%s, %s)",
                               (migration.version, migration.name))
            done.append(migration.version)
        return done
