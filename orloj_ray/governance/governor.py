"""Governance as ordered, named rules around the two transitions of a turn.

``MODEL_RULES`` run before every model call, ``TOOL_RULES`` before every tool call, in the
order listed (the order is the documentation). A rule returns None (no opinion), an allow, a
deny or an approval verdict. The first deny wins; an approval verdict is remembered while the
later rules may still deny; an allow marked ``final`` (``allowed_tools``) ends the chain. A rule
that raises denies the call with ``governance_error`` naming the rule: governance fails closed.

``Governor`` runs the chains for one turn and collects the audit records of its decisions;
the executor stores them after the turn (the turn itself has no store access).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from orloj_ray.governance import approvals, permissions, policies
from orloj_ray.governance.audit import audit_record
from orloj_ray.governance.context import TurnGovernance
from orloj_ray.governance.decisions import (
    ALLOW, APPROVAL, APPROVAL_DENIED, APPROVAL_EXPIRED, APPROVAL_REQUESTED, DENIED, DENY,
    EXECUTED, GOVERNANCE_ERROR, MODEL_NOT_ALLOWED, RATE_LIMITED_DECISION, REQUESTED, TOKEN_BUDGET_EXCEEDED,
    TOOL_BLOCKED, TOOL_PERMISSION_DENIED, ALLOWED, Decision,
)


@dataclass
class ModelCall:
    gov: TurnGovernance
    agent: str
    model: str
    declared_tools: list[str]
    used: int
    """Tokens of this run so far (earlier turns and this one)."""
    estimate: int
    """Estimated tokens of the call about to be made."""


@dataclass
class ToolCall:
    gov: TurnGovernance
    agent: str
    tool: dict
    """The Tool resource (an empty dict when the model named an unknown tool)."""
    name: str
    offered: list[str]
    digest: str
    now: float = field(default_factory=time.time)

    @property
    def spec(self) -> dict:
        return self.tool.get("spec") or {}


Rule = Callable[[object], "Decision | None"]


# -- model rules ----------------------------------------------------------------------------

def allowed_models(call: ModelCall) -> Decision | None:
    for p in policies.matched(call.gov, call.agent):
        allowed = [str(m).strip().lower() for m in (p["spec"].get("allowed_models") or [])]
        if allowed and call.model.strip().lower() not in allowed:
            return Decision.deny(MODEL_NOT_ALLOWED, f'policy "{p["name"]}" disallows model "{call.model}" '
                                 f'(model_ref="{call.gov.model_ref}") for agent "{call.agent}"', f"AgentPolicy/{p['name']}")
    return None


def blocked_declared_tools(call: ModelCall) -> Decision | None:
    """Upstream's check before an agent runs: a declared tool that a policy blocks stops it."""
    for p in policies.matched(call.gov, call.agent):
        blocked = {str(t).strip().lower() for t in (p["spec"].get("blocked_tools") or [])}
        for tool in call.declared_tools:
            if tool.strip().lower() in blocked:
                return Decision.deny(TOOL_BLOCKED, f'policy "{p["name"]}" blocks tool "{tool}" for agent "{call.agent}"',
                                     f"AgentPolicy/{p['name']}")
    return None


def token_budget(call: ModelCall) -> Decision | None:
    """``max_tokens_per_run``, checked before the call with its estimate, so it is never made."""
    budget, owner = policies.token_budget(policies.matched(call.gov, call.agent))
    if budget and call.used + call.estimate > budget:
        return Decision.deny(TOKEN_BUDGET_EXCEEDED,
                             f'token budget exceeded before model call of agent "{call.agent}": used={call.used} '
                             f"estimated_next={call.estimate} budget={budget}", f"AgentPolicy/{owner['name']}")
    return None


# -- tool rules -----------------------------------------------------------------------------

def offered_tool(call: ToolCall) -> Decision | None:
    if not call.tool or call.name not in call.offered:
        return Decision.deny(TOOL_PERMISSION_DENIED, f"model requested unauthorized tool={call.name} "
                             f"allowed={','.join(sorted(call.offered))}", "Agent/offered-tools")
    return None


def blocked_tool(call: ToolCall) -> Decision | None:
    for p in policies.matched(call.gov, call.agent):
        if call.name.strip().lower() in {str(t).strip().lower() for t in (p["spec"].get("blocked_tools") or [])}:
            return Decision.deny(TOOL_BLOCKED, f'policy "{p["name"]}" blocks tool "{call.name}" for agent "{call.agent}"',
                                 f"AgentPolicy/{p['name']}")
    return None


def tool_permissions(call: ToolCall) -> Decision | None:
    if (call.spec.get("type") or "") == "memory":  # built-in memory tools come with spec.memory, as upstream
        return None
    return permissions.authorize(call.gov, call.agent, call.name, call.spec)


def require_approval(call: ToolCall) -> Decision | None:
    """Announcement dialect: a call that uses a grant named in ``requireApproval`` waits for a person.
    A call uses the grants listed under its tool and the permissions its ToolPermissions require."""
    uses = {permissions.normalize_permission(p) for p in call.gov.tool_grants.get(call.name.strip().lower(), [])}
    uses |= set(permissions.required_by_rules(call.gov, call.agent, call.name, call.spec))
    for grant, policy in policies.approval_grants(policies.matched(call.gov, call.agent)):
        if grant in uses:
            return Decision.approval(f"approval required for tool={call.name} grant={grant}",
                                     f"AgentPolicy/{policy['name']}", policy.get("version") or "")
    return None


MODEL_RULES: tuple[Rule, ...] = (allowed_models, blocked_declared_tools, token_budget)
TOOL_RULES: tuple[Rule, ...] = (offered_tool, blocked_tool, tool_permissions, require_approval)


