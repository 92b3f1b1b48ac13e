"""Tool runtime: how an agent's tool call reaches the tool.

    base.py       ToolRunner seam, ToolCallContext, ToolError (upstream's error codes)
    dispatch.py   ToolDispatcher: runner by spec.type and isolation mode; register() to plug in
    http.py       http / external tools: contract envelope, auth, retries, Idempotency-Key
    auth.py       resolved tool auth (never stored, never shown) and the OAuth2 token cache
    egress.py     the SSRF guard (operator-allowed networks only)
    isolation.py  sandboxed / wasm / container backends

``default_tool_runner(config)`` builds the dispatcher every runtime uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orloj_ray.tools.auth import AUTH_KEY, ResolvedAuth, TokenCache, auth_of, resolve_auth, with_auth
from orloj_ray.tools.base import ToolCallContext, ToolError, ToolRunner
from orloj_ray.tools.dispatch import ToolDispatcher, isolation_mode
from orloj_ray.tools.egress import EgressGuard
from orloj_ray.tools.http import HttpToolRunner
from orloj_ray.tools.isolation import ContainerRunner, ExecPaths, SandboxLimits, SandboxRunner, WasmRunner

if TYPE_CHECKING:
    from orloj_ray.config import ServerConfig

__all__ = [
    "AUTH_KEY", "ContainerRunner", "EgressGuard", "ExecPaths", "HttpToolRunner", "ResolvedAuth",
    "SandboxLimits", "SandboxRunner", "TokenCache", "ToolCallContext", "ToolDispatcher", "ToolError", "ToolRunner",
    "WasmRunner", "auth_of", "default_tool_runner", "isolation_mode", "resolve_auth", "with_auth",
]


def default_tool_runner(config: "ServerConfig | None" = None) -> ToolDispatcher:
    """http/external tools plus the sandboxed, wasm and container backends, configured from
    ``config`` (allowed networks, program directories, default wasm module). ``None`` means
    the defaults: no private network reachable, no local programs."""
    guard = EgressGuard(getattr(config, "tool_allowed_networks", ()) or ())
    paths = ExecPaths(getattr(config, "tool_exec_paths", ()) or ())
    http = HttpToolRunner(guard=guard)
    dispatcher = ToolDispatcher()
    dispatcher.register("http", http, in_process=False)
    dispatcher.register("external", http, in_process=False)
    dispatcher.register_backend("sandboxed", SandboxRunner(http, paths))
    dispatcher.register_backend("wasm", WasmRunner(paths, default_module=getattr(config, "tool_wasm_module", "") or ""))
    dispatcher.register_backend("container", ContainerRunner(guard))
    # here, not at the top: orloj_ray.mcp imports this package
    from orloj_ray.mcp import McpPolicy, McpToolRunner, register_mcp

    register_mcp(dispatcher, McpToolRunner(McpPolicy.from_config(config)))
    return dispatcher
