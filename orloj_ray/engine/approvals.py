"""Governance's Store I/O: the ToolApproval workflow (create the approval a paused call needs,
expire approvals past their TTL, say what a decided approval means for its task) and the audit
trail's writes. The decisions themselves are pure, in ``orloj_ray.governance``.

Used by the executor (pause, resume), the controller (expiry sweep, resume on decision) and the
API (a person's decision).
"""

from __future__ import annotations

import logging

from orloj_ray.lifecycle import ENGINE_SOURCE as SOURCE
from orloj_ray.errors import Conflict, NotFound
from orloj_ray.governance.approvals import DEFAULT_TTL, TASK_LABEL, approval_manifest, grant_view, now_epoch
from orloj_ray.governance.audit import SOURCE as AUDIT_SOURCE, audit_record
from orloj_ray.governance.decisions import APPROVAL_DENIED, APPROVAL_EXPIRED, EXPIRED
from orloj_ray.store.base import Event, LabelSelector
from orloj_ray.store.util import list_all, mutate_status, now_rfc3339_nano

log = logging.getLogger("orloj_ray.audit")


async def request_approval(store, namespace: str, task: str, message_id: str, agent: str, pending: dict, *,
                           ttl: str = DEFAULT_TTL) -> dict:
    """The ToolApproval for this exact call, created Pending unless it exists (a re-run turn
    asking again for the same call finds the same approval)."""
    from orloj_ray.resources import normalize

    doc = normalize(approval_manifest(namespace, task, message_id, agent, pending, ttl=ttl))
    try:
        return await store.create(doc, source=SOURCE)
    except Conflict:
        return await store.get("ToolApproval", namespace, doc["metadata"]["name"])


async def expire_if_due(store, approval: dict, now: float | None = None) -> dict:
    """Mark a Pending approval past its ``expires_at`` Expired (and audit it); returns the current object."""
    view = grant_view(approval)
    if view["phase"] != "Pending" or view["expires_at"] > (now if now is not None else now_epoch()):
        return approval
    meta = approval["metadata"]

    def change(status: dict) -> dict | None:
        if (status.get("phase") or "Pending") != "Pending":
            return None  # decided meanwhile
        return {**status, "phase": "Expired", "decision": "expired", "decided_at": now_rfc3339_nano()}

    try:
        updated = await mutate_status(store, "ToolApproval", meta["namespace"], meta["name"], change, source=SOURCE)
    except NotFound:
        return approval
    if (updated.get("status") or {}).get("phase") == "Expired" and (approval.get("status") or {}).get("phase") != "Expired":
        await persist_audit(store, [audit_record(
            EXPIRED, namespace=meta["namespace"], task=_task_name(approval), agent=(approval.get("spec") or {}).get("agent", ""),
            subject_kind="tool", subject=(approval.get("spec") or {}).get("tool", ""), code=APPROVAL_EXPIRED,
            rule=f"ToolApproval/{meta['name']}", reason="tool approval expired before a decision",
            message_id=view["message_id"])])
    return updated


def decided_failure(approvals: list[dict]) -> tuple[str, str] | None:
    """(code, message) when one of a message's approvals was denied or has expired; upstream's
    terminal texts (``tool approval denied`` / ``tool approval expired``) lead the message."""
    for obj in approvals:
        view = grant_view(obj)
        if view["phase"] == "Denied":
            by = f" by {view['decided_by']}" if view["decided_by"] else ""
            return APPROVAL_DENIED, f"tool approval denied: tool={view['tool']} approval={view['name']}{by}"
        if view["phase"] == "Expired":
            return APPROVAL_EXPIRED, f"tool approval expired: tool={view['tool']} approval={view['name']}"
    return None


def _task_name(approval: dict) -> str:
    ref = (approval.get("spec") or {}).get("task_ref", "")
    return ref.split("/", 1)[-1]


async def task_approvals(store, namespace: str, task: str) -> list[dict]:
    return await list_all(store, "ToolApproval", namespace, LabelSelector({TASK_LABEL: task}))


async def approval_outcome(store, namespace: str, name: str) -> str | None:
    """Why a task waiting on approval ``name`` may resume now (history text), None while it waits.
    An approval past its TTL is marked Expired here."""
    if not name:
        return "no pending tool approval recorded; task resumed"
    try:
        approval = await store.get("ToolApproval", namespace, name)
    except NotFound:
        return f"tool approval {name} is gone; task resumed"
    phase = ((await expire_if_due(store, approval)).get("status") or {}).get("phase") or "Pending"
    return {"Approved": "tool approval granted, task resumed",
            "Denied": "tool approval denied, task resumed to record it",
            "Expired": "tool approval expired, task resumed to record it"}.get(phase)


async def persist_audit(store, records: list[dict], mask=None) -> None:
    """Append ``records`` to the Store's audit trail and publish each on the event stream
    (``audit.<decision>``). Failures are logged, never raised: the decision was already made.
    ``mask``: the task's ``RecordMask`` (its secret values masked in every field)."""
    for record in records:
        if mask is not None:
            record = mask.record(record)
        try:
            stored = await store.append_audit(record)
            await store.publish(Event(
                id=0, timestamp="", source=AUDIT_SOURCE, type=f"audit.{stored['decision']}", kind="AuditRecord",
                name=stored.get("task", ""), namespace=stored.get("namespace", ""), action=stored["decision"],
                data=stored,
            ))
        except Exception:
            log.exception("could not record audit decision %s for %s/%s", record.get("decision"),
                          record.get("namespace"), record.get("task"))
