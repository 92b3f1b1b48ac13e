"""Built-in memory tools (``memory.read|write|search|list|ingest``) and ``MemoryToolRunner``.

Agents with ``spec.memory.ref`` are offered the operations ``spec.memory.allow`` names (all
five when it is empty), as tool dicts of ``spec.type: memory`` built here; they are never
stored. Each carries its ``MemoryRef`` under ``MEMORY_REF_KEY``. Names, descriptions,
schemas and result JSON are upstream's.
"""

from __future__ import annotations

import json

from orloj_ray.memory.base import MemoryBackendError, MemoryRef
from orloj_ray.memory.service import OPERATIONS, MemoryService
from orloj_ray.tools import ToolCallContext, ToolError

MEMORY_TOOL_TYPE = "memory"
MEMORY_REF_KEY = "_memory_ref"
BUILTIN_LABEL = "orloj.dev/builtin"

_STR = {"type": "string"}
SCHEMAS = {
    "read": ("Read a value from memory by key.",
             {"type": "object", "properties": {"key": {**_STR, "description": "The exact memory key to read."}},
              "required": ["key"], "additionalProperties": False}),
    "write": ("Write a key-value pair into memory.",
              {"type": "object", "properties": {"key": {**_STR, "description": "The memory key to write."},
                                                "value": {**_STR, "description": "The value to store at the key."}},
               "required": ["key", "value"], "additionalProperties": False}),
    "search": ("Search memory entries by query text.",
               {"type": "object", "properties": {
                   "query": {**_STR, "description": "The search query."},
                   "top_k": {"type": "integer", "description": "Maximum number of results to return."}},
                "required": ["query"], "additionalProperties": False}),
    "list": ("List memory entries, optionally filtered by key prefix.",
             {"type": "object", "properties": {"prefix": {**_STR, "description": "Optional key prefix filter."}},
              "additionalProperties": False}),
    "ingest": ("Ingest a source document into memory by chunking and storing it.",
               {"type": "object", "properties": {
                   "source": {**_STR, "description": "Short source label for the ingested content."},
                   "content": {**_STR, "description": "Full text content to ingest into memory."}},
                "required": ["source", "content"], "additionalProperties": False}),
}


def is_memory_tool(name: str) -> bool:
    return name.startswith("memory.") and name.removeprefix("memory.") in OPERATIONS


def memory_tools(ref: MemoryRef, allow: list[str] | None = None) -> list[dict]:
    """The tool dicts offered to an agent using ``ref`` (sorted by name, as upstream)."""
    ops = sorted({op.strip().lower().removeprefix("memory.") for op in allow or []} or set(OPERATIONS))
    tools = []
    for op in ops:
        if op not in SCHEMAS:
            continue
        description, schema = SCHEMAS[op]
        tools.append({
            "apiVersion": "orloj.dev/v1", "kind": "Tool",
            "metadata": {"name": f"memory.{op}", "namespace": ref.namespace,
                         "labels": {BUILTIN_LABEL: MEMORY_TOOL_TYPE}},
            "spec": {"type": MEMORY_TOOL_TYPE, "description": description, "input_schema": schema,
                     "risk_level": "low", "operation_classes": ["read" if op in ("read", "search", "list") else "write"]},
            MEMORY_REF_KEY: ref,
        })
    return tools


class MemoryToolRunner:
    """Executes ``type: memory`` tools on a MemoryService (in this process or a named actor)."""

    def __init__(self, service: MemoryService):
        self.service = service

    async def call(self, tool: dict, tool_input: str, ctx: ToolCallContext) -> str:
        name = tool["metadata"]["name"]
        ref = tool.get(MEMORY_REF_KEY)
        if not isinstance(ref, MemoryRef) or not is_memory_tool(name):
            raise ToolError(f'tool "{name}" is not a built-in memory tool of this agent', code="unsupported_tool")
        try:
            args = json.loads(tool_input) if tool_input.strip() else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            raise ToolError(f"{name}: invalid input: expected a JSON object", code="invalid_input")
        try:
            result = await self.service.execute(ref, name, args)
        except MemoryBackendError as exc:
            code = "invalid_input" if exc.code == "invalid_input" else "execution_failed"
            raise ToolError(f"{name}: {exc.message}", code=code, retryable=exc.retryable) from None
        return json.dumps(result)
