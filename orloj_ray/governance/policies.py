"""AgentPolicy: which policies apply to a turn, and what they say about models, tools and tokens.

Matching follows upstream's ``policyAppliesTo`` (governance.md section 2) with three choices of
ours: a scoped policy governs only its own namespace (upstream matches target names across
namespaces), the ``target_agents`` extension (written by the announcement dialect) matches
the agent, and ``apply_mode: global`` applies in every namespace only when an admin wrote it;
written by another token it is ``confined`` to its own (``orloj_ray.tenancy``).
"""

from __future__ import annotations

from orloj_ray.governance.context import TurnGovernance


def _names(values) -> set[str]:
    if values is None:
        return set()
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise TypeError(f"expected a list of names, got {type(values).__name__}")
    return {str(v).strip().lower() for v in values if str(v).strip()}


def applies(policy: dict, gov: TurnGovernance, agent: str) -> bool:
    spec = policy.get("spec") or {}
    mode = str(spec.get("apply_mode") or "scoped").strip().lower()
    if mode == "global":
        return not policy.get("confined") or (policy.get("namespace") or "default") == gov.namespace
    if mode != "scoped" or (policy.get("namespace") or "default") != gov.namespace:
        return False
    return (gov.task.lower() in _names(spec.get("target_tasks"))
            or gov.system.lower() in _names(spec.get("target_systems"))
            or agent.lower() in _names(spec.get("target_agents")))


def matched(gov: TurnGovernance, agent: str) -> list[dict]:
    return [p for p in gov.policies if applies(p, gov, agent)]


def _smallest_positive(policies: list[dict], field: str) -> tuple[int, dict | None]:
    best, owner = 0, None
    for policy in policies:
        value = int((policy.get("spec") or {}).get(field) or 0)
        if value > 0 and (best == 0 or value < best):
            best, owner = value, policy
    return best, owner


def token_budget(policies: list[dict]) -> tuple[int, dict | None]:
    """``max_tokens_per_run``: the smallest positive value among matched policies (0 = none)."""
    return _smallest_positive(policies, "max_tokens_per_run")


def rate_limit(policies: list[dict]) -> tuple[int, dict | None]:
    """``max_tokens_per_minute`` (extension): the smallest positive value (0 = none)."""
    return _smallest_positive(policies, "max_tokens_per_minute")


def audit_enabled(policies: list[dict]) -> bool:
    return any(bool((p.get("spec") or {}).get("audit_log")) for p in policies)


def approval_grants(policies: list[dict]) -> list[tuple[str, dict]]:
    """``require_approval`` (extension) entries: (normalized permission, policy)."""
    from orloj_ray.governance.permissions import normalize_permission

    out = []
    for policy in policies:
        for entry in (policy.get("spec") or {}).get("require_approval") or []:
            token = normalize_permission(entry)
            if token:
                out.append((token, policy))
    return out
