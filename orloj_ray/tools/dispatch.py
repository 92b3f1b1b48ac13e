"""``ToolDispatcher``: one ``ToolRunner`` that picks the real runner for each call.

Order (execution.md 11.1): a runner registered for the tool's ``spec.type`` that runs
in-process (``mcp``, built-in memory tools) is called directly; otherwise the tool's
isolation mode (``spec.runtime.isolation_mode``; empty means ``sandboxed`` for
high/critical risk, else ``none``) picks an isolation backend when it is not ``none``, and
``none`` uses the runner registered for the type (``http`` by default). Anything else is
``unsupported_tool``.

Registering a runner (other parts of orloj-ray plug in here)::

    from orloj_ray.tools import ToolDispatcher, default_tool_runner

    dispatcher = default_tool_runner(config)          # http + isolation backends
    dispatcher.register("mcp", McpToolRunner(...))    # any object with
    #   async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str
    # raising orloj_ray.tools.ToolError(message, code=..., retryable=...) on failure.

``register(type, runner)`` replaces any earlier runner for that type. By default a
registered runner is *in-process*: it is called whatever the tool's isolation mode says
(right for MCP, whose servers are processes of their own, and for built-ins).
``register(type, runner, in_process=False)`` means the opposite: the runner is only used
for ``isolation_mode: none`` and isolated modes go to the isolation backends (as ``http``).
Runners may also be passed as ``ToolDispatcher(runners={"mcp": ...})``.
"""

from __future__ import annotations

from dataclasses import dataclass

from orloj_ray.tools.base import ToolCallContext, ToolError, ToolRunner, tool_name

ISOLATION_MODES = ("none", "sandboxed", "container", "wasm")
RISKY = ("high", "critical")


def isolation_mode(tool: dict) -> str:
    """The tool's effective isolation mode, with upstream's risk-level default."""
    spec = tool.get("spec") or {}
    mode = str((spec.get("runtime") or {}).get("isolation_mode") or "").strip().lower()
    if mode:
        return mode
    return "sandboxed" if str(spec.get("risk_level") or "").lower() in RISKY else "none"


@dataclass
class _Entry:
    runner: ToolRunner
    in_process: bool


class ToolDispatcher:
    def __init__(self, runners: dict[str, ToolRunner] | None = None,
                 backends: dict[str, ToolRunner] | None = None):
        self._types: dict[str, _Entry] = {}
        self._backends: dict[str, ToolRunner] = dict(backends or {})
        """Isolation mode -> backend runner (``sandboxed``, ``container``, ``wasm``)."""
        for kind, runner in (runners or {}).items():
            self.register(kind, runner)

    def register(self, type_: str, runner: ToolRunner, *, in_process: bool = True) -> None:
        """Use ``runner`` for tools whose ``spec.type`` is ``type_``; see the module docstring."""
        self._types[type_.strip().lower()] = _Entry(runner, in_process=in_process)

    def register_backend(self, mode: str, runner: ToolRunner) -> None:
        self._backends[mode] = runner

    def runner_for(self, tool: dict) -> ToolRunner:
        spec = tool.get("spec") or {}
        kind = str(spec.get("type") or "http").strip().lower()
        entry = self._types.get(kind)
        if entry is not None and entry.in_process:
            return entry.runner
        mode = isolation_mode(tool)
        if mode not in ISOLATION_MODES:
            raise ToolError(f'tool "{tool_name(tool)}": unknown spec.runtime.isolation_mode "{mode}" '
                            f"(expected {', '.join(ISOLATION_MODES)})", code="runtime_policy_invalid")
        if mode != "none" or kind == "wasm":
            backend = self._backends.get("wasm" if kind == "wasm" else mode)
            if backend is None:
                raise ToolError(f'tool "{tool_name(tool)}" needs isolation "{mode}" but this server has no such '
                                "backend", code="isolation_unavailable")
            return backend
        if entry is None:
            known = ", ".join(sorted(self._types)) or "none"
            raise ToolError(f'tool "{tool_name(tool)}": type "{kind}" is not supported by this runtime '
                            f"(supported: {known})", code="unsupported_tool")
        return entry.runner

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        return await self.runner_for(tool).call(tool, tool_input, ctx)
