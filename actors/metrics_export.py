"""Metrics across Ray: the supervisor's registry mirrored into ``ray.util.metrics``, and the
API's way to collect every supervisor's snapshot.

* ``export_to_ray(registry)`` adds a sink that forwards each change (``inc``, ``set``,
  ``observe``) to a ``ray.util.metrics`` Counter, Gauge or Histogram of the same name, tags
  and buckets. Ray prefixes the names with ``ray_`` and serves them at each node's metrics
  export port (after about 8 s), so they reach the Ray dashboard's Grafana panels the way Ray
  documents for Prometheus.
* ``refresh_agent_gauges`` keeps the supervisor's gauges current: turns in flight per agent
  (``PooledAgentRuntime``) and, on the leader only, live agent actors per agent (Ray's named
  actors), so the API's sum over supervisors counts each actor once.
* ``supervisor_snapshots`` finds every supervisor (``orloj:supervisor:<i>`` in the Ray
  namespace ``orloj``) and asks each for its snapshot; a
  supervisor that does not answer within ``timeout_s`` is left out (and logged), never an error.
"""

from __future__ import annotations

import asyncio
import logging

import ray
from ray.util import metrics as ray_metrics

from actors import AGENT_PREFIX, RAY_NAMESPACE, SUPERVISOR_PREFIX
from orloj_ray.observability import TaskMetrics
from orloj_ray.observability.metrics import Family, Registry

log = logging.getLogger("orloj_ray.metrics_export")
REFRESH_S = 5.0
"""How often the supervisor refreshes its agent gauges."""


class _RaySink:
    def __init__(self) -> None:
        self._metrics: dict[str, object] = {}

    def _metric(self, family: Family):
        metric = self._metrics.get(family.name)
        if metric is None:
            tags = tuple(family.labels)
            if family.kind == "counter":
                metric = ray_metrics.Counter(family.name, description=family.help, tag_keys=tags)
            elif family.kind == "gauge":
                metric = ray_metrics.Gauge(family.name, description=family.help, tag_keys=tags)
            else:
                metric = ray_metrics.Histogram(family.name, description=family.help,
                                               boundaries=list(family.buckets), tag_keys=tags)
            self._metrics[family.name] = metric
        return metric

    def __call__(self, family: Family, op: str, value: float, labels: dict[str, str]) -> None:
        try:
            metric = self._metric(family)
            if op == "inc":
                if value > 0:  # Ray's counters refuse 0; a gauge's inc is a set of the new value
                    if family.kind == "gauge":
                        metric.set(family.value(**labels), tags=labels)
                    else:
                        metric.inc(value, tags=labels)
            elif op == "set":
                metric.set(value, tags=labels)
            else:
                metric.observe(value, tags=labels)
        except Exception:
            log.warning("exporting %s to Ray's metrics failed", family.name, exc_info=True)


def export_to_ray(registry: Registry) -> Registry:
    registry.add_sink(_RaySink())
    return registry


def _live_agent_actors() -> dict[tuple[str, str], int]:
    """(namespace, agent) -> live actors, from Ray's named actors: ``orloj:agent:<ns>:<agent>[:<class>][#i]``."""
    counts: dict[tuple[str, str], int] = {}
    prefix = AGENT_PREFIX + ":"
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry.get("name", "") if isinstance(entry, dict) else str(entry)
        if (isinstance(entry, dict) and entry.get("namespace") != RAY_NAMESPACE) or not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("#", 1)[0].split(":", 2)
        if len(parts) >= 2:
            key = (parts[0], parts[1])
            counts[key] = counts.get(key, 0) + 1
    return counts


def _mailbox_depth(runtime) -> dict[tuple[str, str], int]:
    depth: dict[tuple[str, str], int] = {}
    for key, count in dict(getattr(runtime, "_inflight", {}) or {}).items():
        pool = (key[0], key[1])
        depth[pool] = depth.get(pool, 0) + max(int(count), 0)
    return depth


async def refresh_agent_gauges(metrics: TaskMetrics, runtime, count_actors: bool = True) -> None:
    """Set the mailbox depth and (``count_actors``) live actor gauges now."""
    actors = await asyncio.to_thread(_live_agent_actors) if count_actors else {}
    depth = _mailbox_depth(runtime)
    for pool in actors:
        depth.setdefault(pool, 0)
    metrics.set_agent_gauges(depth, actors)


async def keep_agent_gauges(metrics: TaskMetrics, runtime, interval_s: float = REFRESH_S,
                            count_actors=lambda: True) -> None:
    """The supervisor's background loop: refresh the agent gauges every ``interval_s``."""
    while True:
        try:
            await refresh_agent_gauges(metrics, runtime, count_actors())
        except Exception:
            log.warning("refreshing the agent gauges failed", exc_info=True)
        await asyncio.sleep(interval_s)


def supervisor_names() -> list[str]:
    names = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if not isinstance(entry, dict) or entry.get("namespace") != RAY_NAMESPACE:
            continue
        name = entry.get("name", "")
        if name.startswith(SUPERVISOR_PREFIX + ":"):
            names.append(name)
    return sorted(names)


async def supervisor_snapshots(timeout_s: float = 3.0) -> list[dict]:
    """Every live supervisor's metrics snapshot."""
    names = await asyncio.to_thread(supervisor_names)

    async def one(name: str) -> dict | None:
        try:
            handle = ray.get_actor(name, namespace=RAY_NAMESPACE)
            return await asyncio.wait_for(handle.metrics.remote(), timeout=timeout_s)
        except Exception as exc:
            log.warning("no metrics from supervisor %s: %s", name, type(exc).__name__)
            return None

    return [s for s in await asyncio.gather(*(one(n) for n in names)) if s]
