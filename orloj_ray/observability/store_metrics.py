"""Series derived from the Store on each scrape of ``/metrics`` (what no process counts).

* ``orloj_tasks{phase}``: tasks by phase, every phase listed (0 when none)
* ``orloj_inflight_messages{agent}``: messages of unfinished tasks that are Queued, Running or
  RetryPending, by recipient (upstream's gauge; derived from ``status.messages``, so it is
  right after any supervisor restart)
* ``orloj_events_last_id``: id of the newest control-plane event
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from orloj_ray.observability.metrics import Registry

TASK_PHASES = ("Pending", "Running", "WaitingApproval", "Succeeded", "Failed", "DeadLetter")
TERMINAL = ("Succeeded", "Failed", "DeadLetter")
UNFINISHED_MESSAGES = ("Queued", "Running", "RetryPending")


def store_snapshot(tasks: Iterable[dict], last_event_id: int) -> dict:
    registry = Registry()
    by_phase = registry.gauge("orloj_tasks", "Tasks by phase.", ("phase",))
    inflight = registry.gauge("orloj_inflight_messages", "Current in-flight agent messages.", ("agent",))
    last = registry.counter("orloj_events_last_id", "Id of the newest control-plane event.")
    phases: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    for task in tasks:
        status = task.get("status") or {}
        phase = status.get("phase") or "Pending"
        phases[phase] += 1
        if phase in TERMINAL:
            continue
        for message in status.get("messages") or []:
            if isinstance(message, dict) and message.get("phase") in UNFINISHED_MESSAGES:
                agents[str(message.get("to_agent") or "")] += 1
    for phase in sorted(set(TASK_PHASES) | set(phases)):
        by_phase.set(phases.get(phase, 0), phase=phase)
    for agent, count in sorted(agents.items()):
        inflight.set(count, agent=agent)
    last.inc(max(int(last_event_id or 0), 0))
    return registry.snapshot()