def govern(rules, call) -> Decision:
    pending: Decision | None = None
    last = Decision.allow()
    for rule in rules:
        name = getattr(rule, "__name__", type(rule).__name__)
        try:
            decision = rule(call)
        except Exception as exc:  # fail closed, naming the rule (never the exception text: it may hold data)
            return Decision.deny(GOVERNANCE_ERROR, f"governance check {name} failed ({type(exc).__name__}); "
                                 "the call is denied", f"rule/{name}")
        if decision is None:
            continue
        if decision.verdict == DENY:
            return decision
        if decision.verdict == APPROVAL:
            pending = pending or decision
        elif decision.final:
            return decision
        else:
            last = decision
    return pending or last


class Governor:
    """The governance of one turn: runs the rule chains and keeps the audit records."""

    def __init__(self, gov: TurnGovernance | None, *, agent: str, attempt: int = 1, message_id: str = "",
                 model_rules=MODEL_RULES, tool_rules=TOOL_RULES, clock: Callable[[], float] = time.time):
        self.gov = gov or TurnGovernance()
        self.agent = agent
        self.attempt = attempt
        self.message_id = message_id
        self.model_rules = model_rules
        self.tool_rules = tool_rules
        self.clock = clock
        self.audit: list[dict] = []
        try:
            self.audit_all = policies.audit_enabled(policies.matched(self.gov, agent))
        except Exception:
            self.audit_all = True  # unreadable policies: record everything

    def rate_limit(self) -> tuple[int, str]:
        """(tokens per minute, deciding rule) for this agent; raises on malformed policies."""
        limit, owner = policies.rate_limit(policies.matched(self.gov, self.agent))
        return limit, f"AgentPolicy/{owner['name']}" if owner else ""

    def record(self, decision: str, step: int, subject_kind: str, subject: str, *, code: str = "", rule: str = "",
               reason: str = "", always: bool = False, **extra) -> None:
        if not (always or self.audit_all):
            return
        self.audit.append(audit_record(
            decision, namespace=self.gov.namespace, task=self.gov.task, agent=self.agent, subject_kind=subject_kind,
            subject=subject, code=code, rule=rule, reason=reason, attempt=self.attempt, message_id=self.message_id,
            step=step, **extra))

    def check_model(self, step: int, model: str, declared_tools: list[str], used: int, estimate: int) -> Decision:
        self.record(REQUESTED, step, "model", model, reason=f"estimated_tokens={estimate} used={used}")
        decision = govern(self.model_rules, ModelCall(self.gov, self.agent, model, declared_tools, used, estimate))
        self._record_verdict(decision, step, "model", model)
        return decision

    def check_tool(self, step: int, tool: dict | None, name: str, offered: list[str], arguments: str) -> Decision:
        digest = approvals.args_digest(name, arguments)
        self.record(REQUESTED, step, "tool", name, reason=f"args_digest={digest}")
        call = ToolCall(self.gov, self.agent, tool or {}, name, offered, digest, self.clock())
        decision = govern(self.tool_rules, call)
        if decision.verdict == APPROVAL:
            decision = self._resolve_approval(decision, call)
        self._record_verdict(decision, step, "tool", name)
        return decision

    def _resolve_approval(self, pending: Decision, call: ToolCall) -> Decision:
        try:
            grant = approvals.matching_grant(self.gov.approvals, call.name, call.digest, pending.policy_version,
                                             call.now)
        except Exception as exc:
            return Decision.deny(GOVERNANCE_ERROR, f"governance check approval_grant failed ({type(exc).__name__}); "
                                 "the call is denied", "rule/approval_grant")
        if grant is None:
            return pending
        rule = f"ToolApproval/{grant['name']}"
        if grant["phase"] == "Approved":
            by = f" by {grant['decided_by']}" if grant.get("decided_by") else ""
            return Decision.allow(rule, f"tool approval granted{by} for tool={call.name}")
        if grant["phase"] == "Denied":
            return Decision.deny(APPROVAL_DENIED, f"tool approval denied: tool={call.name} approval={grant['name']}", rule)
        return Decision.deny(APPROVAL_EXPIRED, f"tool approval expired: tool={call.name} approval={grant['name']}", rule)

    def _record_verdict(self, decision: Decision, step: int, kind: str, subject: str) -> None:
        if decision.verdict == DENY:
            self.record(DENIED, step, kind, subject, code=decision.code, rule=decision.rule, reason=decision.reason,
                        always=True)
        elif decision.verdict == APPROVAL:
            self.record(APPROVAL_REQUESTED, step, kind, subject, code=decision.code, rule=decision.rule,
                        reason=decision.reason, always=True)
        else:
            approved = decision.rule.startswith("ToolApproval/")
            self.record(ALLOWED, step, kind, subject, rule=decision.rule, reason=decision.reason, always=approved)

    def executed(self, step: int, tool: str, *, error_code: str = "") -> None:
        self.record(EXECUTED, step, "tool", tool, code=error_code, reason="tool call failed" if error_code else "ok")

    def rate_limited(self, step: int, model: str, wait_s: float, rule: str, *, denied: bool = False) -> None:
        self.record(DENIED if denied else RATE_LIMITED_DECISION, step, "model", model,
                    code="rate_limited", rule=rule, always=True, wait_ms=int(wait_s * 1000),
                    reason=(f"token rate limit: the wait of {wait_s:.1f}s would pass the agent's timeout" if denied
                            else f"token rate limit: waiting {wait_s:.2f}s"))


__all__ = ["MODEL_RULES", "TOOL_RULES", "Governor", "ModelCall", "ToolCall", "govern", "ALLOW", "APPROVAL", "DENY"]
