"""MCP servers: connections, SDK sessions, and the ``type: mcp`` tool runner.

The controller side (listing a server's tools into Tool resources) is
``orloj_ray.engine.mcp_sync``; this package only talks to servers.
"""

from orloj_ray.mcp.connection import McpConfigError, McpConnection, connection_from_server
from orloj_ray.mcp.policy import McpPolicy, McpRefused
from orloj_ray.mcp.runner import MCP_CONNECTION_KEY, McpToolRunner, arguments_of, result_text
from orloj_ray.mcp.session import McpCallError, McpSession, McpSessionPool, McpToolInfo, open_session


def register_mcp(dispatcher, runner: McpToolRunner | None = None) -> McpToolRunner:
    """Register the MCP runner for ``type: mcp`` on a ToolDispatcher (``register(type, runner)``)."""
    runner = runner or McpToolRunner()
    dispatcher.register("mcp", runner)
    return runner


__all__ = [
    "MCP_CONNECTION_KEY", "McpCallError", "McpConfigError", "McpConnection", "McpPolicy", "McpRefused", "McpSession",
    "McpSessionPool",
    "McpToolInfo", "McpToolRunner", "arguments_of", "connection_from_server", "open_session", "register_mcp",
    "result_text",
]
