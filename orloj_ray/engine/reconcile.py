"""Status reconcilers: one small function per kind that says whether a resource is usable.

Each returns the desired ``(phase, lastError)``; ``reconcile`` writes only when that differs
from what is stored, so reconciling is idempotent and never loops on its own writes.
"""

from __future__ import annotations

from orloj_ray.engine.owned import sync_owned
from orloj_ray.engine.placement import worker_liveness
from orloj_ray.engine.resolve import resolve_endpoint, resolve_memory
from orloj_ray.errors import Conflict, NotFound
from orloj_ray.graph import Graph, GraphError
from orloj_ray.memory import PGVECTOR, MemoryBackendError
from orloj_ray.memory.pgvector import PgVectorBackend

SOURCE = "reconciler"

READY_KINDS = {"ModelEndpoint", "Tool", "Secret"}


async def _desired_agent(store, obj: dict) -> tuple[str, str, dict]:
    """Ready when its model endpoint resolves; its actors (``status.actors``, ``actor``) are the
    agent pool's to report (``actors/agent_pool.py``)."""
    ns = obj["metadata"]["namespace"]
    extra: dict = {"actor": (obj.get("status") or {}).get("actor") or "idle"}
    generated = await sync_owned(store, obj)
    if generated:
        extra["generated"] = generated
    try:
        await resolve_endpoint(store, ns, obj)
    except LookupError as exc:
        return "Error", str(exc), extra
    return "Ready", "", extra


async def _desired_system(store, obj: dict) -> tuple[str, str, dict]:
    ns = obj["metadata"]["namespace"]
    try:
        graph = Graph.from_spec(obj.get("spec") or {})
    except GraphError as exc:
        return "Error", f"invalid graph: {exc}", {}
    missing = []
    for agent in graph.agents:
        try:
            await store.get("Agent", ns, agent)
        except NotFound:
            missing.append(agent)
    if missing:
        return "Error", "missing agents: " + ", ".join(missing) + " (apply them, then this system becomes Ready)", {}
    return "Ready", "", {}


async def _desired_memory(store, obj: dict) -> tuple[str, str, dict]:
    """Ready when the provider is supported, its secret resolves and (pgvector) the database answers."""
    try:
        ref = await resolve_memory(store, obj)
        if ref.provider == PGVECTOR:
            await PgVectorBackend(ref.key, ref.endpoint, ref.password).ping()
    except (LookupError, MemoryBackendError) as exc:
        return "Error", str(exc), {}
    return "Ready", "", {}


async def desired_status(store, obj: dict) -> tuple[str, str, dict] | None:
    kind = obj["kind"]
    if kind == "Agent":
        return await _desired_agent(store, obj)
    if kind == "AgentSystem":
        return await _desired_system(store, obj)
    if kind in READY_KINDS:
        return "Ready", "", {}
    if kind == "Memory":
        return await _desired_memory(store, obj)
    if kind == "Worker":  # liveness from the heartbeat, as upstream's WorkerController
        phase, error = worker_liveness(obj.get("status"))
        return phase, error, {}
    return None  # tasks, approvals and governance kinds have their own lifecycles


async def reconcile(store, obj: dict) -> bool:
    """Bring one object's phase up to date; True when a write happened."""
    desired = await desired_status(store, obj)
    if desired is None:
        return False
    phase, error, extra = desired
    status = dict(obj.get("status") or {})
    generation = obj["metadata"].get("generation", 1)
    want = {"phase": phase, "lastError": error, "observedGeneration": generation, **extra}
    if all(status.get(k, "") == v for k, v in want.items()):
        return False
    status.update(want)
    if not error:
        status.pop("lastError", None)
    meta = obj["metadata"]
    try:
        await store.update_status(obj["kind"], meta["namespace"], meta["name"], status, meta["resourceVersion"],
                                  source=SOURCE)
    except (Conflict, NotFound):
        return False  # changed meanwhile: the change's own event brings us back
    return True
