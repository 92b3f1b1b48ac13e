"""ToolApproval: a person's yes or no, bound to one exact tool call.

An approval is bound to the task message, the tool, a digest of the call's arguments and the
version of the rule that asked for it; it lapses at its expiry. A call with other arguments, or
the same call after the rule changed, needs a new approval. The binding lives in the
approval's annotations (and its name is derived from it), so approving cannot change it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

TASK_LABEL = "orloj.dev/task"
MESSAGE_ANNOTATION = "orloj.dev/message-id"
DIGEST_ANNOTATION = "orloj.dev/args-digest"
VERSION_ANNOTATION = "orloj.dev/policy-version"
DEFAULT_TTL = "10m"
INPUT_PREVIEW = 500


def args_digest(tool: str, arguments: str) -> str:
    """``sha256:<hex>`` of the tool name and its arguments (JSON canonicalized when it parses)."""
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments or ""
    return "sha256:" + hashlib.sha256(f"{tool.strip().lower()}\0{canonical}".encode()).hexdigest()


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def approval_name(namespace: str, task: str, message_id: str, digest: str = "") -> str:
    """``ta-<FNV-32a hex>`` of ``<ns>/<task>`` NUL ``<message id>`` (upstream's name), with the
    call digest mixed in so another call of the same message gets its own approval."""
    key = f"{namespace}/{task}\0{message_id}" + (f"\0{digest}" if digest else "")
    return f"ta-{_fnv32a(key.encode()):08x}"


def parse_time(value) -> float:
    """Epoch seconds of an RFC 3339 time; 0 when absent or unreadable (treated as expired)."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def grant_view(obj: dict) -> dict:
    """The binding and state of a stored ToolApproval, as a turn carries it."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    notes = meta.get("annotations") or {}
    return {
        "name": meta.get("name", ""),
        "phase": status.get("phase") or "Pending",
        "tool": spec.get("tool", ""),
        "message_id": notes.get(MESSAGE_ANNOTATION, ""),
        "digest": notes.get(DIGEST_ANNOTATION, ""),
        "policy_version": notes.get(VERSION_ANNOTATION, ""),
        "expires_at": parse_time(status.get("expires_at")),
        "decided_at": parse_time(status.get("decided_at")) if status.get("decided_at") else 0.0,
        "decided_by": status.get("decided_by", ""),
    }


def matching_grant(approvals: list[dict], tool: str, digest: str, policy_version: str, now: float) -> dict | None:
    """The decided approval for exactly this call (tool, digest, rule version), if any.

    An Approved one is honoured until its ``expires_at``: approving late does not extend it.
    """
    for grant in approvals:
        if (grant.get("tool", "").strip().lower() == tool.strip().lower() and grant.get("digest") == digest
                and grant.get("policy_version") == policy_version):
            phase = grant.get("phase")
            if phase == "Approved" and grant.get("expires_at", 0) <= now:
                return {**grant, "phase": "Expired"}
            if phase in ("Approved", "Denied", "Expired"):
                return grant
    return None


def approval_manifest(namespace: str, task: str, message_id: str, agent: str, pending: dict, *,
                      ttl: str = DEFAULT_TTL) -> dict:
    """The ToolApproval a paused call creates (not yet normalized)."""
    digest = pending["digest"]
    return {
        "apiVersion": "orloj.dev/v1",
        "kind": "ToolApproval",
        "metadata": {
            "name": approval_name(namespace, task, message_id, digest),
            "namespace": namespace,
            "labels": {TASK_LABEL: task},
            "annotations": {MESSAGE_ANNOTATION: message_id, DIGEST_ANNOTATION: digest,
                            VERSION_ANNOTATION: pending.get("policy_version", "")},
        },
        "spec": {
            "task_ref": f"{namespace}/{task}",
            "tool": pending["tool"],
            "agent": agent,
            "operation_class": pending.get("operation_class") or "write",
            "input": (pending.get("input") or "")[:INPUT_PREVIEW],
            "reason": (pending.get("reason") or "")[:500],
            "ttl": ttl,
        },
        "status": {"phase": "Pending"},
    }


def now_epoch() -> float:
    return datetime.now(timezone.utc).timestamp()
