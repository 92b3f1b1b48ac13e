"""The task state machine: every phase a Task can be in and every way it changes.

One module owns a task's phase. Each transition is a pure function from the stored status to
the next one, with the phases it may start from (``FROM``); anything else raises
``TransitionRefused`` naming the transition and the phase, and changes nothing. Callers (the
claim path, the executor's recorder, schedules, import, the cancel endpoint, the status
subresource) write what a transition returns, inside their read-modify-write, so the decision
is always made on the stored row.

    (create) --> Pending --claim--> Running --succeed--> Succeeded
                    ^                 |  |  \\--fail--> Failed
                    |                 |  |   \\--dead_letter--> DeadLetter
                    +--schedule_retry-+  |
                                         +--pause_for_approval--> WaitingApproval --resume--> Running
    Running --takeover/renew/release--> Running        any non-terminal --cancel--> Failed

Terminal phases are left only by an explicit ``requeue`` (a new attempt of a finished task);
upstream's ``retry task`` makes a new Task instead, which is what ``orloj retry`` does.

Leases: ``claimedBy`` (the owner, ``<identity>#<incarnation>``), ``assignedWorker``,
``leaseUntil``, ``lastHeartbeat`` and ``leaseEpoch``, a fencing number raised on each claim and
takeover. Every transition an owner makes is checked against the epoch it holds
(``check_owner``), so a deposed owner's late writes are refused.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from orloj_ray.retry import go_duration
from orloj_ray.store.util import clone, rfc3339nano


class Phase(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING_APPROVAL = "WaitingApproval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DEAD_LETTER = "DeadLetter"

    def __str__(self) -> str:
        return self.value


PHASES: tuple[str, ...] = tuple(p.value for p in Phase)
TERMINAL: frozenset[str] = frozenset({Phase.SUCCEEDED.value, Phase.FAILED.value, Phase.DEAD_LETTER.value})
ACTIVE: frozenset[str] = frozenset({Phase.PENDING.value, Phase.RUNNING.value, Phase.WAITING_APPROVAL.value})

LEASE_FIELDS = ("claimedBy", "assignedWorker", "leaseUntil", "lastHeartbeat")
"""Who holds the task now; cleared whenever nobody does (terminal, paused, released by import)."""

ENGINE_SOURCE = "task-controller"
"""The event source of every write the engine makes to a task (upstream's name): the controller
recognises its own writes by it and never wakes for them."""

CANCELED = "task canceled via orloj"
LEASE_S = 30.0
"""How long a lease lasts without renewal (renewed every third of it). Upstream: 30 s."""


def phase_of(task_or_status: dict) -> str:
    """The phase of a task (or of its status dict); ``Pending`` when none is recorded yet."""
    status = (task_or_status.get("status") or {}) if "metadata" in task_or_status else task_or_status
    return str(status.get("phase") or Phase.PENDING.value)


def is_terminal(task_or_status: dict) -> bool:
    return phase_of(task_or_status) in TERMINAL


class TransitionRefused(Exception):
    """A transition asked of a task in a phase it may not start from (or by a deposed owner)."""

    code = "transition_refused"

    def __init__(self, transition: str, phase: str, reason: str = ""):
        self.transition, self.phase = transition, phase
        super().__init__(reason or f"transition {transition} is not allowed from phase {phase}")


class LeaseLost(TransitionRefused):
    """The caller no longer holds the task's lease (another owner, or a newer epoch)."""

    code = "lease_lost"


class TaskStopped(TransitionRefused):
    """The task became terminal outside this run (canceled, say): the run stops quietly."""

    code = "task_stopped"


# -- time -------------------------------------------------------------------------------------

def utc(now: datetime | None = None) -> datetime:
    return now or datetime.now(timezone.utc)


def parse_time(ts: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except (ValueError, TypeError):
        return None


def lease_until(now: datetime, lease_s: float = LEASE_S) -> str:
    return rfc3339nano(now + timedelta(seconds=lease_s))


def identity(owner: str) -> str:
    """``orloj:supervisor:0#host:pid:x`` -> ``orloj:supervisor:0``: the same across restarts."""
    return owner.split("#", 1)[0]


# -- the transitions --------------------------------------------------------------------------

@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[str]
    target: str | None
    """None: the phase does not change (renew, release)."""
    event: str = ""
    """``task.<event>`` published after the write (api.md: task-controller events)."""

    def check(self, status: dict) -> str:
        phase = phase_of(status)
        if phase not in self.sources:
            if phase in TERMINAL and self.name not in ("requeue", "fail_validation"):
                raise TaskStopped(self.name, phase, f"task is {phase}")
            raise TransitionRefused(self.name, phase)
        return phase


def _t(name: str, sources: Iterable[str], target: str | None, event: str = "") -> Transition:
    return Transition(name, frozenset(sources), target, event)


CLAIM = _t("claim", {Phase.PENDING}, Phase.RUNNING, "claimed")
TAKEOVER = _t("takeover", {Phase.RUNNING}, Phase.RUNNING, "claimed")
RESUME = _t("resume", {Phase.WAITING_APPROVAL}, Phase.RUNNING, "running")
RENEW = _t("renew", {Phase.RUNNING}, None)
RELEASE = _t("release", {Phase.RUNNING}, None)
PAUSE_FOR_APPROVAL = _t("pause_for_approval", {Phase.RUNNING}, Phase.WAITING_APPROVAL, "waiting_approval")
SCHEDULE_RETRY = _t("schedule_retry", {Phase.RUNNING}, Phase.PENDING, "retry_scheduled")
SUCCEED = _t("succeed", {Phase.RUNNING}, Phase.SUCCEEDED, "succeeded")
FAIL = _t("fail", {Phase.RUNNING}, Phase.FAILED, "failed")
DEAD_LETTER = _t("dead_letter", {Phase.RUNNING}, Phase.DEAD_LETTER, "deadletter")
CANCEL = _t("cancel", ACTIVE, Phase.FAILED, "failed")
UNOWN = _t("unown", ACTIVE, None)
REQUEUE = _t("requeue", TERMINAL, Phase.PENDING, "requeued")

TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    CLAIM, TAKEOVER, RESUME, RENEW, RELEASE, PAUSE_FOR_APPROVAL, SCHEDULE_RETRY, SUCCEED, FAIL, DEAD_LETTER,
    CANCEL, UNOWN, REQUEUE)}


