"""MCP client sessions over the official ``mcp`` SDK: one live session per server, reused.

The SDK's transports are anyio context managers that must be entered and left in the same
task, so each ``McpSession`` owns a background task that opens the transport and the
``ClientSession``, runs the ``initialize`` handshake, then parks until closed; calls from any
task of the same event loop go through the session's request streams.

Errors (``McpCallError``) say whether the connection itself failed (``connection_lost``: the
pool reconnects and tries once more) or the server answered with an error. What a session may
start or reach is the operator's ``McpPolicy`` (``McpRefused`` before anything is started).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from mcp import ClientSession, McpError, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

from orloj_ray.mcp.connection import McpConnection
from orloj_ray.mcp.policy import McpPolicy, pinned_client_factory

log = logging.getLogger("orloj_ray.mcp")

CLOSE_TIMEOUT_S = 5.0
_CONNECTION_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream,
                      ConnectionError, EOFError, OSError)


class McpCallError(Exception):
    def __init__(self, message: str, *, connection_lost: bool = False, timeout: bool = False):
        super().__init__(message)
        self.message = message
        self.connection_lost = connection_lost
        self.timeout = timeout


@dataclass
class McpToolInfo:
    name: str
    description: str
    input_schema: dict


def _describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping anyio/asyncio exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class McpSession:
    """One initialized MCP session; ``start`` connects, ``close`` tears the transport down."""

    def __init__(self, conn: McpConnection, policy: McpPolicy | None = None):
        self.conn = conn
        self.policy = policy or McpPolicy()
        self._target = None
        self.session: ClientSession | None = None
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def alive(self) -> bool:
        return self.session is not None and self._task is not None and not self._task.done()

    async def start(self) -> "McpSession":
        """Connect; ``McpRefused`` (nothing started) when the policy does not allow the server."""
        if self.conn.transport == "stdio":
            self.policy.program(self.conn)
        else:
            self._target = await self.policy.http_target(self.conn)
        self._task = asyncio.create_task(self._run(), name=f"mcp:{self.conn.key}")
        try:
            await asyncio.wait_for(self._ready.wait(), self.conn.connect_timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise McpCallError(f'mcp server "{self.conn.name}": no initialized session within '
                               f"{self.conn.connect_timeout_s:g}s", connection_lost=True, timeout=True) from None
        if self.session is None:
            await self.close()
            raise McpCallError(f'mcp server "{self.conn.name}": connect failed: '
                               f"{_describe(self.error) if self.error else 'closed during initialize'}",
                               connection_lost=True)
        return self

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                workdir = stack.enter_context(_private_dir()) if self.conn.transport == "stdio" else ""
                read, write = await stack.enter_async_context(self._transport(workdir))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.session = session
                self._ready.set()
                await self._closing.wait()
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported through start()/calls, never lost
            self.error = exc
            if self.session is not None:
                log.warning("mcp session %s ended: %s", self.conn.key, _describe(exc))
        finally:
            self._ready.set()

    def _transport(self, workdir: str):
        if self.conn.transport == "stdio":
            return stdio_client(self.policy.stdio_parameters(self.conn, workdir))
        return _http_streams(self.conn, self._target)

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT_S)
        except (asyncio.TimeoutError, Exception):
            task.cancel()
            try:
                await asyncio.wait_for(task, CLOSE_TIMEOUT_S)
            except BaseException:  # noqa: BLE001 - best effort teardown
                pass

    async def list_tools(self, timeout_s: float) -> list[McpToolInfo]:
        tools: list[McpToolInfo] = []
        cursor = None
        for _ in range(100):  # pages, bounded
            result = await self._request(lambda: self.session.list_tools(cursor=cursor), timeout_s, "tools/list")
            for tool in result.tools:
                tools.append(McpToolInfo(tool.name, tool.description or "", dict(tool.inputSchema or {})))
            cursor = result.nextCursor
            if not cursor:
                break
        return tools

    async def call_tool(self, name: str, arguments: dict, timeout_s: float,
                        meta: dict | None = None) -> types.CallToolResult:
        return await self._request(
            lambda: self.session.call_tool(name, arguments, read_timeout_seconds=timedelta(seconds=timeout_s),
                                           meta=meta),
            timeout_s, f"tools/call {name}")

    async def _request(self, make, timeout_s: float, what: str) -> Any:
        if not self.alive:
            raise McpCallError(f'mcp server "{self.conn.name}": session closed', connection_lost=True)
        try:
            return await asyncio.wait_for(make(), timeout_s)
        except asyncio.TimeoutError:
            raise McpCallError(f'mcp server "{self.conn.name}": {what} timed out after {timeout_s:g}s',
                               timeout=True) from None
        except McpError as exc:
            code = exc.error.code
            if code == types.CONNECTION_CLOSED:
                raise McpCallError(f'mcp server "{self.conn.name}": {what}: connection closed',
                                   connection_lost=True) from None
            if code == 408:  # the SDK's own read timeout
                raise McpCallError(f'mcp server "{self.conn.name}": {what} timed out after {timeout_s:g}s',
                                   timeout=True) from None
            raise McpCallError(f'mcp server "{self.conn.name}": {what}: {exc.error.message}') from None
        except _CONNECTION_ERRORS as exc:
            raise McpCallError(f'mcp server "{self.conn.name}": {what}: {_describe(exc)}',
                               connection_lost=True) from None


@contextmanager
def _private_dir():
    """A 0700 directory for a stdio server (its cwd, HOME and TMPDIR), removed when it stops."""
    path = tempfile.mkdtemp(prefix="orloj-mcp-")
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _http_streams(c: McpConnection, target):
    """The streamable-HTTP transport, connected to the address the egress guard checked; it
    yields a third item (a session-id getter) we do not need."""

    class _Streams:
        async def __aenter__(self):
            self._cm = streamablehttp_client(c.endpoint, headers=dict(c.headers) or None,
                                             timeout=c.connect_timeout_s,
                                             httpx_client_factory=pinned_client_factory(target))
            read, write, _session_id = await self._cm.__aenter__()
            return read, write

        async def __aexit__(self, *exc):
            return await self._cm.__aexit__(*exc)

    return _Streams()


async def open_session(conn: McpConnection, policy: McpPolicy | None = None) -> McpSession:
    """A fresh, initialized session; the caller closes it. ``policy`` None: the strict default
    (no stdio program, no private network)."""
    return await McpSession(conn, policy).start()


class McpSessionPool:
    """Live sessions keyed by server and connection fingerprint, reconnecting on failure.

    Belongs to one event loop (the SDK's streams do); a process keeps one pool per loop.
    """

    def __init__(self, policy: McpPolicy | None = None) -> None:
        self.policy = policy
        self._sessions: dict[str, McpSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def session(self, conn: McpConnection) -> McpSession:
        key = f"{conn.key}#{conn.fingerprint()}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._sessions.get(key)
            if current is not None and current.alive:
                return current
            stale = [k for k in self._sessions if k.split("#", 1)[0] == conn.key]
            for k in stale:  # an older fingerprint or a dead session of the same server
                await self._sessions.pop(k).close()
            self._sessions[key] = await open_session(conn, self.policy)
            return self._sessions[key]

    async def discard(self, session: McpSession) -> None:
        for key, value in list(self._sessions.items()):
            if value is session:
                del self._sessions[key]
        await session.close()

    async def call_tool(self, conn: McpConnection, name: str, arguments: dict, timeout_s: float,
                        meta: dict | None = None) -> types.CallToolResult:
        """Call with one reconnect: a lost connection is rebuilt and the call sent once more."""
        for attempt in (1, 2):
            session = await self.session(conn)
            try:
                return await session.call_tool(name, arguments, timeout_s, meta)
            except McpCallError as exc:
                if exc.connection_lost or not session.alive:
                    await self.discard(session)
                    if attempt == 1 and exc.connection_lost:
                        log.info("mcp server %s: reconnecting after: %s", conn.key, exc.message)
                        continue
                raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
