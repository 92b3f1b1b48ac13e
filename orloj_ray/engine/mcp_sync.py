"""McpServer reconciliation: list the server's tools and keep one generated Tool per tool.

As upstream's McpServerController: phase ``Connecting`` -> initialize -> ``tools/list`` ->
create/update ``<server>--<tool name with _ and . as ->`` Tools (``type: mcp``, owner labels),
filtered by ``spec.tool_filter.include`` (MCP tool names); generated Tools the server no longer
offers are deleted; status ``Ready`` with ``discoveredTools``, ``generatedTools``,
``lastSyncedAt`` (and ``toolCount``), or ``Error`` with ``lastError``. A server is synced when
it is not Ready or its generation changed; deleting it deletes its tools.

Connecting can take seconds (``npx`` downloads, a slow endpoint), so ``McpSync`` runs each sync
as a background task with a time bound, one at a time per server: the control loop never waits.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from orloj_ray.engine.owned import upsert_generated
from orloj_ray.secrets import resolve_secret
from orloj_ray.errors import Conflict, NotFound, OrlojError
from orloj_ray.mcp import (McpCallError, McpConfigError, McpConnection, McpPolicy, McpToolInfo, connection_from_server,
                           open_session)
from orloj_ray.resources import API_VERSION, normalize
from orloj_ray.store.base import LabelSelector

log = logging.getLogger("orloj_ray.mcp_sync")

SOURCE = "mcp-sync"
MCP_SERVER_LABEL = "orloj.dev/mcp-server"
MCP_GENERATED_LABEL = "orloj.dev/mcp-generated"
MAX_DESCRIPTION = 4096
SYNC_TIMEOUT_S = 60.0
"""Bound on one whole sync (connect, list, write)."""


def generated_tool_name(server: str, mcp_tool: str) -> str:
    return f"{server.strip()}--{mcp_tool.strip().replace('_', '-').replace('.', '-')}"


def needs_sync(server: dict) -> bool:
    status = server.get("status") or {}
    return not (status.get("phase") == "Ready"
                and status.get("observedGeneration") == server["metadata"].get("generation", 1))


async def server_connection(store, server: dict) -> McpConnection:
    """The server's connection with its secrets resolved (``McpConfigError`` when one is missing)."""
    ns = server["metadata"].get("namespace") or "default"
    return await connection_from_server(server, lambda ref: resolve_secret(store, ns, ref))


def _filter(tools: list[McpToolInfo], include: list[str]) -> list[McpToolInfo]:
    wanted = {name.strip() for name in include or [] if name.strip()}
    return [t for t in tools if not wanted or t.name in wanted]


def tool_document(server: dict, tool: McpToolInfo) -> dict:
    ns = server["metadata"].get("namespace") or "default"
    name = server["metadata"]["name"]
    spec = {"type": "mcp", "mcp_server_ref": name, "mcp_tool_name": tool.name,
            "description": tool.description[:MAX_DESCRIPTION]}
    if tool.input_schema:
        spec["input_schema"] = tool.input_schema
    doc = {"apiVersion": API_VERSION, "kind": "Tool",
           "metadata": {"name": generated_tool_name(name, tool.name), "namespace": ns,
                        "labels": {MCP_SERVER_LABEL: name, MCP_GENERATED_LABEL: "true"}},
           "spec": spec}
    return normalize(doc, kind="Tool")


async def _server_tools(store, namespace: str, server: str) -> list[dict]:
    selector = LabelSelector({MCP_SERVER_LABEL: server, MCP_GENERATED_LABEL: "true"})
    return (await store.list("Tool", namespace, selector)).items


async def delete_server_tools(store, namespace: str, server: str, keep: set[str] = frozenset()) -> list[str]:
    """Delete the server's generated Tools not in ``keep``; returns the deleted names."""
    deleted = []
    for item in await _server_tools(store, namespace, server):
        name = item["metadata"]["name"]
        if name in keep:
            continue
        try:
            await store.delete("Tool", namespace, name, source=SOURCE)
            deleted.append(name)
        except NotFound:
            pass
    return deleted


