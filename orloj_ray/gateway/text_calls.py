"""Tool calls a model wrote as text: upstream's fallback for providers without native tool calling.

Read only when a reply has no native tool calls and tools are offered (execution.md section 7).
Recognised, in this order, after unwrapping a fenced code block:

* a JSON object with ``name`` or ``tool`` (and ``input`` / ``arguments`` / ``args``):
  ``{"tool": "web_search", "input": "q"}``;
* a JSON object with a ``tools`` or ``tool_calls`` array of such objects (OpenAI's
  ``{"function": {"name", "arguments"}}`` shape too), or such an array alone;
* a line ``tool: <name> input: <text>`` (``=`` instead of ``:`` too).

Anything else is text: a reply is never read as a call by accident (prose that mentions a tool
is prose). The names are checked against the offered tools by the governor, as native calls are.
"""

from __future__ import annotations

import json
import re

from orloj_ray.gateway.base import ToolCall

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n\s*```\s*$", re.S)
_LINE = re.compile(r"^\s*tool\s*[:=]\s*(?P<name>[^\s]+)\s+input\s*[:=]\s*(?P<input>.*?)\s*$", re.I | re.M)


def _unfenced(text: str) -> str:
    match = _FENCE.match(text.strip())
    return match.group(1) if match else text.strip()


def _arguments(value: object) -> str:
    """Arguments as the JSON text a native call carries: an object as is, anything else as ``input``."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return json.dumps({"input": value})
        return value if isinstance(parsed, dict) else json.dumps({"input": value})
    if isinstance(value, dict):
        return json.dumps(value)
    return json.dumps({"input": "" if value is None else value})


def _one(doc: object) -> tuple[str, str] | None:
    if not isinstance(doc, dict):
        return None
    function = doc.get("function")
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return function["name"], _arguments(function.get("arguments"))
    name = doc.get("tool") if isinstance(doc.get("tool"), str) else doc.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    for key in ("input", "arguments", "args", "parameters"):
        if key in doc:
            return name.strip(), _arguments(doc[key])
    return name.strip(), _arguments("")


def parse_text_tool_calls(text: str, step: int = 1) -> list[ToolCall]:
    """The tool calls ``text`` asks for, as ``ToolCall``s (ids ``text_<step>_<i>``); ``[]`` for text."""
    if not text or not text.strip():
        return []
    body = _unfenced(text)
    calls: list[tuple[str, str]] = []
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("tools") or doc.get("tool_calls"), list):
        calls = [c for c in map(_one, doc.get("tools") or doc.get("tool_calls")) if c]
    elif isinstance(doc, list):
        calls = [c for c in map(_one, doc) if c]
    elif isinstance(doc, dict):
        calls = [c for c in [_one(doc)] if c]
    else:
        calls = [(m.group("name"), _arguments(m.group("input"))) for m in _LINE.finditer(body)]
    return [ToolCall(id=f"text_{step}_{i}", name=name, arguments=args) for i, (name, args) in enumerate(calls)]
