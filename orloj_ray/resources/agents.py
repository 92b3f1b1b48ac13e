"""Agent and AgentSystem.

Agent accepts upstream's form (``model_ref``, ``tools: [name, ...]``) and the announcement
dialect: ``model`` (served by the namespace's default ModelEndpoint), tools written as
``{name, permissions: [{read: compliance_docs}, ...]}`` and a ``governance`` block. The dialect
fields are stored as written; ``dialect.expand_agent`` derives the AgentRole and AgentPolicy
they imply, and ``dialect.upstream_view`` is how the API shows such an agent to upstream
clients (``model_ref``, tool names, the generated role, the grants beside in ``tool_grants``).
Normalizing that view gives back the stored agent. See docs/compatibility.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from orloj_ray.resources.base import (
    MAX_COUNT,
    MAX_REPLICAS,
    MAX_TOKENS,
    Bool,
    Int,
    Spec,
    Str,
    Wire,
    bounded,
    choice,
    quote,
    report,
    unique,
)
from orloj_ray.resources.durations import check_duration, parse_duration
from orloj_ray.resources.envelope import Metadata, Resource
from orloj_ray.resources.tasks import TaskRequirements

MEMORY_OPERATIONS = ("read", "write", "search", "list", "ingest")
DERIVED_ANNOTATION = "orloj.dev/derived"
"""Set by ``dialect.upstream_view`` on what it filled in (``spec.model_ref``), so that writing
the view back does not pin the agent to the endpoint that was the default when it was read."""
JOIN_MODES = ("wait_for_all", "quorum")
JOIN_FAILURE_MODES = ("deadletter", "skip", "continue_partial")


def _shape(value: Any) -> str | None:
    if isinstance(value, (dict, BaseModel)):
        return "~map"
    return None if isinstance(value, list) else "~text"


_STRING_OR_MAP = Discriminator(_shape, custom_error_type="string_or_map_type",
                               custom_error_message="expected a string or a map")


# A grant, written `{read: compliance_docs}` (several pairs allowed) or as a permission string.
PermissionEntry = Annotated[
    Union[Annotated[Str, Tag("~text")], Annotated[dict[Str, Str], Tag("~map")]],
    _STRING_OR_MAP,
]


def _check_grants(entries: list[Any], path: str) -> None:
    for i, entry in enumerate(entries):
        bad = not entry.strip() if isinstance(entry, str) else (
            not entry or any(not op.strip() or not res.strip() for op, res in entry.items())
        )
        if bad:
            report(f"{path}[{i}]", f"{path}[{i}]: expected a grant like {{read: compliance_docs}} "
                                   "or a permission string")


class AgentTool(Wire):
    """A tool written as an object (announcement dialect)."""

    KEEP: ClassVar[frozenset[str]] = frozenset({"name"})

    name: Str = ""
    permissions: list[PermissionEntry] = []


ToolEntry = Annotated[
    Union[Annotated[Str, Tag("~text")], Annotated[AgentTool, Tag("~map")]],
    _STRING_OR_MAP,
]


class Governance(Wire):
    """``spec.governance`` (announcement dialect). Unknown keys are errors: a misspelt
    governance key must not silently switch a control off."""

    model_config = ConfigDict(extra="forbid")
    CAMEL: ClassVar[frozenset[str]] = frozenset({"max_tokens_per_minute", "require_approval", "audit_log"})

    max_tokens_per_minute: Int | None = Field(None, le=MAX_TOKENS)
    require_approval: list[PermissionEntry] = []
    audit_log: Bool | None = None


class AgentMemory(Wire):
    ref: Str = ""
    type: Str = ""
    provider: Str = ""
    allow: list[Str] = []


class AgentExecution(Wire):
    profile: Str = ""
    tool_sequence: list[Str] = []
    required_output_markers: list[Str] = []
    duplicate_tool_call_policy: Str = ""
    on_contract_violation: Str = ""
    tool_use_behavior: Str = ""


class AgentLimits(Wire):
    max_steps: Int = bounded(0, 0, 1000)
    """Model calls per run; 0 = 10 (upstream's default)."""
    timeout: Str = ""


class AgentAutoscaling(Wire):
    min_replicas: Int = bounded(1, 0, MAX_REPLICAS)
    max_replicas: Int = bounded(1, 0, MAX_REPLICAS)
    target_inflight: Int = bounded(4, 0, MAX_COUNT)
    scale_down_after: Str = ""
    """Idle time before the newest replica above min_replicas is removed (a duration; default 60s)."""


class AgentSpec(Spec):
    KEEP: ClassVar[frozenset[str]] = frozenset({"prompt"})

    model_ref: Str = ""
    model: Str = ""
    prompt: Str = ""
    tools: list[ToolEntry] = []
    tool_grants: list[AgentTool] = []
    """Write-only: the tools written as objects, as ``dialect.upstream_view`` shows them beside
    ``tools`` (names); folded back into ``tools`` by ``normalize``."""
    allowed_tools: list[Str] = []
    roles: list[Str] = []
    memory: AgentMemory = Field(default_factory=AgentMemory)
    execution: AgentExecution = Field(default_factory=AgentExecution)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    governance: Governance | None = None
    requirements: TaskRequirements | None = None
    """orloj-ray extension: where this agent's actor may run (region, gpu, model), merged with
    the task's requirements (the agent's fields win)."""
    replicas: Int = bounded(0, 0, MAX_REPLICAS)
    """orloj-ray extension: a fixed number of actors serving this agent (0 = one)."""
    autoscaling: AgentAutoscaling | None = None
    """orloj-ray extension: scale between min and max replicas on mailbox depth."""

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        self._fold_upstream_view(meta)
        self.model_ref = self.model_ref.strip()
        self.model = self.model.strip()
        if not self.model_ref and not self.model:
            report("spec.model_ref", "spec.model_ref is required")
        # Upstream's YAML reader drops the trailing newline(s) of `prompt: |` blocks.
        self.prompt = self.prompt.rstrip("\n")
        self._normalize_tools()
        self.allowed_tools = unique(self.allowed_tools)
        self.roles = unique(self.roles)
        if any(isinstance(t, AgentTool) for t in self.tools):  # the generated role is implied, not listed
            self.roles = [r for r in self.roles if r.lower() != f"{meta.name}-grants".lower()]
        self._normalize_memory()
        self._normalize_execution()
        self._normalize_scaling()
        if self.limits.max_steps <= 0:
            self.limits.max_steps = 10
        self.limits.timeout = self.limits.timeout.strip()
        if self.limits.timeout:
            check_duration(self.limits.timeout, "spec.limits.timeout", positive=True)
        if self.governance is not None:
            self._check_governance(self.governance)

    def _fold_upstream_view(self, meta: Metadata) -> None:
        """Undo ``dialect.upstream_view``: grants back into ``tools``, a derived ``model_ref``
        dropped (the generated role is dropped from ``roles`` after the tools are normalized)."""
        derived = meta.annotations.pop(DERIVED_ANNOTATION, "")
        if "spec.model_ref" in derived.split(",") and self.model.strip():
            self.model_ref = ""
        grants = {g.name.strip().lower(): g for g in self.tool_grants if g.name.strip()}
        self.tool_grants = []
        if not grants:
            return
        tools: list[str | AgentTool] = []
        for tool in self.tools:
            key = (tool if isinstance(tool, str) else tool.name).strip().lower()
            tools.append(grants.pop(key, tool))
        self.tools = tools + list(grants.values())

    def _normalize_tools(self) -> None:
        tools: list[str | AgentTool] = []
        for i, tool in enumerate(self.tools):
            if isinstance(tool, str):
                if tool.strip():
                    tools.append(tool.strip())
                continue
            tool.name = tool.name.strip()
            if not tool.name:
                report(f"spec.tools[{i}].name", f"spec.tools[{i}].name is required")
                continue
            _check_grants(tool.permissions, f"spec.tools[{i}].permissions")
            tools.append(tool)
        self.tools = tools

    def _normalize_memory(self) -> None:
        memory = self.memory
        memory.ref, memory.type, memory.provider = memory.ref.strip(), memory.type.strip(), memory.provider.strip()
        allow: list[str] = []
        for i, raw in enumerate(memory.allow):
            op = raw.strip().lower().removeprefix("memory.")
            if op not in MEMORY_OPERATIONS:
                report(f"spec.memory.allow[{i}]", f"invalid spec.memory.allow: invalid memory operation "
                       f"{quote(raw.strip())}: expected read, write, search, list, or ingest")
                continue
            if op not in allow:
                allow.append(op)
        memory.allow = allow
        if allow and not memory.ref:
            report("spec.memory.ref", "spec.memory.ref is required when spec.memory.allow is set")

    def _normalize_scaling(self) -> None:
        auto = self.autoscaling
        if auto is None:
            return
        if self.replicas:
            report("spec.autoscaling", "set spec.replicas or spec.autoscaling, not both")
        if auto.min_replicas < 1 or auto.max_replicas < auto.min_replicas or auto.target_inflight < 1:
            report("spec.autoscaling", "spec.autoscaling needs 1 <= min_replicas <= max_replicas and "
                                              f"target_inflight >= 1, got {auto.min_replicas}..{auto.max_replicas} "
                                              f"target {auto.target_inflight}")
        if auto.scale_down_after:
            try:
                if parse_duration(auto.scale_down_after) <= timedelta(0):
                    raise ValueError("not positive")
            except ValueError:
                report("spec.autoscaling.scale_down_after",
                       f'spec.autoscaling.scale_down_after "{auto.scale_down_after}" is not a positive duration '
                       f'(use e.g. "90s" or "5m")')

    def _normalize_execution(self) -> None:
        ex = self.execution

        def pick(name: str, allowed: tuple[str, ...]) -> str:
            value = getattr(ex, name).strip().lower()
            return choice(value, f"spec.execution.{name}", allowed, allowed[0],
                          f"invalid spec.execution.{name} {{value}}")

        ex.profile = pick("profile", ("dynamic", "contract"))
        ex.tool_sequence = unique(ex.tool_sequence)
        ex.required_output_markers = unique(ex.required_output_markers, fold_case=False)
        ex.duplicate_tool_call_policy = pick("duplicate_tool_call_policy", ("short_circuit", "deny"))
        ex.on_contract_violation = pick("on_contract_violation", ("non_retryable_error", "observe"))
        ex.tool_use_behavior = pick("tool_use_behavior", ("run_llm_again", "stop_on_first_tool"))
        if ex.profile == "contract" and not ex.tool_sequence:
            report("spec.execution.tool_sequence",
                   "spec.execution.tool_sequence is required when spec.execution.profile=contract")

    @staticmethod
    def _check_governance(gov: Governance) -> None:
        if gov.max_tokens_per_minute is not None and gov.max_tokens_per_minute <= 0:
            field = "spec.governance.maxTokensPerMinute"
            report(field, f"invalid {field} {gov.max_tokens_per_minute}: expected > 0")
        _check_grants(gov.require_approval, "spec.governance.requireApproval")


class Agent(Resource):
    spec: AgentSpec = Field(default_factory=AgentSpec)


class GraphRoute(Wire):
    to: Str = ""
    labels: dict[Str, Str] = {}
    policy: dict[Str, Str] = {}


class GraphJoin(Wire):
    """Stored as given; checked when a Task runs (upstream ``validateGraph``)."""

    mode: Str = ""
    quorum_count: Int = bounded(0, 0, MAX_COUNT)
    quorum_percent: Int = bounded(0, 0, 100)
    on_failure: Str = ""


class GraphNode(Wire):
    next: Str = ""
    edges: list[GraphRoute] = []
    join: GraphJoin = Field(default_factory=GraphJoin)


class AgentSystemSpec(Spec):
    agents: list[Str] = []
    graph: dict[Str, GraphNode] = {}

    def normalize(self, meta: Metadata, status: dict[str, Any], now: datetime) -> None:
        for key, node in self.graph.items():
            node.next = node.next.strip()
            for name, allowed in (("mode", JOIN_MODES), ("on_failure", JOIN_FAILURE_MODES)):
                value = getattr(node.join, name)
                if value.strip() and value.strip().lower() not in allowed:
                    report(f"spec.graph.{key}.join.{name}", f"invalid spec.graph.{key}.join.{name} {quote(value)}: "
                           f"expected {' or '.join(allowed)}")
            for route in node.edges:
                route.to = route.to.strip()
            node.edges = [route for route in node.edges if route.to]


class AgentSystem(Resource):
    spec: AgentSystemSpec = Field(default_factory=AgentSystemSpec)
