"""Task leases: claim, takeover and renewal, fenced by an epoch.

A lease lives in the task's status: ``claimedBy`` (the owner), ``leaseUntil`` (expiry),
``lastHeartbeat`` and ``leaseEpoch``, a fencing number raised on every claim and takeover.
Every write an execution makes checks the epoch inside the same read-modify-write, so an
owner that was deposed while it was slow has its late writes refused (``LeaseLost``).

Owners are named ``<identity>#<incarnation>``. A restarted supervisor has the same identity
and a new incarnation, so it takes over its predecessor's leases at once instead of waiting
for them to expire.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import partial

from orloj_ray.errors import NotFound
from orloj_ray.store.util import clone, now_rfc3339_nano

LEASE_S = 30.0
"""How long a lease lasts without renewal. Renewed every third of it."""


class LeaseLost(Exception):
    """This owner no longer holds the task's lease; stop without writing."""


def _rfc3339(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def identity(owner: str) -> str:
    return owner.split("#", 1)[0]


def lease_until(now: datetime, lease_s: float = LEASE_S) -> str:
    return _rfc3339(now + timedelta(seconds=lease_s))


def takeover_reason(task: dict, worker: str, now: datetime | None = None) -> str | None:
    """Why ``worker`` may take a Running task over (expired lease, or its own predecessor's), else None."""
    status = task.get("status") or {}
    holder = status.get("claimedBy") or ""
    if status.get("phase") != "Running":
        return None
    if not holder:
        return "unowned"
    expiry = _parse(status.get("leaseUntil") or "")
    expired = expiry is None or expiry <= (now or datetime.now(timezone.utc))
    if holder == worker:  # the caller knows it is not running it (a crashed run): resume once expired
        return f"own lease expired; resuming as {worker}" if expired else None
    if identity(holder) == identity(worker):
        return f"previous incarnation {holder} replaced by {worker}"
    if expired:
        return f"worker lease expired; task reassigned from {holder} to {worker}"
    return None


def claimable(task: dict, worker: str = "", now: datetime | None = None) -> bool:
    """Due Pending tasks (never templates), and Running tasks ``worker`` may take over."""
    spec, status = task.get("spec") or {}, task.get("status") or {}
    if (spec.get("mode") or "run") == "template":
        return False
    now = now or datetime.now(timezone.utc)
    if status.get("phase") in (None, "", "Pending"):
        due = _parse(status.get("nextAttemptAt") or "")
        return due is None or due <= now
    return bool(worker) and takeover_reason(task, worker, now) is not None


def take(task: dict, *, worker: str, lease_s: float = LEASE_S, resume: str | None = None) -> dict | None:
    """The status of ``task`` once ``worker`` holds it (a new attempt, or a takeover); None when
    it may not take it. Pure: the store calls it on the row it has locked (``Store.claim``),
    so the decision is made on the current object, never on a stale read.

    ``resume``: a ``WaitingApproval`` task whose approval was decided continues its attempt
    (same messages, same epoch chain) with this history message.
    """
    now = datetime.now(timezone.utc)
    status = clone(task.get("status") or {})
    if resume is not None:
        if status.get("phase") != "WaitingApproval":
            return None
        reason = resume
    elif not claimable(task, worker, now):
        return None
    else:
        reason = takeover_reason(task, worker, now)
    history = status.setdefault("history", [])
    if resume is not None:
        status.pop("pendingApproval", None)
        history.append({"timestamp": now_rfc3339_nano(), "type": "running", "worker": worker, "message": resume})
    elif reason is None:  # a fresh attempt
        status["attempts"] = int(status.get("attempts") or 0) + 1
        for key in ("nextAttemptAt", "completedAt", "output", "lastError", "errorCode", "messages", "join_states"):
            status.pop(key, None)
        history.append({"timestamp": now_rfc3339_nano(), "type": "claim", "worker": worker,
                         "message": f"task claimed by worker={worker} lease={int(lease_s)}s"})
    else:
        status["lastError"] = reason
        history.append({"timestamp": now_rfc3339_nano(), "type": "takeover", "worker": worker, "message": reason})
    status.update({
        "phase": "Running",
        "claimedBy": worker,
        "assignedWorker": worker,
        "leaseUntil": lease_until(now, lease_s),
        "lastHeartbeat": now_rfc3339_nano(),
        "leaseEpoch": int(status.get("leaseEpoch") or 0) + 1,
        "startedAt": status.get("startedAt") or now_rfc3339_nano(),
    })
    return status


async def claim(store, task: dict, worker: str, *, lease_s: float = LEASE_S, resume: str | None = None) -> dict | None:
    """Take ``task`` for ``worker``; None when it is gone, taken, or busy in another claimer's hands.

    The store locks the row (PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and decides with ``take``
    on what it holds, so two supervisors never both win and neither waits for the other.
    """
    meta = task["metadata"]
    try:
        return await store.claim("Task", meta["namespace"], meta["name"],
                                 partial(take, worker=worker, lease_s=lease_s, resume=resume),
                                 source="task-controller")
    except NotFound:
        return None
