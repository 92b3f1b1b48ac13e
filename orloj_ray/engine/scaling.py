"""How many actors serve one agent: fixed replicas, or autoscaling on mailbox depth.

An Agent may set ``spec.replicas`` (a fixed count) or ``spec.autoscaling`` with
``min_replicas``, ``max_replicas``, ``target_inflight`` (turns waiting on or running in one
replica before another is added) and ``scale_down_after`` (how long the newest replica must
sit idle before it is removed; default 60s). Pure decisions; the Ray runtime applies them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Scaling:
    min_replicas: int = 1
    """Replicas kept even when idle. Default 1."""
    max_replicas: int = 1
    """Upper bound. Default 1 (no autoscaling)."""
    target_inflight: int = 4
    """Mailbox depth per replica above which another replica is added. Default 4."""
    scale_down_after_s: float = 60.0
    """Idle time after which a replica above ``min_replicas`` is removed. Default 60 s."""

    @classmethod
    def for_agent(cls, agent: dict) -> "Scaling":
        spec = agent.get("spec") or {}
        auto = spec.get("autoscaling") or {}
        if auto:
            from orloj_ray.resources import parse_duration

            low = max(1, int(auto.get("min_replicas") or 1))
            idle = parse_duration(str(auto.get("scale_down_after") or "60s")).total_seconds()
            return cls(low, max(low, int(auto.get("max_replicas") or low)), max(1, int(auto.get("target_inflight") or 4)),
                       max(idle, 0.0))
        fixed = max(1, int(spec.get("replicas") or 1))
        return cls(fixed, fixed)

    def desired(self, depth: int, current: int) -> int:
        """Replicas for a mailbox depth of ``depth`` turns; never fewer than are running now."""
        want = math.ceil(depth / self.target_inflight) if depth else self.min_replicas
        return max(current, self.min_replicas, min(want, self.max_replicas))

    def pick(self, loads: list[int]) -> int:
        """Index of the replica to ring: ``len(loads)`` to add one, else the least loaded."""
        if len(loads) < self.desired(sum(loads) + 1, len(loads)):
            return len(loads)
        return min(range(len(loads)), key=lambda i: (loads[i], i))

    def removable(self, loads: list[int], idle_s: list[float]) -> int | None:
        """Index of the replica to remove now, or None: only the newest (highest index), only
        above ``min_replicas``, only with nothing in flight and idle for ``scale_down_after_s``."""
        last = len(loads) - 1
        if last < self.min_replicas or loads[last] or idle_s[last] < self.scale_down_after_s:
            return None
        return last
