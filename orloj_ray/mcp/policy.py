"""What an McpServer may make this server do: ``McpPolicy``, set by the operator only.

* ``transport: stdio`` starts only a program the operator allowed (``ServerConfig.mcp_commands``,
  ``ORLOJ_MCP_COMMANDS`` / ``orloj up --mcp-commands``, empty by default: no stdio server
  starts). An entry is a name looked up on the server's PATH (``npx``) or an absolute path;
  the McpServer's ``command`` must be the same program (compared after resolving links), and
  a relative path never is. Allowing a launcher allows whatever it runs (``npx -y <any
  package>``): allow the narrowest program that does the job.
* The program runs with the tool sandbox's limits (``orloj_ray.tools.isolation``): a clean
  environment (``PATH``, ``HOME``/``TMPDIR`` = a private 0700 directory removed afterwards,
  ``LANG``, plus the McpServer's own ``env``), that directory as working directory, resource
  limits (``MCP_LIMITS``), and inside bubblewrap when usable: the system directories and
  ``ORLOJ_TOOL_EXEC_PATHS`` read-only, nothing else of the server's files, writes only in its
  directory. Unlike a sandboxed tool it keeps the network (MCP servers call their APIs).
* ``transport: http`` connects only where tools may (the egress guard, ``EgressGuard``, with
  the operator's ``--tool-allowed-networks``), to the address that was checked.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from mcp import StdioServerParameters

from orloj_ray.mcp.connection import McpConfigError, McpConnection
from orloj_ray.tools import EgressGuard, ToolError
from orloj_ray.tools.egress import Target
from orloj_ray.tools.isolation import (SYSTEM_DIRS, SandboxLimits, _user_processes, bwrap_argv, bwrap_usable,
                                       warn_without_bwrap)

MCP_LIMITS = SandboxLimits(memory_bytes=1024 * 1024 * 1024, cpu_seconds=0, open_files=256, processes=64,
                           file_bytes=64 * 1024 * 1024)
"""An MCP server is long-lived (no CPU-time limit) and may be a JIT runtime: the memory cap is
on data (RLIMIT_DATA, 1 GiB), not address space, because Node reserves far more address space
than it uses (a WebAssembly memory needs over 8 GiB of it; measured, node 20)."""
LAUNCH = Path(__file__).resolve().parent.parent / "tools" / "launch.py"
COMMANDS_FIX = "an operator allows programs with ORLOJ_MCP_COMMANDS (orloj up --mcp-commands), e.g. npx,uvx"


class McpRefused(McpConfigError):
    """The server's policy refuses this McpServer (``code``: the tool error code a call gets)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def _resolve(program: str) -> str | None:
    """The real path of a program name (on PATH) or absolute path; None when there is none."""
    if "/" in program:
        return os.path.realpath(program) if os.path.isabs(program) and os.path.isfile(program) else None
    found = shutil.which(program)
    return os.path.realpath(found) if found else None


def _under(path: str, roots) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


