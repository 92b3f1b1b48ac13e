"""Gather what one turn's governance needs from the Store (the executor calls this per turn,
so a policy changed between turns applies to the next one); the rules that decide on it are
pure, in ``orloj_ray.governance``."""

from __future__ import annotations

import json
from functools import lru_cache

from orloj_ray.engine.approvals import task_approvals
from orloj_ray.errors import NotFound
from orloj_ray.governance.approvals import MESSAGE_ANNOTATION, grant_view
from orloj_ray.governance.context import TurnGovernance, version_of
from orloj_ray.resources import expand_agent, permission_strings
from orloj_ray.store.util import list_all
from orloj_ray.tenancy import confined, shared_with

_all = list_all


def _view(obj: dict) -> dict:
    meta = obj["metadata"]
    view = {"name": meta["name"], "namespace": meta.get("namespace") or "default",
            "version": version_of(obj.get("kind") or "", meta["name"], obj.get("spec") or {}),
            "spec": obj.get("spec") or {}}
    if confined(meta):
        view["confined"] = True  # a global policy that applies to its own namespace only
    return view


async def _role(store, namespace: str, role: str) -> dict | None:
    """``<task namespace>/<role>``, then (a name with ``/``) the role as given (upstream's lookup);
    a role of another namespace only when it is shared with this one (else: missing)."""
    candidates = [(namespace, role)] + ([tuple(role.split("/", 1))] if "/" in role else [])
    for ns, name in candidates:
        try:
            found = await store.get("AgentRole", ns or namespace, name)
        except NotFound:
            continue
        return found if shared_with(found, namespace) else None
    return None


def _expanded(agent: dict) -> list[dict]:
    """``expand_agent``, remembered by what it reads (kind, name, namespace and spec): it
    validates with pydantic, and every turn asks again for the same few agents."""
    meta = agent.get("metadata") or {}
    basis = {"kind": agent.get("kind") or "Agent", "metadata": {"name": meta.get("name"),
             "namespace": meta.get("namespace") or "default"}, "spec": agent.get("spec")}
    return json.loads(_expanded_json(json.dumps(basis, sort_keys=True, default=str)))


@lru_cache(maxsize=1024)
def _expanded_json(basis: str) -> str:
    return json.dumps(expand_agent(json.loads(basis)))


async def load_turn_governance(store, task: dict, agent: dict, message_id: str = "",
                               tokens_used: int | None = None) -> TurnGovernance:
    """Policies, roles, tool permissions and this message's approvals for one turn of ``agent``.

    The announcement dialect's role and policy are derived from the agent itself
    (``expand_agent``), not read back from their stored copies: what the agent lists is what it
    is granted, whatever happened to the generated objects. ``tokens_used``: the task's
    ``tokens_used_total`` when the caller holds its latest status (else it is read).
    """
    namespace = task["metadata"]["namespace"]
    name = task["metadata"]["name"]
    spec = agent.get("spec") or {}
    generated = {(d["kind"], d["metadata"]["name"]): d for d in _expanded(agent)}
    gov = TurnGovernance(namespace=namespace, task=name, system=str((task.get("spec") or {}).get("system") or ""),
                         model_ref=str(spec.get("model_ref") or spec.get("model") or ""),
                         allowed_tools=list(spec.get("allowed_tools") or []))
    for obj in await _all(store, "AgentPolicy"):
        key = ("AgentPolicy", obj["metadata"]["name"])
        if key in generated and obj["metadata"].get("namespace") == namespace:
            continue
        gov.policies.append(_view(obj))
    gov.policies += [_view({**d, "kind": "AgentPolicy"}) for (kind, _), d in generated.items() if kind == "AgentPolicy"]
    for role in (str(r).strip() for r in spec.get("roles") or []):
        found = await _role(store, namespace, role)
        if found is None:
            gov.missing_roles.append(role)
        else:
            gov.roles.append({"name": found["metadata"]["name"], "spec": found.get("spec") or {}})
    for (kind, role_name), doc in generated.items():
        if kind == "AgentRole":
            gov.roles.append({"name": role_name, "spec": doc["spec"]})
    gov.tool_permissions = [_view(obj) for obj in await _all(store, "ToolPermission", namespace)]
    for tool in spec.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name"):
            gov.tool_grants[str(tool["name"]).strip().lower()] = permission_strings(tool.get("permissions") or [])
    if message_id:
        gov.approvals = [grant_view(a) for a in await task_approvals(store, namespace, name)
                         if ((a["metadata"].get("annotations") or {}).get(MESSAGE_ANNOTATION)) == message_id]
    if tokens_used is not None:
        gov.tokens_used = tokens_used
        return gov
    try:
        fresh = await store.get("Task", namespace, name)
        gov.tokens_used = int(((fresh.get("status") or {}).get("output") or {}).get("tokens_used_total") or 0)
    except NotFound:
        pass
    return gov
