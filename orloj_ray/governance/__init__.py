"""Governance, enforced inline in every turn: AgentPolicy, AgentRole + ToolPermission,
ToolApproval, token budgets and rate limits, and the audit trail.

Pure decisions over plain data (``context.TurnGovernance``), so the same rules run in an
AgentActor and in-process. ``governor`` holds the ordered rule chains; ``resolve`` reads what a
turn needs from the Store; ``ratelimit`` is the shared token bucket seam; ``audit`` the trail.
"""

from orloj_ray.governance.approvals import approval_manifest, approval_name, args_digest
from orloj_ray.governance.audit import audit_record, persist as persist_audit
from orloj_ray.governance.context import TurnGovernance
from orloj_ray.governance.decisions import APPROVAL_PENDING, DENIAL_CODES, Decision
from orloj_ray.governance.governor import MODEL_RULES, TOOL_RULES, Governor, govern
from orloj_ray.governance.permissions import normalize_permission
from orloj_ray.governance.ratelimit import RateLimiter, TokenBucket, default_limiter
from orloj_ray.governance.resolve import load_turn_governance

__all__ = [
    "APPROVAL_PENDING", "DENIAL_CODES", "MODEL_RULES", "TOOL_RULES", "Decision", "Governor", "RateLimiter",
    "TokenBucket", "TurnGovernance", "approval_manifest", "approval_name", "args_digest", "audit_record",
    "default_limiter", "govern", "load_turn_governance", "normalize_permission", "persist_audit",
]
