"""The 15 resource kinds of ``orloj.dev/v1``: names, REST collections and CLI aliases."""

from __future__ import annotations

from dataclasses import dataclass

API_VERSION = "orloj.dev/v1"


@dataclass(frozen=True)
class KindInfo:
    kind: str
    """Canonical kind name, e.g. ``AgentSystem``."""
    plural: str
    """REST collection under ``/v1/``, e.g. ``agent-systems``."""
    aliases: tuple[str, ...]
    """Names the CLI accepts for it (the plural and singular forms included)."""
    status_route: bool = True
    """Whether ``/v1/<plural>/{name}/status`` exists."""
    watchable: bool = False
    """Whether ``/v1/<plural>/watch`` exists."""
    default_phase: str = "Pending"

    @property
    def lower(self) -> str:
        return self.kind.lower()


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Agent", "agents", ("agents", "agent"), watchable=True),
    KindInfo("AgentSystem", "agent-systems", ("agent-systems", "agentsystems", "agentsystem", "agent-system")),
    KindInfo("ModelEndpoint", "model-endpoints", ("model-endpoints", "modelendpoints", "modelendpoint", "model-endpoint")),
    KindInfo("Tool", "tools", ("tools", "tool")),
    KindInfo("Secret", "secrets", ("secrets", "secret"), status_route=False),
    KindInfo("Memory", "memories", ("memories", "memory")),
    KindInfo("AgentPolicy", "agent-policies",
             ("agent-policies", "agentpolicies", "agentpolicy", "agent-policy", "policies", "policy"),
             default_phase="Ready"),
    KindInfo("AgentRole", "agent-roles", ("agent-roles", "agentroles", "agentrole", "agent-role", "roles", "role"),
             status_route=False, default_phase="Ready"),
    KindInfo("ToolPermission", "tool-permissions",
             ("tool-permissions", "toolpermissions", "toolpermission", "tool-permission"),
             status_route=False, default_phase="Ready"),
    KindInfo("ToolApproval", "tool-approvals", ("tool-approvals", "tool-approval", "toolapprovals", "toolapproval"),
             status_route=False),
    KindInfo("Task", "tasks", ("tasks", "task"), watchable=True),
    KindInfo("TaskSchedule", "task-schedules", ("task-schedules", "taskschedules", "taskschedule", "task-schedule"),
             watchable=True),
    KindInfo("TaskWebhook", "task-webhooks", ("task-webhooks", "taskwebhooks", "taskwebhook", "task-webhook"),
             watchable=True),
    KindInfo("Worker", "workers", ("workers", "worker")),
    KindInfo("McpServer", "mcp-servers", ("mcp-servers", "mcpservers", "mcpserver", "mcp-server"),
             status_route=False),
)

BY_KIND: dict[str, KindInfo] = {k.kind.lower(): k for k in KINDS}
BY_PLURAL: dict[str, KindInfo] = {k.plural: k for k in KINDS}
BY_ALIAS: dict[str, KindInfo] = {a: k for k in KINDS for a in (*k.aliases, k.kind.lower())}


def kind_info(name: str) -> KindInfo:
    """Look a kind up by kind name (any case), REST collection or CLI alias."""
    key = name.strip().lower()
    info = BY_KIND.get(key) or BY_PLURAL.get(key) or BY_ALIAS.get(key)
    if info is None:
        from orloj_ray.errors import InvalidResource

        known = ", ".join(k.plural for k in KINDS)
        raise InvalidResource(f"unknown resource kind {name!r}: expected one of {known}", field="kind")
    return info
