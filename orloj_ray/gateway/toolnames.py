"""Tool names as providers accept them, and back.

Providers take only ``[A-Za-z0-9_-]`` (at most 128 characters) as a function name; Orloj tool
names may hold dots, slashes and the like. Upstream's rule: every other run of characters
becomes one ``_``, leading/trailing ``_``/``-`` are trimmed, an empty result is ``tool``,
collisions (case-insensitive) get ``_2``, ``_3``... The reply's names are mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_NAME = 128


def sanitize_tool_name(name: str, used: set[str]) -> str:
    """The provider-safe alias of ``name``, unique (case-insensitively) within ``used``; adds it."""
    out, last_underscore = [], False
    for ch in name.strip() or "tool":
        if ch.isalnum() or ch in "_-":
            out.append(ch)
            last_underscore = False
        elif not last_underscore:
            out.append("_")
            last_underscore = True
    alias = "".join(out).strip("_-") or "tool"
    if len(alias) > MAX_NAME:
        alias = alias[:MAX_NAME].rstrip("_-") or "tool"
    candidate, suffix = alias, 2
    while candidate.lower() in used:
        tag = f"_{suffix}"
        trimmed = alias if len(alias) + len(tag) <= MAX_NAME else (alias[: MAX_NAME - len(tag)].rstrip("_-") or "tool")
        candidate, suffix = trimmed + tag, suffix + 1
    used.add(candidate.lower())
    return candidate


@dataclass
class ToolAliases:
    to_provider: dict[str, str] = field(default_factory=dict)
    to_runtime: dict[str, str] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, names: list[str]) -> "ToolAliases":
        aliases = cls()
        for name in names:
            aliases.provider_name(name)
        return aliases

    def provider_name(self, name: str) -> str:
        """The alias of a runtime name, made on first sight (tools that left the offered list
        still appear in the history)."""
        if name not in self.to_provider:
            alias = sanitize_tool_name(name, self._used)
            self.to_provider[name] = alias
            self.to_runtime[alias] = name
        return self.to_provider[name]

    def runtime_name(self, alias: str) -> str:
        return self.to_runtime.get(alias, alias)
