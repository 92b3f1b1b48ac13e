"""Claiming a task: the store locks the row and ``orloj_ray.lifecycle.take`` decides on it.

The decision (claim a due Pending task, take over a Running one, resume a decided approval)
and the lease fields live in ``orloj_ray.lifecycle``; this is the one async call every claim
path uses (event-driven claims, lease scans, resyncs, approval resumes).
"""

from __future__ import annotations

from functools import partial

from orloj_ray.errors import NotFound
from orloj_ray.lifecycle import ENGINE_SOURCE, LEASE_S, take


async def claim(store, task: dict, worker: str, *, lease_s: float = LEASE_S, resume: str | None = None,
                dead: frozenset[str] = frozenset()) -> dict | None:
    """Take ``task`` for ``worker``; None when it is gone, taken, or busy in another claimer's hands.

    The store locks the row (PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and decides with ``take``
    on what it holds, so two supervisors never both win and neither waits for the other.
    ``dead``: identities of supervisors known to be gone, whose tasks are taken over at once.
    """
    meta = task["metadata"]
    try:
        return await store.claim("Task", meta["namespace"], meta["name"],
                                 partial(take, worker=worker, lease_s=lease_s, resume_with=resume, dead=dead),
                                 source=ENGINE_SOURCE)
    except NotFound:
        return None
