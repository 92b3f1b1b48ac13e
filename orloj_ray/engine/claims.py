"""Claiming a Task: the transition Pending -> Running under optimistic concurrency."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from orloj_ray.errors import Conflict, NotFound
from orloj_ray.store.util import now_rfc3339_nano

LEASE_S = 30.0


def _rfc3339(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def claimable(task: dict, now: datetime | None = None) -> bool:
    """Pending (or phase-less), not a template, and due."""
    spec, status = task.get("spec") or {}, task.get("status") or {}
    if (spec.get("mode") or "run") == "template":
        return False
    if status.get("phase") not in (None, "", "Pending"):
        return False
    due = _parse(status.get("nextAttemptAt") or "")
    return due is None or due <= (now or datetime.now(timezone.utc))


async def claim(store, task: dict, worker: str, *, lease_s: float = LEASE_S) -> dict | None:
    """Take the task for ``worker``; None when someone else changed it first."""
    status = dict(task.get("status") or {})
    now = datetime.now(timezone.utc)
    attempts = int(status.get("attempts") or 0) + 1
    status.update({
        "phase": "Running",
        "attempts": attempts,
        "claimedBy": worker,
        "assignedWorker": worker,
        "leaseUntil": _rfc3339(now + timedelta(seconds=lease_s)),
        "lastHeartbeat": now_rfc3339_nano(),
        "startedAt": status.get("startedAt") or now_rfc3339_nano(),
    })
    for key in ("nextAttemptAt", "completedAt", "output", "lastError", "errorCode"):
        status.pop(key, None)
    status.setdefault("history", []).append({
        "timestamp": now_rfc3339_nano(), "type": "claim", "worker": worker,
        "message": f"task claimed by worker={worker} lease={int(lease_s)}s",
    })
    meta = task["metadata"]
    try:
        return await store.update_status("Task", meta["namespace"], meta["name"], status,
                                         meta["resourceVersion"], source="task-controller")
    except (Conflict, NotFound):
        return None
