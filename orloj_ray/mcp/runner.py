"""``McpToolRunner``: the ToolRunner for ``type: mcp`` tools.

The tool's server connection arrives on the tool dict under ``MCP_CONNECTION_KEY`` (attached by
task resolution, never stored). Input follows upstream: a JSON object is the arguments, anything
else is sent as ``{"input": "<raw>"}``; the result is the text of the ``content`` items joined by
newlines, and ``isError`` is a retryable ``execution_failed``. The step's idempotency key travels
in the request's ``_meta`` (``orloj.dev/idempotency-key``) for servers that honour it.
"""

from __future__ import annotations

import asyncio
import json

from mcp import types

from orloj_ray.mcp.connection import McpConfigError, McpConnection
from orloj_ray.mcp.policy import McpPolicy
from orloj_ray.mcp.session import McpCallError, McpSessionPool
from orloj_ray.tools import ToolCallContext, ToolError

MCP_CONNECTION_KEY = "_mcp_connection"
"""Private key on a Tool dict (TurnRequest.tools) carrying its server's ``McpConnection``."""
DEFAULT_TIMEOUT_S = 30.0
IDEMPOTENCY_META_KEY = "orloj.dev/idempotency-key"


def _timeout(spec: dict) -> float:
    from orloj_ray.resources import parse_duration

    raw = ((spec.get("runtime") or {}).get("timeout") or "").strip()
    try:
        value = parse_duration(raw).total_seconds() if raw else 0.0
    except ValueError:
        value = 0.0
    return value if value > 0 else DEFAULT_TIMEOUT_S


def arguments_of(tool_input: str) -> dict:
    try:
        doc = json.loads(tool_input) if tool_input.strip() else {}
    except ValueError:
        return {"input": tool_input}
    return doc if isinstance(doc, dict) else {"input": tool_input}


def result_text(result: types.CallToolResult) -> str:
    parts = []
    for item in result.content or []:
        if isinstance(item, types.TextContent):
            parts.append(item.text)
        elif isinstance(item, types.EmbeddedResource) and isinstance(item.resource, types.TextResourceContents):
            parts.append(item.resource.text)
        elif isinstance(item, types.ResourceLink):
            parts.append(f"[resource {item.uri}]")
        else:
            parts.append(f"[{item.type} {getattr(item, 'mimeType', '') or ''}]".replace(" ]", "]"))
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent))
    return "\n".join(parts)


class McpToolRunner:
    """Calls MCP tools on their servers, one reused session per server per event loop, as the
    operator's ``policy`` allows (None: the strict default)."""

    def __init__(self, policy: McpPolicy | None = None) -> None:
        self.policy = policy
        self._pools: dict[int, McpSessionPool] = {}

    def _pool(self) -> McpSessionPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(id(loop))
        if pool is None:
            # sessions of a finished loop cannot be reused (their streams belong to it)
            self._pools = {k: v for k, v in self._pools.items() if k == id(loop)}
            pool = self._pools[id(loop)] = McpSessionPool(self.policy)
        return pool

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        spec = tool.get("spec") or {}
        name = tool["metadata"]["name"]
        if (spec.get("type") or "") != "mcp":
            raise ToolError(f'tool "{name}": type "{spec.get("type")}" is not an MCP tool', code="unsupported_tool")
        conn = tool.get(MCP_CONNECTION_KEY)
        server = spec.get("mcp_server_ref") or ""
        if isinstance(conn, ToolError):
            raise conn
        if not isinstance(conn, McpConnection):
            raise ToolError(f'tool "{name}": mcp server "{server}" not found in namespace "{ctx.namespace}" '
                            "(apply the McpServer)", code="runtime_policy_invalid")
        mcp_name = spec.get("mcp_tool_name") or name
        timeout = _timeout(spec)
        try:
            result = await self._pool().call_tool(conn, mcp_name, arguments_of(tool_input), timeout,
                                                  meta={IDEMPOTENCY_META_KEY: ctx.idempotency_key})
        except McpCallError as exc:
            raise ToolError(f'tool "{name}": {exc.message}', code="timeout" if exc.timeout else "execution_failed",
                            retryable=True) from None
        except McpConfigError as exc:  # the policy refused the server: nothing was started
            raise ToolError(f'tool "{name}": {exc}', code=getattr(exc, "code", "runtime_policy_invalid")) from None
        text = result_text(result)
        if result.isError:
            raise ToolError(f'tool "{name}" returned an MCP error: {text or "no content"}', retryable=True)
        return text

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
