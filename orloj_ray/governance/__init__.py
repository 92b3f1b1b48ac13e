"""Governance, enforced inline in every turn: AgentPolicy, AgentRole + ToolPermission,
ToolApproval, token budgets and rate limits, and the audit trail.

Pure decisions over plain data (``context.TurnGovernance``), so the same rules run in an
AgentActor and in-process. ``governor`` holds the ordered rule chains; ``ratelimit`` is the
shared token bucket seam; ``audit`` makes the trail's records. Nothing here reads or writes the
Store: what a turn needs is gathered by ``orloj_ray.engine.turn_governance``, approvals and
audit records are written by ``orloj_ray.engine.approvals``.
"""

from orloj_ray.governance.approvals import approval_manifest, approval_name, args_digest
from orloj_ray.governance.audit import audit_record
from orloj_ray.governance.context import TurnGovernance
from orloj_ray.governance.decisions import APPROVAL_PENDING, DENIAL_CODES, Decision
from orloj_ray.governance.governor import MODEL_RULES, TOOL_RULES, Governor, govern
from orloj_ray.governance.permissions import normalize_permission
from orloj_ray.governance.ratelimit import RateLimiter, TokenBucket, default_limiter

__all__ = [
    "APPROVAL_PENDING", "DENIAL_CODES", "MODEL_RULES", "TOOL_RULES", "Decision", "Governor", "RateLimiter",
    "TokenBucket", "TurnGovernance", "approval_manifest", "approval_name", "args_digest", "audit_record",
    "default_limiter", "govern", "normalize_permission",
]