@dataclass(frozen=True)
class McpPolicy:
    commands: tuple[str, ...] = ()
    """Programs stdio servers may launch; empty: none."""
    guard: EgressGuard = field(default_factory=EgressGuard)
    """Where HTTP servers may be (the tools' egress guard)."""
    exec_paths: tuple[str, ...] = ()
    """Directories shown read-only inside the bubblewrap sandbox (``ORLOJ_TOOL_EXEC_PATHS``)."""
    limits: SandboxLimits = MCP_LIMITS
    use_bwrap: bool | None = None
    """None: when usable; False: never (True: required, ``isolation_unavailable`` otherwise)."""

    @classmethod
    def from_config(cls, config) -> "McpPolicy":
        return cls(commands=tuple(getattr(config, "mcp_commands", ()) or ()),
                   guard=EgressGuard(getattr(config, "tool_allowed_networks", ()) or ()),
                   exec_paths=tuple(getattr(config, "tool_exec_paths", ()) or ()))

    def program(self, conn: McpConnection) -> str:
        """The path of the program a stdio McpServer may launch; ``McpRefused`` otherwise."""
        command = conn.command.strip()
        if not command:
            raise McpRefused(f'mcp server "{conn.name}": spec.command is required for transport stdio',
                             "runtime_policy_invalid")
        allowed = {real for entry in self.commands if entry.strip() and (real := _resolve(entry.strip()))}
        relative = "/" in command and not os.path.isabs(command)
        real = None if relative else _resolve(command)
        if real is None or real not in allowed:
            listed = ", ".join(self.commands) if self.commands else "none"
            why = "is a relative path" if relative else "is not one of the programs this server allows"
            raise McpRefused(f'mcp server "{conn.name}": command "{command}" {why} (allowed: {listed}); '
                             f"{COMMANDS_FIX}", "mcp_command_not_allowed")
        return shutil.which(command) if "/" not in command else command

    def stdio_parameters(self, conn: McpConnection, workdir: str) -> StdioServerParameters:
        """How the SDK starts the server: under ``launch.py`` (the limits), inside bwrap when usable."""
        program = self.program(conn)
        argv = [program, *conn.args]
        bwrap = "" if self.use_bwrap is False else bwrap_usable()
        if self.use_bwrap and not bwrap:
            raise McpRefused(f'mcp server "{conn.name}": bubblewrap was required but is not usable here',
                             "isolation_unavailable")
        if bwrap:
            shown = [p for p in (os.path.realpath(x) for x in self.exec_paths if x.strip()) if os.path.exists(p)]
            for path in {program, os.path.realpath(program)}:
                if not _under(path, SYSTEM_DIRS) and not _under(path, shown):
                    shown.append(path)
            argv = bwrap_argv(bwrap, workdir, argv, network=True, read_only=shown)
        else:
            warn_without_bwrap("stdio MCP servers")
        limits = self.limits
        rlimits = {"DATA": limits.memory_bytes, "NOFILE": limits.open_files,
                   "NPROC": _user_processes() + limits.processes, "FSIZE": limits.file_bytes, "CORE": 0}
        launch = [arg for name, value in rlimits.items() for arg in ("--limit", f"{name}={value}")]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               **conn.env}
        return StdioServerParameters(command=sys.executable, args=["-I", "-S", str(LAUNCH), *launch, "--", *argv],
                                     env=env, cwd=workdir)

    async def http_target(self, conn: McpConnection) -> Target:
        """The checked address of an HTTP server (``McpRefused`` with the guard's code otherwise)."""
        try:
            return await self.guard.check(conn.endpoint, tool=f"mcp server {conn.name}")
        except ToolError as exc:
            raise McpRefused(exc.message.replace(f'tool "mcp server {conn.name}"', f'mcp server "{conn.name}"'),
                             exc.code) from None


class PinnedTransport(httpx.AsyncBaseTransport):
    """Every request goes to the address the guard checked, with the original Host and TLS
    name, so a second DNS answer (rebinding) is never connected to; another host is refused."""

    def __init__(self, target: Target):
        self.target = target
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != self.target.host:
            raise httpx.ConnectError(f"refused: {request.url.host} is not the checked MCP host {self.target.host}",
                                     request=request)
        request.url = request.url.copy_with(host=self.target.ip)
        request.headers["Host"] = self.target.host_header
        if self.target.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": self.target.host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def pinned_client_factory(target: Target):
    """An ``httpx_client_factory`` for the SDK's streamable-HTTP transport, pinned to ``target``."""

    def factory(headers: dict[str, str] | None = None, timeout: httpx.Timeout | None = None,
                auth: httpx.Auth | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=headers, timeout=timeout or httpx.Timeout(30.0, read=300.0), auth=auth,
                                 transport=PinnedTransport(target), follow_redirects=False)

    return factory