async def write_tools(store, server: dict, tools: list[McpToolInfo]) -> list[str]:
    """Create or update the generated Tools (only those that changed), delete the orphans."""
    ns = server["metadata"].get("namespace") or "default"
    names = []
    for tool in tools:
        doc = tool_document(server, tool)
        names.append(doc["metadata"]["name"])
        await upsert_generated(store, doc, source=SOURCE)
    await delete_server_tools(store, ns, server["metadata"]["name"], keep=set(names))
    return names


async def _write_status(store, server: dict, changes: dict, drop: tuple[str, ...] = ()) -> dict | None:
    meta = server["metadata"]
    status = {**(server.get("status") or {}), **changes}
    for key in drop:
        status.pop(key, None)
    try:
        return await store.update_status("McpServer", meta.get("namespace") or "default", meta["name"], status,
                                         meta["resourceVersion"], source="reconciler")
    except (Conflict, NotFound):
        return None  # changed or deleted meanwhile: its own event brings us back


async def sync_server(store, server: dict, *, timeout_s: float = SYNC_TIMEOUT_S,
                      policy: McpPolicy | None = None) -> dict | None:
    """Sync one McpServer now; returns its stored object after the final status write.
    ``policy``: what the operator lets McpServers start and reach (None: the strict default)."""
    generation = server["metadata"].get("generation", 1)
    server = await _write_status(store, server, {"phase": "Connecting"}, drop=("lastError",))
    if server is None:
        return None
    try:
        conn = await server_connection(store, server)
        session = await open_session(conn, policy)
        try:
            listed = await session.list_tools(timeout_s)
        finally:
            await session.close()
    except McpConfigError as exc:
        return await _error(store, server, str(exc), generation)
    except McpCallError as exc:
        prefix = "tools/list: " if "tools/list" in exc.message else ""
        return await _error(store, server, prefix + exc.message, generation)
    try:
        names = await write_tools(store, server, _filter(listed, (server.get("spec") or {}).get("tool_filter", {})
                                                               .get("include") or []))
    except OrlojError as exc:
        return await _error(store, server, f"sync tools: {exc.message}", generation)
    return await _write_status(store, server, {
        "phase": "Ready", "discoveredTools": [t.name for t in listed], "generatedTools": names,
        "toolCount": len(names), "lastSyncedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "observedGeneration": generation,
    }, drop=("lastError",))


async def _error(store, server: dict, message: str, generation: int) -> dict | None:
    return await _write_status(store, server, {"phase": "Error", "lastError": message,
                                               "observedGeneration": generation})


class McpSync:
    """Runs syncs in the background, at most one per server at a time."""

    def __init__(self, store, *, timeout_s: float = SYNC_TIMEOUT_S, policy: McpPolicy | None = None):
        self.store = store
        self.timeout_s = timeout_s
        self.policy = policy
        self.running: dict[str, asyncio.Task] = {}

    def kick(self, server: dict) -> bool:
        """Start a sync if the server needs one and none is running; True when started."""
        key = f'{server["metadata"].get("namespace") or "default"}/{server["metadata"]["name"]}'
        if key in self.running or not needs_sync(server):
            return False
        task = asyncio.create_task(self._run(server), name=f"mcp-sync:{key}")
        self.running[key] = task
        task.add_done_callback(lambda _t: self.running.pop(key, None))
        return True

    async def _run(self, server: dict) -> None:
        meta = server["metadata"]
        try:
            await asyncio.wait_for(sync_server(self.store, server, timeout_s=self.timeout_s, policy=self.policy),
                                   self.timeout_s + 5)
        except asyncio.TimeoutError:
            try:
                current = await self.store.get("McpServer", meta.get("namespace") or "default", meta["name"])
            except NotFound:
                return
            await _error(self.store, current, f"sync timed out after {self.timeout_s:g}s", meta.get("generation", 1))
        except Exception:
            log.exception("mcp sync of %s/%s failed", meta.get("namespace"), meta["name"])

    async def server_deleted(self, namespace: str, name: str) -> None:
        task = self.running.get(f"{namespace}/{name}")
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await delete_server_tools(self.store, namespace, name)

    async def wait_idle(self) -> None:
        await asyncio.gather(*list(self.running.values()), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await self.wait_idle()
