"""Resolve a Task into everything its run needs, or say precisely what is missing.

Checked in upstream's order (execution.md section 4); all problems are collected so one
failed task tells the user everything to fix at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orloj_ray.errors import NotFound
from orloj_ray.gateway import KEYLESS_PROVIDERS, PROVIDERS, Endpoint, canonical_provider, env_api_key, env_key_name
from orloj_ray.graph import Graph, GraphError
from orloj_ray.mcp import MCP_CONNECTION_KEY, McpConfigError, connection_from_server
from orloj_ray.memory import MemoryBackendError, MemoryRef, memory_ref, memory_tools
from orloj_ray.resources import agent_tool_names
from orloj_ray.secrets import resolve_secret
from orloj_ray.store import Store
from orloj_ray.tenancy import not_shared, shared_with
from orloj_ray.tools import ToolError, auth_of, resolve_auth, with_auth

DEFAULT_ENDPOINT_LABEL = "orloj.dev/default-model-endpoint"

CONFIG_KINDS = ("AgentSystem", "Agent", "ModelEndpoint", "Tool", "McpServer", "Memory",
                "AgentRole", "AgentPolicy", "ToolPermission", "ToolApproval")
"""What a task's resolution and its turns' governance read: the engine reads these through a
``CachedReads`` (Secrets, whose events are redacted, are always read from the store)."""


class TaskInvalid(Exception):
    """The task cannot run as declared; ``problems`` are user-facing messages."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ResolvedTask:
    system: dict
    graph: Graph
    agents: dict[str, dict] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    """Per agent name."""
    tools: dict[str, list[dict]] = field(default_factory=dict)
    """Per agent name: the Tool resources it may call."""
    secret_values: set[str] = field(default_factory=set, repr=False)
    """Every secret value resolved for the task (model keys, tool auth, MCP env and headers,
    memory passwords): the task recorder masks them in everything the task records."""


class _Secrets:
    """Resolves secret references for one task and remembers every value it hands out."""

    def __init__(self, store: Store):
        self.store = store
        self.values: set[str] = set()

    def lookup(self, namespace: str):
        async def resolve(ref: str) -> str:
            value = await resolve_secret(self.store, namespace, ref)
            self.values.add(value)
            return value

        return resolve


def _split_ref(ref: str, namespace: str) -> tuple[str, str]:
    ref = ref.strip()
    if "/" in ref:
        ns, name = ref.split("/", 1)
        return ns or namespace, name
    return namespace, ref


async def _get(store: Store, kind: str, namespace: str, name: str) -> dict | None:
    try:
        return await store.get(kind, namespace, name)
    except NotFound:
        return None


async def default_endpoint(store: Store, namespace: str) -> dict | None:
    """The namespace's default ModelEndpoint: named ``default`` or labelled as default."""
    named = await _get(store, "ModelEndpoint", namespace, "default")
    if named:
        return named
    page = await store.list("ModelEndpoint", namespace)
    for item in page.items:
        if ((item["metadata"].get("labels") or {}).get(DEFAULT_ENDPOINT_LABEL) or "").lower() == "true":
            return item
    return None


async def resolve_endpoint(store: Store, namespace: str, agent: dict, secrets: _Secrets | None = None) -> Endpoint:
    spec = agent.get("spec") or {}
    name = agent["metadata"]["name"]
    model_override = (spec.get("model") or "").strip()
    if spec.get("model_ref"):
        ns, ref = _split_ref(spec["model_ref"], namespace)
        resource = await _get(store, "ModelEndpoint", ns, ref)
        if resource is None:
            raise LookupError(f'agent "{name}" model resolution failed: model endpoint "{ref}" not found')
        if not shared_with(resource, namespace):
            raise LookupError(f'agent "{name}": {not_shared("model endpoint", resource, namespace)}')
    elif model_override:
        resource = await default_endpoint(store, namespace)
        if resource is None:
            raise LookupError(
                f'agent "{name}" sets spec.model "{model_override}" but namespace "{namespace}" has no default '
                f'ModelEndpoint: apply one named "default" (or labelled {DEFAULT_ENDPOINT_LABEL}: "true")'
            )
    else:
        raise LookupError(f'agent "{name}" must set spec.model_ref')
    espec = resource.get("spec") or {}
    provider = canonical_provider(espec.get("provider") or "")
    if provider not in PROVIDERS:
        raise LookupError(
            f'agent "{name}" model endpoint "{resource["metadata"]["name"]}": unsupported provider "{provider}" '
            f"(this server supports: {', '.join(sorted(PROVIDERS))})"
        )
    api_key = ""
    secret_ref = (espec.get("auth") or {}).get("secretRef") or ""
    if secret_ref:
        try:
            api_key = await (secrets or _Secrets(store)).lookup(resource["metadata"]["namespace"])(secret_ref)
        except LookupError as exc:
            if provider not in KEYLESS_PROVIDERS:
                raise LookupError(f'agent "{name}" model endpoint "{resource["metadata"]["name"]}": {exc}') from None
    elif provider not in KEYLESS_PROVIDERS:
        api_key = env_api_key(provider, espec.get("base_url") or "")
        if not api_key:
            env_hint = f" (or set {env_key_name(provider)} on the server)" if env_key_name(provider) else ""
            raise LookupError(f'model endpoint "{resource["metadata"]["name"]}" requires auth.secretRef{env_hint}')
    return Endpoint(
        name=resource["metadata"]["name"],
        provider=provider,
        base_url=espec.get("base_url") or "",
        model=model_override or espec.get("default_model") or "",
        options=dict(espec.get("options") or {}),
        api_key=api_key,
    )


