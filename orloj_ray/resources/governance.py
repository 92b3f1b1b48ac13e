"""Governance kinds: AgentPolicy, AgentRole, ToolPermission and ToolApproval.

AgentPolicy carries four extension fields beyond upstream (``target_agents``,
``max_tokens_per_minute``, ``require_approval``, ``audit_log``), written by the policies that
``dialect.expand_agent`` generates from an Agent's ``governance`` block; they are left out of
the wire form when empty, so upstream policies read back exactly as upstream writes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from pydantic import Field

from orloj_ray.resources.base import MAX_TOKENS, Bool, Int, Spec, Str, Wire, bounded, choice, quote, report, unique
from orloj_ray.resources.durations import check_duration, parse_duration
from orloj_ray.resources.envelope import Metadata, Resource

APPROVAL_PHASES = ("Pending", "Approved", "Denied", "Expired")


class AgentPolicySpec(Spec):
    max_tokens_per_run: Int = bounded(0, 0, MAX_TOKENS)
    allowed_models: list[Str] = []
    blocked_tools: list[Str] = []
    apply_mode: Str = ""
    target_systems: list[Str] = []
    target_tasks: list[Str] = []
    target_agents: list[Str] = []
    """Extension: with ``apply_mode: scoped``, the policy also matches these agents."""
    max_tokens_per_minute: Int = bounded(0, 0, MAX_TOKENS)
    """Extension: per-agent token rate limit; 0 = none."""
    require_approval: list[Str] = []
    """Extension: permission strings (``issue_tracker:write``) whose use needs a ToolApproval."""
    audit_log: Bool = False
    """Extension: record every governed call of the targeted agents."""

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.apply_mode = choice(self.apply_mode, "spec.apply_mode", ("scoped", "global"), "scoped",
                                 "unsupported spec.apply_mode {value}: expected scoped or global")
        self.target_agents = unique(self.target_agents)
        self.require_approval = unique(self.require_approval)


class AgentPolicy(Resource):
    spec: AgentPolicySpec = Field(default_factory=AgentPolicySpec)


class AgentRoleSpec(Spec):
    description: Str = ""
    permissions: list[Str] = []

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.permissions = unique(self.permissions)


class AgentRole(Resource):
    spec: AgentRoleSpec = Field(default_factory=AgentRoleSpec)


class OperationRule(Wire):
    operation_class: Str = ""
    verdict: Str = ""


class ToolPermissionSpec(Spec):
    tool_ref: Str = ""
    action: Str = ""
    required_permissions: list[Str] = []
    match_mode: Str = ""
    apply_mode: Str = ""
    target_agents: list[Str] = []
    operation_rules: list[OperationRule] = []

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.tool_ref = self.tool_ref.strip() or meta.name
        self.action = self.action.strip().lower() or "invoke"
        self.match_mode = choice(self.match_mode, "spec.match_mode", ("all", "any"), "all",
                                 "unsupported spec.match_mode {value}: expected all or any")
        self.apply_mode = choice(self.apply_mode, "spec.apply_mode", ("global", "scoped"), "global",
                                 "unsupported spec.apply_mode {value}: expected global or scoped")
        self.required_permissions = unique(self.required_permissions)
        self.target_agents = unique(self.target_agents)
        if self.apply_mode == "scoped" and not self.target_agents:
            report("spec.target_agents", "spec.target_agents is required when spec.apply_mode=scoped")
        for i, rule in enumerate(self.operation_rules):
            rule.operation_class = choice(
                rule.operation_class, f"spec.operation_rules[{i}].operation_class",
                ("read", "write", "delete", "admin", "*"), "*",
                f"invalid operation_rules[{i}].operation_class {{value}}: expected read, write, delete, admin, or *")
            rule.verdict = choice(
                rule.verdict, f"spec.operation_rules[{i}].verdict", ("allow", "deny", "approval_required"), "allow",
                f"invalid operation_rules[{i}].verdict {{value}}: expected allow, deny, or approval_required")


class ToolPermission(Resource):
    spec: ToolPermissionSpec = Field(default_factory=ToolPermissionSpec)


class ToolApprovalSpec(Spec):
    KEEP: ClassVar[frozenset[str]] = frozenset({"task_ref", "tool"})

    task_ref: Str = ""
    tool: Str = ""
    operation_class: Str = ""
    agent: Str = ""
    input: Str = ""
    reason: Str = ""
    ttl: Str = ""

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self.task_ref, self.tool = self.task_ref.strip(), self.tool.strip()
        for name in ("task_ref", "tool"):
            if not getattr(self, name):
                report(f"spec.{name}", f"spec.{name} is required")
        self.operation_class = self.operation_class.strip().lower()
        self.agent, self.reason = self.agent.strip(), self.reason.strip()
        self.ttl = self.ttl.strip() or "10m"
        ttl_ok = check_duration(self.ttl, "spec.ttl", positive=True)
        phase = status["phase"].strip()
        if phase not in APPROVAL_PHASES:
            report("status.phase", f"invalid status.phase {quote(status['phase'])} for ToolApproval: "
                                   "expected Pending, Approved, Denied, or Expired")
        status["phase"] = phase
        if ttl_ok and phase == "Pending" and not status.get("expires_at"):
            expires = now.astimezone(timezone.utc) + parse_duration(self.ttl)
            status["expires_at"] = (expires - timedelta(microseconds=expires.microsecond)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")


class ToolApproval(Resource):
    spec: ToolApprovalSpec = Field(default_factory=ToolApprovalSpec)
