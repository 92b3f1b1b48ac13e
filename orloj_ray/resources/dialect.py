"""What an Agent written in the announcement dialect implies.

An agent whose tools carry ``permissions`` gets an AgentRole ``<agent>-grants`` granting
``tool:<tool>:invoke`` for each of its tools plus every grant (``read: compliance_docs`` ->
``compliance_docs:read``). An agent with a ``governance`` block gets an AgentPolicy
``<agent>-governance``, scoped to the agent through the ``target_agents`` extension. Both are
labelled ``orloj.dev/owner-agent: <agent>`` and ``orloj.dev/generated: "true"``; the generated
role counts as one of the agent's roles (``agent_role_names``).
"""

from __future__ import annotations

import copy
from typing import Any

from orloj_ray.resources.agents import DERIVED_ANNOTATION
from orloj_ray.resources.normalize import normalize

OWNER_LABEL = "orloj.dev/owner-agent"
GENERATED_LABEL = "orloj.dev/generated"


def expand_agent(agent: dict[str, Any]) -> list[dict[str, Any]]:
    """The normalized AgentRole and AgentPolicy an agent's dialect fields imply ([] for an
    agent written in upstream's form)."""
    agent = normalize(agent, kind="Agent")
    spec, name = agent["spec"], agent["metadata"]["name"]
    generated = []
    tool_objects = [t for t in spec.get("tools", []) if isinstance(t, dict)]
    if tool_objects:
        grants = [p for t in tool_objects for p in permission_strings(t.get("permissions", []))]
        generated.append({
            "kind": "AgentRole",
            "metadata": _metadata(agent, _role_name(name)),
            "spec": {
                "description": f"Generated from the tool permissions of agent {name}.",
                "permissions": [f"tool:{tool}:invoke" for tool in agent_tool_names(spec)] + grants,
            },
        })
    governance = spec.get("governance")
    if governance is not None:
        generated.append({
            "kind": "AgentPolicy",
            "metadata": _metadata(agent, f"{name}-governance"),
            "spec": {
                "apply_mode": "scoped",
                "target_agents": [name],
                "max_tokens_per_minute": governance.get("maxTokensPerMinute", 0),
                "require_approval": permission_strings(governance.get("requireApproval", [])),
                "audit_log": governance.get("auditLog", False),
            },
        })
    return [normalize(doc) for doc in generated]


def upstream_view(agent: dict[str, Any], default_endpoint: str = "") -> dict[str, Any]:
    """The (normalized) agent as upstream clients read it; the agent itself when it is in
    upstream's form already.

    ``spec.model`` without ``model_ref``: ``model_ref`` is ``default_endpoint`` (the name of
    the namespace's default ModelEndpoint, which serves it; left out when there is none), marked
    in the ``orloj.dev/derived`` annotation. Tools written as objects: ``tools`` lists names,
    the objects stay beside in ``tool_grants``, and the generated ``<agent>-grants`` role is in
    ``roles``. ``model`` and ``governance`` stay as they are. Writing this back (``normalize``)
    gives the stored agent again.
    """
    spec = agent.get("spec") or {}
    objects = [t for t in spec.get("tools") or [] if isinstance(t, dict)]
    fill_ref = bool(spec.get("model")) and not spec.get("model_ref") and bool(default_endpoint)
    if not objects and not fill_ref:
        return agent
    view = copy.deepcopy(agent)
    vspec = view["spec"]
    if objects:
        vspec["tools"] = agent_tool_names(spec)
        vspec["tool_grants"] = objects
        vspec["roles"] = list(dict.fromkeys(agent_role_names(agent)))
    if fill_ref:
        vspec["model_ref"] = default_endpoint
        view["metadata"].setdefault("annotations", {})[DERIVED_ANNOTATION] = "spec.model_ref"
    return view


def grant_permission(op: str, resource: str) -> str:
    """The permission string of a grant: ``grant_permission("read", "compliance_docs")`` ->
    ``compliance_docs:read``."""
    op, resource = op.strip().lower(), resource.strip()
    if not op or not resource:
        raise ValueError(f"a grant needs an operation and a resource, got {op!r}: {resource!r}")
    return f"{resource}:{op}"


def permission_strings(entries: list[Any]) -> list[str]:
    """Permission strings of grant entries (maps of op -> resource, or permission strings)."""
    out: list[str] = []
    for entry in entries:
        if isinstance(entry, dict):
            out.extend(grant_permission(op, resource) for op, resource in entry.items())
        else:
            out.append(entry.strip())
    return out


def agent_tool_names(spec: dict[str, Any]) -> list[str]:
    """Tool names of an Agent spec (wire form), whether tools are names or ``{name, ...}``."""
    names = (t.get("name", "") if isinstance(t, dict) else t for t in spec.get("tools") or [])
    return [str(n).strip() for n in names if str(n).strip()]


def agent_role_names(agent: dict[str, Any]) -> list[str]:
    """The AgentRoles bound to a (normalized) agent: ``spec.roles`` plus its generated role."""
    spec = agent["spec"]
    roles = list(spec.get("roles", []))
    if any(isinstance(t, dict) for t in spec.get("tools", [])):
        roles.append(_role_name(agent["metadata"]["name"]))
    return roles


def _role_name(agent_name: str) -> str:
    return f"{agent_name}-grants"


def _metadata(agent: dict[str, Any], name: str) -> dict[str, Any]:
    owner = agent["metadata"]["name"]
    return {
        "name": name,
        "namespace": agent["metadata"]["namespace"],
        "labels": {OWNER_LABEL: owner, GENERATED_LABEL: "true"},
    }
