"""The shapes the client returns, as ``TypedDict``s: type checkers see the fields, and every
result stays the plain JSON dict it always was (``task["status"]["phase"]`` keeps working).

``total=False`` throughout: the server omits empty fields, and upstream Orloj leaves some
out that orloj-ray sets. Only the common fields are named; anything else is still there.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Metadata(TypedDict, total=False):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    resourceVersion: str
    generation: int
    createdAt: str


class Resource(TypedDict, total=False):
    """Any stored object: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``."""

    apiVersion: str
    kind: str
    metadata: Metadata
    spec: dict[str, Any]
    status: dict[str, Any]


class TraceRow(TypedDict, total=False):
    """One step of a task's trace (``status.trace``)."""

    timestamp: str
    step_id: str
    type: str
    agent: str
    model: str
    tool: str
    tokens: int
    latency_ms: int
    """The step itself: a model or tool call, or (``agent_end``) the turn inside the agent."""
    elapsed_ms: int
    """``agent_end`` only: from the message being sent to its result, actor start included."""
    error_code: str
    message: str


class TaskStatus(TypedDict, total=False):
    phase: str
    """Pending, Running, WaitingApproval, Succeeded, Failed or DeadLetter."""
    attempts: int
    lastError: str
    errorCode: str
    claimedBy: str
    startedAt: str
    completedAt: str
    output: dict[str, str]
    trace: list[TraceRow]
    history: list[dict[str, Any]]
    messages: list[dict[str, Any]]


class Task(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Metadata
    spec: dict[str, Any]
    status: TaskStatus


class MemoryEntries(TypedDict, total=False):
    entries: list[Any]
    count: int
    ranking: str