def _history(status: dict, kind: str, worker: str, message: str, code: str = "", now: datetime | None = None) -> None:
    row = {"timestamp": rfc3339nano(utc(now)), "type": kind, "worker": worker, "message": message}
    if code:
        row["code"] = code
    status.setdefault("history", []).append(row)


def _drop_lease(status: dict) -> None:
    for key in LEASE_FIELDS:
        status.pop(key, None)


def _own(status: dict, worker: str, now: datetime, lease_s: float) -> None:
    status.update({
        "phase": Phase.RUNNING.value, "claimedBy": worker, "assignedWorker": worker,
        "leaseUntil": lease_until(now, lease_s), "lastHeartbeat": rfc3339nano(now),
        "leaseEpoch": int(status.get("leaseEpoch") or 0) + 1,
        "startedAt": status.get("startedAt") or rfc3339nano(now),
    })


def check_owner(status: dict, worker: str, epoch: object, transition: str) -> None:
    """Refuse a write by anyone but the holder of ``epoch`` (``LeaseLost``)."""
    if status.get("claimedBy") != worker or status.get("leaseEpoch") != epoch:
        raise LeaseLost(transition, phase_of(status),
                        f"lease now held by {status.get('claimedBy') or 'nobody'} epoch {status.get('leaseEpoch')}")


def _finish(status: dict, phase: str, now: datetime) -> None:
    status["phase"] = phase
    status["completedAt"] = rfc3339nano(now)
    _drop_lease(status)
    status.pop("nextAttemptAt", None)


def due(task: dict, now: datetime | None = None) -> bool:
    """A runnable Pending task whose ``nextAttemptAt`` (a scheduled retry) has come."""
    spec, status = task.get("spec") or {}, task.get("status") or {}
    if (spec.get("mode") or "run") == "template" or phase_of(status) != Phase.PENDING.value:
        return False
    at = parse_time(status.get("nextAttemptAt") or "")
    return at is None or at <= utc(now)


def takeover_reason(task: dict, worker: str, now: datetime | None = None,
                    dead: frozenset[str] = frozenset()) -> str | None:
    """Why ``worker`` may take a Running task over, else None: it is unowned, its lease expired,
    its owner is ``worker``'s own previous incarnation, or its owner's identity is in ``dead``
    (a supervisor known to be gone: its successor need not wait for the lease)."""
    status = task.get("status") or {}
    if phase_of(status) != Phase.RUNNING.value:
        return None
    holder = status.get("claimedBy") or ""
    if not holder:
        return "unowned"
    expiry = parse_time(status.get("leaseUntil") or "")
    expired = expiry is None or expiry <= utc(now)
    if holder == worker:  # the caller knows it is not running it (a crashed run): resume once expired
        return f"own lease expired; resuming as {worker}" if expired else None
    if identity(holder) == identity(worker):
        return f"previous incarnation {holder} replaced by {worker}"
    if identity(holder) in dead:
        return f"worker {identity(holder)} is gone; task reassigned from {holder} to {worker}"
    if expired:
        return f"worker lease expired; task reassigned from {holder} to {worker}"
    return None


