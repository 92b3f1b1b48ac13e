"""The tool seam: ``ToolRunner``, the context of one call, and ``ToolError``.

Error codes follow upstream's taxonomy (execution.md 11.3): ``invalid_input``,
``unsupported_tool``, ``runtime_policy_invalid``, ``isolation_unavailable``,
``permission_denied``, ``secret_resolution_failed``, ``timeout``, ``canceled``,
``execution_failed``, ``auth_invalid``, ``auth_forbidden``; orloj-ray adds
``tool_egress_denied`` (the SSRF guard) and ``resource_limit`` (sandbox limits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from orloj_ray.errors import TOOL_REASONS as REASONS, ToolError

__all__ = ["REASONS", "ToolCallContext", "ToolError", "ToolRunner", "seconds", "tool_name"]


@dataclass
class ToolCallContext:
    namespace: str
    task: str
    agent: str
    idempotency_key: str
    """The step's key; sent as ``Idempotency-Key`` (and ``request_id``) on every attempt."""


class ToolRunner(Protocol):
    """Runs one tool call. ``tool`` is the Tool resource (a dict, possibly carrying resolved
    auth under ``AUTH_KEY``); ``tool_input`` the model's raw arguments. Returns the result text
    or raises ``ToolError`` with a code from ``REASONS``."""

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str: ...


def tool_name(tool: dict) -> str:
    return (tool.get("metadata") or {}).get("name") or "?"


def seconds(value: str, default: float) -> float:
    from orloj_ray.resources import parse_duration

    try:
        return parse_duration(value).total_seconds() if value else default
    except ValueError:
        return default
