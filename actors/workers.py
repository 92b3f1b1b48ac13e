"""Worker resources that mirror the Ray nodes (resources.md section 15).

Upstream's worker processes register themselves as Worker resources and heartbeat every 10 s.
In orloj-ray the workers are Ray nodes, so the Supervisor mirrors them instead: one Worker per
node, named ``node-<first 12 characters of the node id>`` in namespace ``default``, with

* ``spec.region`` (``default`` when the node has no ``orloj.dev/region`` label),
  ``spec.capabilities.gpu``, ``spec.capabilities.supported_models`` (the node's
  ``orloj.dev/model:<name>`` resources; empty means any model) and ``spec.max_concurrent_tasks``
  (the node label ``orloj.dev/max-concurrent-tasks``, else the caller's default);
* ``status.phase`` ``Ready`` with a fresh ``lastHeartbeat`` and ``currentTasks`` for an alive
  node, ``NotReady`` / ``worker stopped`` for a node that died or left the cluster.

Mirrored Workers carry the label ``orloj.dev/source: ray-node`` and the full node id in the
annotation ``orloj.dev/ray-node-id``; Workers applied by hand are never touched.

``mirror_workers`` is pure over the Store and ``NodeInfo`` values (unit-testable with a
MemoryStore); ``sync_workers`` reads the live nodes from Ray and is what a loop calls every 10 s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from orloj_ray.engine.placement import WORKER_STOPPED, NodeInfo
from orloj_ray.errors import Conflict, NotFound
from orloj_ray.resources.kinds import API_VERSION
from orloj_ray.resources.normalize import normalize
from orloj_ray.store.base import LabelSelector
from orloj_ray.store.util import list_all, now_rfc3339_nano

log = logging.getLogger("orloj_ray.workers")

NAMESPACE = "default"
SOURCE_LABEL = "orloj.dev/source"
SOURCE_VALUE = "ray-node"
NODE_ID_ANNOTATION = "orloj.dev/ray-node-id"
MAX_TASKS_LABEL = "orloj.dev/max-concurrent-tasks"
DEFAULT_MAX_CONCURRENT_TASKS = 256
"""The Supervisor's own default task cap."""
WRITER = "worker-mirror"
HEARTBEAT_S = 10.0


def worker_name(node_id: str) -> str:
    return f"node-{node_id[:12]}"


def worker_doc(node: NodeInfo, max_concurrent_tasks: int = DEFAULT_MAX_CONCURRENT_TASKS) -> dict:
    """The normalized Worker (no status) that mirrors ``node``."""
    try:
        limit = int(node.labels.get(MAX_TASKS_LABEL, "") or max_concurrent_tasks)
    except ValueError:
        limit = max_concurrent_tasks
    doc = normalize({
        "apiVersion": API_VERSION, "kind": "Worker",
        "metadata": {"name": worker_name(node.node_id), "namespace": NAMESPACE,
                     "labels": {SOURCE_LABEL: SOURCE_VALUE},
                     "annotations": {NODE_ID_ANNOTATION: node.node_id}},
        "spec": {"region": node.effective_region,
                 "capabilities": {"gpu": node.gpus > 0, "supported_models": list(node.models)},
                 "max_concurrent_tasks": limit},
    }, kind="Worker")
    doc.pop("status", None)
    return doc


@dataclass
class MirrorReport:
    ready: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    written: int = 0
    """Store writes made (spec upserts and status updates)."""


async def _write_status(store, obj: dict, changes: dict, drop: Iterable[str] = ()) -> bool:
    """Merge ``changes`` into the stored status, re-reading on a conflict; False if it vanished."""
    meta = obj["metadata"]
    for _ in range(3):
        status = {**(obj.get("status") or {}), **changes}
        for key in drop:
            status.pop(key, None)
        try:
            await store.update_status("Worker", meta["namespace"], meta["name"], status,
                                      obj["metadata"]["resourceVersion"], source=WRITER)
            return True
        except Conflict:
            try:
                obj = await store.get("Worker", meta["namespace"], meta["name"])
            except NotFound:
                return False
        except NotFound:
            return False
    return False


async def mirror_workers(store, nodes: Iterable[NodeInfo], *, current_tasks: Mapping[str, int] | None = None,
                         max_concurrent_tasks: int = DEFAULT_MAX_CONCURRENT_TASKS,
                         now: str | None = None) -> MirrorReport:
    """Upsert a Worker per alive node (heartbeat now) and mark the others ``NotReady``.

    ``current_tasks`` maps node ids to turns in flight (the agent pool: turns in flight on its actors).
    A spec is written only when it changed, so steady heartbeats produce status events only.
    """
    now = now or now_rfc3339_nano()
    current_tasks = current_tasks or {}
    report = MirrorReport()
    existing = {w["metadata"]["name"]: w
                for w in await list_all(store, "Worker", NAMESPACE, LabelSelector({SOURCE_LABEL: SOURCE_VALUE}))}
    seen: set[str] = set()
    for node in nodes:
        name = worker_name(node.node_id)
        if not node.alive:
            continue
        seen.add(name)
        want = worker_doc(node, max_concurrent_tasks)
        obj = existing.get(name)
        same = obj is not None and obj.get("spec") == want["spec"] and all(
            (obj["metadata"].get(k) or {}) == want["metadata"][k] for k in ("labels", "annotations"))
        if not same:
            obj, _ = await store.upsert(want, source=WRITER)
            report.written += 1
        changes = {"phase": "Ready", "lastHeartbeat": now, "currentTasks": int(current_tasks.get(node.node_id, 0))}
        if await _write_status(store, obj, changes, drop=("lastError",)):
            report.written += 1
            report.ready.append(name)
    for name, obj in existing.items():
        if name in seen:
            continue
        status = obj.get("status") or {}
        report.not_ready.append(name)
        if status.get("phase") == "NotReady" and status.get("lastError") == WORKER_STOPPED:
            continue
        changes = {"phase": "NotReady", "lastError": WORKER_STOPPED, "currentTasks": 0}
        if await _write_status(store, obj, changes):
            report.written += 1
            log.info("worker %s is NotReady: its Ray node %s died or left", name,
                     (obj["metadata"].get("annotations") or {}).get(NODE_ID_ANNOTATION, "?"))
    return report


async def sync_workers(store, runtime=None, *, max_concurrent_tasks: int = DEFAULT_MAX_CONCURRENT_TASKS
                       ) -> MirrorReport:
    """Mirror the live Ray nodes now; ``runtime`` supplies ``currentTasks``.

    Call it every ``HEARTBEAT_S`` seconds from the Supervisor's loop.
    """
    from actors.placement import nodes

    live = await asyncio.to_thread(nodes)
    counts = runtime.current_tasks() if runtime is not None and hasattr(runtime, "current_tasks") else {}
    return await mirror_workers(store, live, current_tasks=counts, max_concurrent_tasks=max_concurrent_tasks)
