"""Governance: the audit log of decisions, tool-approval verdicts, and the admin's key rotation."""

from __future__ import annotations

from orloj_ray.client._transport import Session


class GovernanceAPI(Session):
    def audit(self, namespace: str | None = None, *, task: str | None = None, agent: str | None = None,
              decision: str | None = None, code: str | None = None, subject: str | None = None,
              after: int | None = None, limit: int | None = None) -> dict:
        """``GET /v1/audit``: governance decisions, oldest first, ``{"items", "continue"?}``.
        ``namespace`` None: all namespaces. Filters match exactly; ``after`` is a record id."""
        params = {k: v for k, v in (("namespace", namespace), ("task", task), ("agent", agent),
                                    ("decision", decision), ("code", code), ("subject", subject),
                                    ("after", after), ("limit", limit)) if v not in (None, "")}
        return self.request("GET", "/v1/audit", params=params) or {"items": []}

    def approve(self, name: str, *, namespace: str = "default", decided_by: str | None = None,
                reason: str | None = None) -> dict:
        return self._decide(name, "approve", namespace, decided_by, reason)

    def deny(self, name: str, *, namespace: str = "default", decided_by: str | None = None,
             reason: str | None = None) -> dict:
        return self._decide(name, "deny", namespace, decided_by, reason)

    def _decide(self, name, verb, namespace, decided_by, reason) -> dict:
        body = {k: v for k, v in (("decided_by", decided_by), ("reason", reason)) if v} or None
        return self.request("POST", f"/v1/tool-approvals/{name}/{verb}", params={"namespace": namespace},
                            json_body=body)

    def rotate_secret_key(self) -> dict:
        """``POST /v1/admin/rotate-secret-key`` (admin): re-encrypt every Secret under a new key
        (under the first of ``ORLOJ_SECRET_KEY`` when the keys come from there)."""
        return self.request("POST", "/v1/admin/rotate-secret-key") or {}
