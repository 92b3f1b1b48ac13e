"""Governance verdicts and their stable codes.

Every denial carries one code from this module; the same string is written to the trace, the
message and task status (``errorCode``), the history, the audit record, the API and the CLI.
The human-readable ``message`` keeps upstream's wording (governance.md section 6) where
upstream has one, so users grepping for ``policy permission denied`` still find it.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOW, DENY, APPROVAL = "allow", "deny", "approval_required"

# Denial codes
TOOL_PERMISSION_DENIED = "tool_permission_denied"
MODEL_NOT_ALLOWED = "model_not_allowed"
TOOL_BLOCKED = "tool_blocked"
TOKEN_BUDGET_EXCEEDED = "token_budget_exceeded"
APPROVAL_DENIED = "approval_denied"
APPROVAL_EXPIRED = "approval_expired"
RATE_LIMITED = "rate_limited"
GOVERNANCE_ERROR = "governance_error"
"""A check raised: the call is denied (fail closed), naming the rule."""

APPROVAL_PENDING = "approval_pending"
"""Not a failure: the turn stopped at a call that waits for a person (task ``WaitingApproval``)."""

DENIAL_CODES = frozenset({TOOL_PERMISSION_DENIED, MODEL_NOT_ALLOWED, TOOL_BLOCKED, TOKEN_BUDGET_EXCEEDED,
                          APPROVAL_DENIED, APPROVAL_EXPIRED, RATE_LIMITED, GOVERNANCE_ERROR})

# Audit decisions (the ``decision`` field of an audit record)
REQUESTED, ALLOWED, DENIED = "requested", "allowed", "denied"
APPROVAL_REQUESTED, APPROVED, APPROVAL_REJECTED, EXPIRED = "approval_requested", "approved", "approval_denied", "expired"
EXECUTED, RATE_LIMITED_DECISION = "executed", "rate_limited"


@dataclass(frozen=True)
class Decision:
    """What one rule (or the whole rule chain) decided about one call."""

    verdict: str = ALLOW
    """``allow``, ``deny`` or ``approval_required``."""
    code: str = ""
    """Stable code of a denial (or ``approval_pending``); empty when allowed."""
    rule: str = ""
    """Which rule decided, e.g. ``ToolPermission/vector-db-invoke`` or ``AgentPolicy/cost-policy``."""
    reason: str = ""
    """Upstream's denial text (``policy permission denied for tool=...``)."""
    policy_version: str = ""
    """For approvals: the version (content digest) of the rule that asked for one."""
    final: bool = False
    """An allow that skips the remaining rules (upstream's ``allowed_tools`` bypass)."""

    @property
    def allowed(self) -> bool:
        return self.verdict == ALLOW

    @classmethod
    def allow(cls, rule: str = "", reason: str = "") -> "Decision":
        return cls(ALLOW, "", rule, reason)

    @classmethod
    def deny(cls, code: str, reason: str, rule: str = "") -> "Decision":
        return cls(DENY, code, rule, reason)

    @classmethod
    def approval(cls, reason: str, rule: str, policy_version: str) -> "Decision":
        return cls(APPROVAL, APPROVAL_PENDING, rule, reason, policy_version)
