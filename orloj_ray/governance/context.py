"""What a turn needs to be governed, resolved by the executor and carried in the TurnRequest.

Plain data (lists and dicts of resource specs), so it pickles into an AgentActor and the actor
needs no store access. Specs are kept raw on purpose: they are read inside the rules, so a
malformed resource makes its rule raise, and a raising rule denies (fail closed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


def version_of(kind: str, name: str, spec: dict) -> str:
    """``Kind/name#<digest of the spec>``: changes whenever the rule's content changes, so an
    approval granted under one version of a rule is not reused under another."""
    body = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return f"{kind}/{name}#{hashlib.sha256(body.encode()).hexdigest()[:12]}"


@dataclass
class TurnGovernance:
    namespace: str = "default"
    task: str = ""
    system: str = ""
    model_ref: str = ""
    policies: list[dict] = field(default_factory=list)
    """AgentPolicies that may apply: ``{"name", "namespace", "version", "spec"}`` (matched by the rules)."""
    roles: list[dict] = field(default_factory=list)
    """Bound AgentRoles found: ``{"name", "spec"}`` (the generated ``<agent>-grants`` role included)."""
    missing_roles: list[str] = field(default_factory=list)
    tool_permissions: list[dict] = field(default_factory=list)
    """ToolPermissions of the task's namespace: ``{"name", "version", "spec"}``."""
    allowed_tools: list[str] = field(default_factory=list)
    """``Agent.spec.allowed_tools``: upstream's bypass of role checks."""
    tool_grants: dict[str, list[str]] = field(default_factory=dict)
    """Announcement dialect: lower-cased tool name -> the grants listed under it (what a call of
    that tool uses, for ``requireApproval``)."""
    approvals: list[dict] = field(default_factory=list)
    """ToolApprovals of this task message: ``{"name", "phase", "tool", "digest", "policy_version",
    "expires_at", "decided_by"}``; ``expires_at`` in epoch seconds."""
    tokens_used: int = 0
    """Tokens the task run had used before this turn (for ``max_tokens_per_run``)."""

    @property
    def has_roles(self) -> bool:
        return bool(self.roles or self.missing_roles)
