"""PostgreSQL for tests: the machine's server on 127.0.0.1:5432 when it answers, else a throwaway one.

    server = find_or_start(workdir)          # PgServer; .started says whether we own it
    url = server.create_database()           # a fresh orloj_test_<random> database
    server.drop_database(url)
    server.stop()                            # only stops a server this module started

A throwaway server lives in its own temp dir (data, unix socket, log), listens on 127.0.0.1
on a free port, trusts local connections and runs as the ``postgres`` user when we are root
(initdb and postgres refuse to run as root). Nothing here touches other databases of a
shared server: each caller gets its own database and drops only that.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from tests_support import free_port

SHARED_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<ver>/bin``, else the directory of ``initdb`` on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()])
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no PostgreSQL server binaries: install postgresql (initdb, pg_ctl, postgres)")
    return Path(initdb).parent


def reachable(url: str, timeout_s: int = 2) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class PgServer:
    """A PostgreSQL server reachable at ``admin_url`` (a database we may CREATE DATABASE from)."""

    def __init__(self, admin_url: str, *, workdir: Path | None = None, started: bool = False):
        self.admin_url = admin_url
        self.workdir = workdir
        self.started = started

    # -- a throwaway server --------------------------------------------------------------------

    @classmethod
    def start_throwaway(cls, *, ready_timeout_s: float = 30.0) -> "PgServer":
        """initdb + start a server on a free loopback port in a new temp dir; waits until it accepts."""
        bindir = pg_bindir()
        workdir = Path(tempfile.mkdtemp(prefix="orloj-pg-"))
        data, sockets = workdir / "data", workdir / "sock"
        sockets.mkdir()
        as_user = _drop_to_postgres(workdir)
        port = free_port()
        server = cls(f"postgresql://postgres@127.0.0.1:{port}/postgres", workdir=workdir, started=True)
        server._bindir, server._data, server._as_user = bindir, data, as_user
        try:
            _run(as_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C", "--no-sync"]), timeout_s=120)
            options = (f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off"
                       " -c full_page_writes=off -c max_connections=200")
            _run(as_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(workdir / "postgres.log"), "-o", options,
                          "-w", "-t", str(int(ready_timeout_s)), "start"]), timeout_s=ready_timeout_s + 10)
            deadline = time.monotonic() + ready_timeout_s
            while not reachable(server.admin_url, 1):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"throwaway PostgreSQL did not accept connections; see {workdir}/postgres.log")
                time.sleep(0.1)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def port(self) -> int:
        return urlsplit(self.admin_url).port or 5432

    def stop(self) -> None:
        """Stop and delete a throwaway server; a shared server is left alone."""
        if not self.started or self.workdir is None:
            return
        if (self._data / "postmaster.pid").exists():
            subprocess.run(self._as_user([str(self._bindir / "pg_ctl"), "-D", str(self._data), "-m", "immediate",
                                          "-w", "-t", "30", "stop"]), capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    # -- databases -----------------------------------------------------------------------------

    def create_database(self) -> str:
        """A new empty database ``orloj_test_<random>``; returns its URL."""
        name = f"orloj_test_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{name}"))

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        if not name.startswith("orloj_test_"):
            raise ValueError(f"refusing to drop {name!r}: not a test database")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def find_or_start() -> PgServer:
    """The shared server at 127.0.0.1:5432 (trust auth, user postgres, db test) if it answers, else a throwaway."""
    if reachable(SHARED_URL):
        return PgServer(SHARED_URL)
    return PgServer.start_throwaway()


def _drop_to_postgres(workdir: Path):
    """A function wrapping a command to run as ``postgres`` when we are root; chowns ``workdir`` to it."""
    if os.geteuid() != 0:
        return lambda cmd: cmd
    user = pwd.getpwnam("postgres")
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid)
    runuser = shutil.which("runuser")
    if runuser:
        return lambda cmd: [runuser, "-u", "postgres", "--", *cmd]
    return lambda cmd: ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


def _run(cmd: list[str], *, timeout_s: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")


@asynccontextmanager
async def fresh_postgres_store(url: str, **options) -> AsyncIterator:
    """An open ``PostgresStore`` on ``url`` with no data (tables emptied, counters reset, first).

    The session's database is reused across tests (a database per test costs far more);
    emptying the tables gives each test the state a new store would have.
    """
    from orloj_ray.store.migrations import apply_migrations
    from orloj_ray.store.postgres import PostgresStore

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await apply_migrations(conn)
        cur = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                                 " AND tablename LIKE 'orloj\\_%' AND tablename <> 'orloj_schema_migrations'")
        tables = [row[0] for row in await cur.fetchall()]
        for table in tables:  # counters (orloj_*_seq) restart at 0, everything else is emptied
            await conn.execute(f"UPDATE {table} SET last_id = 0" if table.endswith("_seq") else f"TRUNCATE {table}")
    store = await PostgresStore.connect(url, **options)
    try:
        yield store
    finally:
        await store.close()