def claimable(task: dict, worker: str = "", now: datetime | None = None, dead: frozenset[str] = frozenset()) -> bool:
    """Due Pending tasks (never templates), and Running tasks ``worker`` may take over."""
    if due(task, now):
        return True
    if (task.get("spec") or {}).get("mode") == "template":
        return False
    return bool(worker) and takeover_reason(task, worker, now, dead) is not None


def claim(task: dict, *, worker: str, now: datetime | None = None, lease_s: float = LEASE_S) -> dict:
    """Pending -> Running: a new attempt (``attempts + 1``), the previous attempt's run records
    cleared, ``worker`` the owner under a new epoch; history ``claim``."""
    now = utc(now)
    status = clone(task.get("status") or {})
    CLAIM.check(status)
    if not due(task, now):
        raise TransitionRefused("claim", phase_of(status), "task is not due (a template, or a retry scheduled later)")
    status["attempts"] = int(status.get("attempts") or 0) + 1
    for key in ("nextAttemptAt", "completedAt", "output", "lastError", "errorCode", "messages", "join_states"):
        status.pop(key, None)
    _history(status, "claim", worker, f"task claimed by worker={worker} lease={int(lease_s)}s", now=now)
    _own(status, worker, now, lease_s)
    return status


def takeover(task: dict, *, worker: str, now: datetime | None = None, lease_s: float = LEASE_S,
             dead: frozenset[str] = frozenset()) -> dict:
    """Running -> Running under ``worker`` (same attempt, epoch + 1); only with a reason
    (``takeover_reason``); history ``takeover``, ``lastError`` = the reason, as upstream."""
    now = utc(now)
    status = clone(task.get("status") or {})
    TAKEOVER.check(status)
    reason = takeover_reason(task, worker, now, dead)
    if reason is None:
        raise LeaseLost("takeover", phase_of(status), f"task is held by {status.get('claimedBy')} under a live lease")
    status["lastError"] = reason
    _history(status, "takeover", worker, reason, now=now)
    _own(status, worker, now, lease_s)
    return status


def resume(task: dict, *, worker: str, message: str, now: datetime | None = None, lease_s: float = LEASE_S) -> dict:
    """WaitingApproval -> Running: the decided approval lets the same attempt go on; history ``running``."""
    now = utc(now)
    status = clone(task.get("status") or {})
    RESUME.check(status)
    status.pop("pendingApproval", None)
    status.pop("lastError", None)
    status.pop("errorCode", None)
    _history(status, "running", worker, message, now=now)
    _own(status, worker, now, lease_s)
    return status


def take(task: dict, *, worker: str, lease_s: float = LEASE_S, resume_with: str | None = None,
         dead: frozenset[str] = frozenset(), now: datetime | None = None) -> dict | None:
    """The claim decision for ``Store.claim``: the status once ``worker`` holds ``task`` (claim,
    takeover, or with ``resume_with`` a resume), or None when it may not take it now."""
    try:
        if resume_with is not None:
            return resume(task, worker=worker, message=resume_with, now=now, lease_s=lease_s)
        if due(task, now):
            return claim(task, worker=worker, now=now, lease_s=lease_s)
        return takeover(task, worker=worker, now=now, lease_s=lease_s, dead=dead)
    except TransitionRefused:
        return None


def renew(status: dict, *, now: datetime | None = None, lease_s: float = LEASE_S) -> dict:
    """The owner's heartbeat: ``leaseUntil`` moves on."""
    now = utc(now)
    RENEW.check(status)
    status = clone(status)
    status["leaseUntil"] = lease_until(now, lease_s)
    status["lastHeartbeat"] = rfc3339nano(now)
    return status


def release(status: dict, *, worker: str, now: datetime | None = None) -> dict:
    """The owner gives the lease up now (a drain): the next supervisor claims the task at once."""
    now = utc(now)
    RELEASE.check(status)
    status = clone(status)
    status["leaseUntil"] = rfc3339nano(now)
    _history(status, "released", worker, f"lease released by {worker} (draining)", now=now)
    return status


def pause_for_approval(status: dict, *, worker: str, approval: str, error: str, now: datetime | None = None) -> dict:
    """Running -> WaitingApproval: the lease is given up; the controller resumes the task when
    the approval is decided or expires."""
    now = utc(now)
    PAUSE_FOR_APPROVAL.check(status)
    status = clone(status)
    status.update(phase=Phase.WAITING_APPROVAL.value, lastError=error, pendingApproval=approval)
    _history(status, "waiting_approval", worker, f"{error} approval={approval}", "approval_pending", now=now)
    _drop_lease(status)
    return status


