// The 15 kinds (orloj_ray/resources/kinds.py): REST collection, kind, and what the API offers.

export const KINDS = [
  { plural: "agents", kind: "Agent", watch: true },
  { plural: "agent-systems", kind: "AgentSystem" },
  { plural: "model-endpoints", kind: "ModelEndpoint" },
  { plural: "tools", kind: "Tool" },
  { plural: "secrets", kind: "Secret", noEdit: "Secret values are masked here: create the Secret again to change it." },
  { plural: "memories", kind: "Memory" },
  { plural: "agent-policies", kind: "AgentPolicy" },
  { plural: "agent-roles", kind: "AgentRole" },
  { plural: "tool-permissions", kind: "ToolPermission" },
  { plural: "tool-approvals", kind: "ToolApproval", noEdit: "Approvals are decided, not edited: approve or deny them." },
  { plural: "tasks", kind: "Task", watch: true },
  { plural: "task-schedules", kind: "TaskSchedule", watch: true },
  { plural: "task-webhooks", kind: "TaskWebhook", watch: true },
  { plural: "workers", kind: "Worker" },
  { plural: "mcp-servers", kind: "McpServer", admin: true, noEdit: "MCP servers are replaced by applying them again (no PUT)." },
];

export const BY_PLURAL = Object.fromEntries(KINDS.map((k) => [k.plural, k]));

/** The role a change of this kind needs (serve/auth.py ROUTE_ROLES). */
export function writeRole(info) { return info.admin ? "admin" : "writer"; }

/** A starting manifest for the create form. */
export function template(info, namespace) {
  return `apiVersion: orloj.dev/v1
kind: ${info.kind}
metadata:
  name: my-${info.kind.toLowerCase()}
  namespace: ${namespace || "default"}
spec: {}
`;
}
