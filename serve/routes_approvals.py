"""``POST /v1/tool-approvals/{name}/approve`` and ``/deny`` (api.md section 10).

Each decision is also an audit record (``approved`` / ``approval_denied``, with who decided);
the controller resumes the waiting task when it sees the approval change.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from orloj_ray.errors import Conflict
from orloj_ray.engine.approvals import persist_audit
from orloj_ray.governance import audit_record
from orloj_ray.governance.approvals import MESSAGE_ANNOTATION
from orloj_ray.store import Event, mutate_status
from serve.auth import CURRENT_PRINCIPAL
from serve.codec import now_rfc3339, read_optional_json
from serve.errors import JSONResponse
from serve.routes_resources import item_namespace

DECISION_RETRIES = 5
"""Re-reads after a write conflict before answering 409 (upstream: 5)."""


class _AlreadyDecided(Conflict):
    """Only a Pending approval can be decided."""


def register(app: FastAPI, store) -> None:
    for verb, phase, decision in (("approve", "Approved", "approved"), ("deny", "Denied", "denied")):
        _register_decision(app, store, verb, phase, decision)


def _register_decision(app: FastAPI, store, verb: str, phase: str, decision: str) -> None:
    async def decide(request: Request, name: str) -> JSONResponse:
        body = await read_optional_json(request)  # {"decided_by", "reason"}; bad JSON is ignored
        principal = CURRENT_PRINCIPAL.get()  # with auth on, who decided is the token, not what the body says
        decided_by = principal.name if principal is not None else str(body.get("decided_by") or "").strip()
        namespace = item_namespace(request)

        def apply(status: dict) -> dict:
            current = status.get("phase") or "Pending"
            if current != "Pending":
                raise _AlreadyDecided(f'toolapproval "{name}" is already {current}', field="status.phase")
            status = {**status, "phase": phase, "decision": decision, "decided_at": now_rfc3339()}
            if decided_by:
                status["decided_by"] = decided_by
            return status

        try:
            obj = await mutate_status(store, "ToolApproval", namespace, name, apply, retries=DECISION_RETRIES)
        except _AlreadyDecided:
            raise
        except Conflict as exc:
            raise Conflict("conflict updating tool approval, please retry") from exc
        await store.publish(Event(
            id=0, timestamp="", source="apiserver", type=f"resource.{decision}", kind="ToolApproval",
            name=name, namespace=namespace, action=decision, data=obj,
            resource_version=str(obj.get("metadata", {}).get("resourceVersion", "")),
        ))
        spec = obj.get("spec") or {}
        await persist_audit(store, [audit_record(
            "approved" if decision == "approved" else "approval_denied", namespace=namespace,
            task=str(spec.get("task_ref") or "").split("/", 1)[-1], agent=spec.get("agent", ""), subject_kind="tool",
            subject=spec.get("tool", ""), code="" if decision == "approved" else "approval_denied",
            rule=f"ToolApproval/{name}", reason=str(body.get("reason") or f"tool approval {decision}"),
            decided_by=decided_by or "anonymous",
            message_id=((obj.get("metadata") or {}).get("annotations") or {}).get(MESSAGE_ANNOTATION, ""))])
        return JSONResponse(obj)

    app.add_api_route(f"/v1/tool-approvals/{{name}}/{verb}", decide, methods=["POST"],
                      name=f"toolapproval_{verb}", tags=["tool-approvals"])
