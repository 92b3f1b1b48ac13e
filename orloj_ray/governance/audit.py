"""The audit trail: one append-only record per governance decision.

A record says when, where (namespace, task, agent, attempt, message, step), about what (a tool
or a model), what was decided (``requested``, ``allowed``, ``denied``, ``approval_requested``,
``approved``, ``approval_denied``, ``expired``, ``executed``, ``rate_limited``), by which rule,
with which stable code, and why. Texts pass through the redactor and never carry arguments or
outputs, so no secret reaches the trail. Writing records is the engine's
(``orloj_ray.engine.approvals.persist_audit``).

Denials, approvals and rate limits are always recorded; the routine ``requested``, ``allowed``
and ``executed`` records are kept when a matched AgentPolicy has ``audit_log: true``
(``auditLog`` in the announcement dialect).
"""

from __future__ import annotations

from orloj_ray.redact import Redactor
from orloj_ray.store.util import now_rfc3339_nano

SOURCE = "governance"
FIELDS = ("timestamp", "namespace", "task", "agent", "attempt", "message_id", "step", "subject_kind", "subject",
          "decision", "code", "rule", "reason", "decided_by", "wait_ms")
_REDACT = Redactor()


def audit_record(decision: str, *, namespace: str, task: str = "", agent: str = "", subject_kind: str = "",
                 subject: str = "", code: str = "", rule: str = "", reason: str = "", **extra) -> dict:
    record = {"timestamp": now_rfc3339_nano(), "namespace": namespace or "default", "task": task, "agent": agent,
              "subject_kind": subject_kind, "subject": subject, "decision": decision, "code": code, "rule": rule,
              "reason": _REDACT.text(str(reason))[:1000]}
    record.update({k: v for k, v in extra.items() if k in FIELDS and v not in (None, "")})
    return record
