"""AgentRole + ToolPermission: may this agent call this tool (governance.md section 3)?

Upstream's ``AgentToolAuthorizer``, evaluated per call: ``allowed_tools`` bypass, missing
roles deny, then the ToolPermission rules for the tool (or the default permissions when none
exist and the agent has roles), then ``operation_rules`` per operation class. A missing
permission denies before any approval rule is looked at. Beyond upstream: a rule that has
``operation_rules`` but no ``required_permissions`` still has its operation rules evaluated.
"""

from __future__ import annotations

from orloj_ray.governance.context import TurnGovernance
from orloj_ray.governance.decisions import ALLOW, APPROVAL, DENY, TOOL_PERMISSION_DENIED, Decision

_VERDICT_RANK = {ALLOW: 0, APPROVAL: 1, DENY: 2}


def normalize_permission(value) -> str:
    """Lower-case, spaces removed, ``/``, ``\\`` and ``-`` become ``_`` (upstream's rule)."""
    value = str(value).strip().lower()
    for old, new in ((" ", ""), ("/", "_"), ("\\", "_"), ("-", "_")):
        value = value.replace(old, new)
    return value


def _token(value) -> str:
    value = str(value).strip().lower()
    for old in (" ", "/", "\\", "-"):
        value = value.replace(old, "_")
    return value.strip("_:")


def default_permissions(tool: str, tool_spec: dict, action: str = "invoke") -> list[str]:
    """``tool:<tool>:<action>`` plus ``capability:<c>`` for each of the Tool's capabilities."""
    out = [normalize_permission(f"tool:{_token(tool)}:{_token(action) or 'invoke'}")]
    out += [normalize_permission(f"capability:{_token(c)}") for c in tool_spec.get("capabilities") or [] if _token(c)]
    return list(dict.fromkeys(out))


def operation_classes(tool_spec: dict) -> list[str]:
    ops = [str(o).strip().lower() for o in tool_spec.get("operation_classes") or [] if str(o).strip()]
    if ops:
        return ops
    return ["write"] if str(tool_spec.get("risk_level") or "").lower() in ("high", "critical") else ["read"]


def granted(gov: TurnGovernance) -> set[str]:
    perms = set()
    for role in gov.roles:
        for p in (role.get("spec") or {}).get("permissions") or []:
            if normalize_permission(p):
                perms.add(normalize_permission(p))
    return perms


def rule_applies(rule: dict, agent: str) -> bool:
    spec = rule.get("spec") or {}
    mode = str(spec.get("apply_mode") or "global").strip().lower()
    if mode == "global":
        return True
    return mode == "scoped" and agent.lower() in {str(t).strip().lower() for t in spec.get("target_agents") or []}


def rules_for(gov: TurnGovernance, agent: str, tool: str) -> list[dict]:
    key = tool.strip().lower()
    return [r for r in gov.tool_permissions
            if str((r.get("spec") or {}).get("tool_ref") or r.get("name") or "").strip().lower() == key
            and rule_applies(r, agent)]


def required_by_rules(gov: TurnGovernance, agent: str, tool: str, tool_spec: dict) -> list[str]:
    """Every permission the call needs (what it "uses"), for approval-by-grant checks."""
    rules = rules_for(gov, agent, tool)
    if not rules:
        return default_permissions(tool, tool_spec) if gov.has_roles else []
    out = []
    for rule in rules:
        spec = rule.get("spec") or {}
        out += [normalize_permission(p) for p in spec.get("required_permissions") or []]
    return list(dict.fromkeys(p for p in out if p))


def authorize(gov: TurnGovernance, agent: str, tool: str, tool_spec: dict) -> Decision:
    """Upstream's evaluation order; the first decisive step wins."""
    if tool.strip().lower() in {str(t).strip().lower() for t in gov.allowed_tools}:
        return Decision(ALLOW, rule="Agent/allowed_tools", reason=f"tool={tool} in allowed_tools", final=True)
    if gov.missing_roles:
        missing = ",".join(sorted(gov.missing_roles))
        return Decision.deny(TOOL_PERMISSION_DENIED,
                             f"policy permission denied for tool={tool} missing_roles={missing}", "AgentRole/missing")
    held = granted(gov)
    rules = rules_for(gov, agent, tool)
    if not rules:
        if not gov.has_roles:
            return Decision.allow("ungoverned", "agent has no roles and no ToolPermission names the tool")
        missing = [p for p in default_permissions(tool, tool_spec) if p not in held]
        if missing:
            return Decision.deny(TOOL_PERMISSION_DENIED,
                                 f"policy permission denied for tool={tool} required={','.join(missing)}",
                                 "AgentRole/default-permissions")
        return Decision.allow("AgentRole/default-permissions", f"tool={tool} default permissions held")
    verdict, deciding = ALLOW, None
    ops = operation_classes(tool_spec)
    for rule in rules:
        spec = rule.get("spec") or {}
        name = rule.get("name") or ""
        op_rules = spec.get("operation_rules") or []
        required = [normalize_permission(p) for p in spec.get("required_permissions") or [] if normalize_permission(p)]
        if not required and not op_rules:
            required = default_permissions(tool, tool_spec, spec.get("action") or "invoke")
        required = list(dict.fromkeys(required))
        if required:
            if str(spec.get("match_mode") or "all").strip().lower() == "any":
                if not any(p in held for p in required):
                    return Decision.deny(
                        TOOL_PERMISSION_DENIED,
                        f"policy permission denied for tool={tool} rule={name} required_any={','.join(required)}",
                        f"ToolPermission/{name}")
            else:
                missing = [p for p in required if p not in held]
                if missing:
                    return Decision.deny(
                        TOOL_PERMISSION_DENIED,
                        f"policy permission denied for tool={tool} rule={name} required={','.join(missing)}",
                        f"ToolPermission/{name}")
        for op in ops:
            chosen = _operation_verdict(op_rules, op)
            if _VERDICT_RANK[chosen] > _VERDICT_RANK[verdict]:
                verdict, deciding = chosen, rule
    if verdict == DENY:
        return Decision.deny(TOOL_PERMISSION_DENIED, f"policy operation denied for tool={tool}",
                             f"ToolPermission/{deciding['name']}")
    if verdict == APPROVAL:
        return Decision.approval(f"approval required for tool={tool}", f"ToolPermission/{deciding['name']}",
                                 deciding.get("version") or "")
    return Decision.allow(f"ToolPermission/{rules[0].get('name')}", f"tool={tool} permitted")


def _operation_verdict(op_rules: list, op: str) -> str:
    exact = star = None
    for item in op_rules:
        cls = str(item.get("operation_class") or "*").strip().lower()
        verdict = str(item.get("verdict") or "allow").strip().lower()
        if verdict not in _VERDICT_RANK:
            raise ValueError(f"unknown operation rule verdict {verdict!r}")
        if cls == op and exact is None:
            exact = verdict
        elif cls == "*" and star is None:
            star = verdict
    return exact or star or ALLOW
