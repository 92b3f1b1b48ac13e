"""Resources an Agent owns: the AgentRole and AgentPolicy its announcement-dialect fields imply.

The reconciler keeps them in step with the agent (created, updated, and removed when the
agent no longer implies them or is deleted), the way Kubernetes garbage-collects owned objects.
"""

from __future__ import annotations

from orloj_ray.errors import NotFound
from orloj_ray.resources import OWNER_LABEL, expand_agent
from orloj_ray.store.base import LabelSelector

SOURCE = "reconciler"
OWNED_KINDS = ("AgentRole", "AgentPolicy")


async def sync_owned(store, agent: dict) -> list[str]:
    """Create or update what ``agent`` implies, delete what it no longer does; returns ``kind/name`` refs."""
    ns = agent["metadata"]["namespace"]
    refs = []
    for doc in expand_agent(agent):
        name = doc["metadata"]["name"]
        refs.append(f"{doc['kind'].lower()}/{name}")
        await upsert_generated(store, doc, source=SOURCE)
    await _delete_owned(store, ns, agent["metadata"]["name"], keep=set(refs))
    return refs


async def upsert_generated(store, doc: dict, *, source: str) -> bool:
    """Write a generated resource unless the stored one already has its spec and labels
    (no write, no event, no resourceVersion churn on every reconcile). True when written."""
    meta = doc["metadata"]
    try:
        current = await store.get(doc["kind"], meta.get("namespace") or "default", meta["name"])
        if current.get("spec") == doc["spec"] and current["metadata"].get("labels") == meta.get("labels"):
            return False
    except NotFound:
        pass
    await store.upsert(doc, source=source)
    return True


async def delete_owned(store, namespace: str, agent_name: str) -> None:
    await _delete_owned(store, namespace, agent_name, keep=set())


async def _delete_owned(store, namespace: str, agent_name: str, *, keep: set[str]) -> None:
    selector = LabelSelector({OWNER_LABEL: agent_name})
    for kind in OWNED_KINDS:
        for item in (await store.list(kind, namespace, selector)).items:
            name = item["metadata"]["name"]
            if f"{kind.lower()}/{name}" not in keep:
                try:
                    await store.delete(kind, namespace, name, source=SOURCE)
                except NotFound:
                    pass