async def _with_mcp_connection(store: Store, tool: dict, secrets: _Secrets | None = None) -> dict:
    """An ``mcp`` tool plus its server's connection under ``MCP_CONNECTION_KEY`` (never stored);
    a missing server is reported by the call, as upstream."""
    spec = tool.get("spec") or {}
    ns = tool["metadata"]["namespace"]
    server = await _get(store, "McpServer", ns, spec.get("mcp_server_ref") or "") if spec.get("type") == "mcp" else None
    if server is None:
        return tool
    try:
        conn = await connection_from_server(server, (secrets or _Secrets(store)).lookup(ns))
    except McpConfigError as exc:
        conn = ToolError(str(exc), code="secret_resolution_failed")
    return {**tool, MCP_CONNECTION_KEY: conn}


async def resolve_memory(store: Store, memory: dict, secrets: _Secrets | None = None) -> MemoryRef:
    """A Memory with its password secret and embedding ModelEndpoint resolved."""
    ns = memory["metadata"]["namespace"]
    holder = {"metadata": {"name": f'memory {memory["metadata"]["name"]}'}}
    secrets = secrets or _Secrets(store)
    return await memory_ref(
        memory, secrets.lookup(ns),
        lambda ref: resolve_endpoint(store, ns, {**holder, "spec": {"model_ref": ref}}, secrets))


async def resolve_task(store: Store, task: dict) -> ResolvedTask:
    namespace = task["metadata"]["namespace"]
    spec = task.get("spec") or {}
    system_name = (spec.get("system") or "").strip()
    if not system_name:
        raise TaskInvalid(["spec.system is required"])
    system = await _get(store, "AgentSystem", namespace, system_name)
    if system is None:
        raise TaskInvalid([f'agentsystem "{system_name}" not found'])
    problems: list[str] = []
    try:
        graph = Graph.from_spec(system.get("spec") or {})
        graph.check_runnable(int(spec.get("max_turns") or 0))
    except GraphError as exc:
        raise TaskInvalid([f'agentsystem "{system_name}": {exc}']) from None
    resolved = ResolvedTask(system=system, graph=graph)
    secrets = _Secrets(store)
    for name in graph.agents:
        agent = await _get(store, "Agent", namespace, name)
        if agent is None:
            problems.append(f'agent "{name}" not found')
            continue
        resolved.agents[name] = agent
        aspec = agent.get("spec") or {}
        tools = []
        for tool_name in agent_tool_names(aspec):
            tool = await _get(store, "Tool", namespace, tool_name)
            if tool is None:
                problems.append(f'agent "{name}" references missing tool "{tool_name}"')
            else:  # tool auth secrets are resolved now, kept beside the resource, never stored
                tools.append(with_auth(tool, await resolve_auth(tool, secrets.lookup(tool["metadata"]["namespace"]))))
        resolved.tools[name] = [await _with_mcp_connection(store, t, secrets) for t in tools]
        for role in aspec.get("roles") or []:
            ns, role_name = _split_ref(role, namespace)
            found = await _get(store, "AgentRole", ns, role_name)
            if found is None:
                problems.append(f'agent "{name}" references missing role "{role}"')
            elif not shared_with(found, namespace):
                problems.append(f'agent "{name}": {not_shared("role", found, namespace)}')
        memory_ref = (aspec.get("memory") or {}).get("ref")
        memory = await _get(store, "Memory", namespace, memory_ref) if memory_ref else None
        if memory_ref and memory is None:
            problems.append(f'agent "{name}" references missing memory "{memory_ref}"')
        elif memory is not None:  # the built-in memory.* tools, bound to this Memory's backend
            try:
                ref = await resolve_memory(store, memory, secrets)
                resolved.tools[name] += memory_tools(ref, (aspec.get("memory") or {}).get("allow"))
            except (LookupError, MemoryBackendError) as exc:
                problems.append(f'agent "{name}" memory "{memory_ref}": {exc}')
        try:
            resolved.endpoints[name] = await resolve_endpoint(store, namespace, agent, secrets)
        except LookupError as exc:
            problems.append(str(exc))
    if problems:
        raise TaskInvalid(problems)
    resolved.secret_values = secrets.values | {e.api_key for e in resolved.endpoints.values() if e.api_key}
    for tools in resolved.tools.values():  # the basic-auth password alone, too
        resolved.secret_values.update(v for t in tools if (auth := auth_of(t)) for v in auth.secret_values())
    return resolved