def schedule_retry(status: dict, *, worker: str, code: str, error: str, delay_s: float,
                   now: datetime | None = None) -> dict:
    """Running -> Pending with ``nextAttemptAt`` = now + delay (task-level retry, execution.md
    8.1): ``lastError`` says when, the attempt's messages and output are cleared, history
    ``retry_scheduled``. The next claim starts attempt ``attempts + 1``."""
    now = utc(now)
    SCHEDULE_RETRY.check(status)
    status = clone(status)
    text = f"{error} (retry scheduled in {go_duration(delay_s)})"
    status.update(phase=Phase.PENDING.value, lastError=text, errorCode=code,
                  nextAttemptAt=rfc3339nano(now + timedelta(seconds=max(0.0, delay_s))))
    for key in ("output", "messages", "join_states"):
        status.pop(key, None)
    _drop_lease(status)
    _history(status, "retry_scheduled", worker, text, code, now=now)
    return status


def succeed(status: dict, *, worker: str, now: datetime | None = None,
            message: str = "task execution completed successfully") -> dict:
    now = utc(now)
    SUCCEED.check(status)
    status = clone(status)
    status.pop("lastError", None)  # an approval wait or a takeover on the way is history now
    status.pop("errorCode", None)
    _history(status, "succeeded", worker, message, now=now)
    _finish(status, Phase.SUCCEEDED.value, now)
    return status


def fail(status: dict, *, worker: str, code: str, message: str, dead_letter: bool = False,
         now: datetime | None = None) -> dict:
    """Running -> Failed (a non-retryable error) or, with ``dead_letter``, -> DeadLetter (a
    retryable one with its attempts spent); history ``failed`` / ``deadletter``."""
    now = utc(now)
    transition = DEAD_LETTER if dead_letter else FAIL
    transition.check(status)
    status = clone(status)
    status["lastError"], status["errorCode"] = message, code
    _history(status, transition.event, worker, message, code, now=now)
    _finish(status, transition.target, now)
    return status


def cancel(status: dict, *, reason: str = "", worker: str = "apiserver", now: datetime | None = None) -> dict:
    """Any non-terminal phase -> Failed (upstream's ``orlojctl cancel task``). A running
    execution notices the terminal phase at its next write and stops."""
    now = utc(now)
    CANCEL.check(status)
    status = clone(status)
    message = (reason or "").strip() or CANCELED
    status.update(lastError=message, errorCode="task_canceled")
    status.pop("pendingApproval", None)
    _history(status, "failed", worker, message, "task_canceled", now=now)
    _finish(status, Phase.FAILED.value, now)
    return status


def unown(status: dict) -> dict:
    """A non-terminal task restored by an import: nobody holds it; the supervisor resumes it."""
    if phase_of(status) in TERMINAL:
        return clone(status)
    status = clone(status)
    _drop_lease(status)
    return status


def requeue(status: dict, *, worker: str = "apiserver", now: datetime | None = None) -> dict:
    """A finished task -> Pending, to run again as its next attempt (``orloj apply --rerun``)."""
    now = utc(now)
    REQUEUE.check(status)
    status = clone(status)
    for key in ("completedAt", "nextAttemptAt", "lastError", "errorCode", "pendingApproval"):
        status.pop(key, None)
    status["phase"] = Phase.PENDING.value
    _history(status, "requeued", worker, "task queued to run again", now=now)
    return status


def event_data(status: dict) -> dict:
    """What a ``task.<event>`` carries (api.md: task-controller events)."""
    return {k: status.get(k, "") for k in ("phase", "attempts", "assignedWorker", "claimedBy", "lastError")}


# -- the status subresource -------------------------------------------------------------------

STATUS_WRITE_CHANGES: frozenset[tuple[str, str]] = frozenset(
    (src, t.target or src) for t in TRANSITIONS.values() if t is not REQUEUE for src in t.sources)
"""(from, to) phase pairs a status write may make: those of the transitions above (a remote
worker writing through the API makes the engine's own moves), never out of a terminal phase."""


def check_status_write(stored: dict, proposed: dict) -> None:
    """What ``PUT .../tasks/{name}/status`` may do to the phase: keep it, or one of the
    transitions above (``STATUS_WRITE_CHANGES``; a cancel is active -> Failed). ``ValueError``
    for a phase that is not a phase, ``TransitionRefused`` for a change the engine would not make."""
    raw = proposed.get("phase")
    if raw in (None, ""):
        return
    if not isinstance(raw, str) or raw not in PHASES:
        raise ValueError(f"status.phase {raw!r} is not a task phase (one of {', '.join(PHASES)})")
    current = phase_of(stored)
    if raw == current or (current, raw) in STATUS_WRITE_CHANGES:
        return
    allowed = sorted(to for src, to in STATUS_WRITE_CHANGES if src == current and to != current)
    raise TransitionRefused("status write", current,
                            f"status.phase cannot change from {current} to {raw} "
                            f"(from {current}: {', '.join(allowed) if allowed else 'no change, the task is finished'}; "
                            f"to cancel a task: POST /v1/tasks/NAME/cancel)")
