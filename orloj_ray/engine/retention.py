"""Retention of finished tasks' records: trace, history, messages and join states.

A task that ended (Succeeded, Failed, DeadLetter) longer ago than the retention keeps its
spec, phase, output, lastError, attempts and timestamps; its per-step records are dropped and
``status.retention`` says when and how many (an orloj-ray extension of the status). The task
object itself is never deleted. ``due_for_pruning`` decides, ``pruned_status`` rewrites, both
pure; ``prune_finished`` applies them to a store and is what the controller loop calls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from orloj_ray.lifecycle import TERMINAL
from orloj_ray.errors import Conflict, NotFound
from orloj_ray.store.util import list_all, mutate_status

log = logging.getLogger("orloj_ray.retention")

SOURCE = "retention"
PRUNED_FIELDS = ("trace", "history", "messages", "join_states")
DEFAULT_TASK_RETENTION = timedelta(days=7)


def _parse(ts: object) -> datetime | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def finished_at(task: dict) -> datetime | None:
    """When a terminal task ended: ``status.completedAt``, else its newest history entry; None if
    it is not terminal or no time is recorded (then it is kept)."""
    status = task.get("status") or {}
    if status.get("phase") not in TERMINAL:
        return None
    at = _parse(status.get("completedAt"))
    if at is None:
        stamps = [_parse(h.get("timestamp")) for h in status.get("history") or [] if isinstance(h, dict)]
        at = max((s for s in stamps if s is not None), default=None)
    return at


def due_for_pruning(task: dict, now: datetime, retention: timedelta) -> bool:
    """True when ``task`` ended more than ``retention`` before ``now`` and still holds records.
    A zero or negative retention keeps everything."""
    if retention <= timedelta(0):
        return False
    status = task.get("status") or {}
    if not any(status.get(key) for key in PRUNED_FIELDS):
        return False
    ended = finished_at(task)
    return ended is not None and now - ended > retention


def select_for_pruning(tasks: Iterable[dict], now: datetime, retention: timedelta,
                       limit: int | None = None) -> list[tuple[str, str]]:
    """``(namespace, name)`` of the tasks due, oldest finish first, at most ``limit``."""
    due = [(finished_at(t), (t["metadata"].get("namespace") or "default", t["metadata"]["name"]))
           for t in tasks if due_for_pruning(t, now, retention)]
    due.sort(key=lambda pair: pair[0])
    keys = [key for _, key in due]
    return keys if limit is None else keys[:limit]


def pruned_status(status: dict, now: datetime) -> dict:
    """A copy of ``status`` without the per-step records, with ``retention`` saying what went."""
    out = {k: v for k, v in status.items() if k not in PRUNED_FIELDS}
    removed = {k: len(status.get(k) or []) for k in PRUNED_FIELDS if status.get(k)}
    out["retention"] = {"prunedAt": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "removed": removed}
    return out


async def prune_finished(store, now: datetime, retention: timedelta, *, limit: int = 100) -> int:
    """Prune up to ``limit`` due tasks; returns how many were rewritten. A task that changed
    meanwhile (retried, deleted) is re-checked inside the write and skipped when no longer due."""
    if retention <= timedelta(0):
        return 0
    tasks = await list_all(store, "Task")
    done = 0
    for namespace, name in select_for_pruning(tasks, now, retention, limit):
        written = []

        def change(status: dict) -> dict | None:
            if not due_for_pruning({"status": status}, now, retention):
                return None
            written.append(True)
            return pruned_status(status, now)

        try:
            await mutate_status(store, "Task", namespace, name, change, source=SOURCE)
        except (NotFound, Conflict):
            continue
        done += bool(written)
    if done:
        log.info("retention: pruned the records of %d finished task(s) older than %s", done, retention)
    return done
