"""The rule chains on their own: AgentPolicy, roles and ToolPermissions, approval binding, and
failing closed; then model and budget denials end to end in-process."""

from __future__ import annotations

import json

import pytest

from governance_support import LOOPBACK, ToolServer, apply, mock_endpoint, run_task, runtime, task
from orloj_ray.engine.runtime import LocalAgentRuntime
from orloj_ray.tools import default_tool_runner
from orloj_ray.gateway import ModelGateway
from orloj_ray.gateway.mock import MockProvider
from orloj_ray.governance import Governor, TurnGovernance, args_digest, normalize_permission
from orloj_ray.governance.governor import TOOL_RULES
from orloj_ray.store import MemoryStore

TOOL = {"metadata": {"name": "web-search"}, "spec": {"capabilities": ["web.read"], "operation_classes": ["write"]}}
ARGS = json.dumps({"input": "q3"})


def _gov(**kw) -> TurnGovernance:
    return TurnGovernance(namespace="default", task="t", system="s", **kw)


def _perm(name: str, **spec) -> dict:
    return {"name": name, "version": f"ToolPermission/{name}#v1", "spec": {"tool_ref": "web-search", **spec}}


def _check(gov: TurnGovernance, tool=TOOL, args=ARGS, **kw):
    governor = Governor(gov, agent="a", **kw)
    return governor.check_tool(1, tool, tool["metadata"]["name"], [tool["metadata"]["name"]], args), governor


def test_permission_names_normalize_as_upstream():
    assert normalize_permission(" Tool:Web-Search:Invoke ") == "tool:web_search:invoke"
    assert normalize_permission("a b/c\\d") == "ab_c_d"


def test_an_agent_without_roles_or_rules_is_ungoverned_and_roles_need_the_default_permissions():
    assert _check(_gov())[0].allowed
    role = {"name": "r", "spec": {"permissions": ["tool:web_search:invoke"]}}
    denied, _ = _check(_gov(roles=[role]))
    assert denied.code == "tool_permission_denied"
    assert denied.reason == "policy permission denied for tool=web-search required=capability:web.read"
    role["spec"]["permissions"].append("capability:web.read")
    assert _check(_gov(roles=[role]))[0].allowed


def test_missing_roles_deny_and_allowed_tools_bypass_everything():
    denied, _ = _check(_gov(missing_roles=["ghost", "absent"]))
    assert denied.reason == "policy permission denied for tool=web-search missing_roles=absent,ghost"
    approval_rule = _perm("p", operation_rules=[{"operation_class": "*", "verdict": "approval_required"}])
    assert _check(_gov(missing_roles=["ghost"], tool_permissions=[approval_rule],
                       allowed_tools=["WEB-SEARCH"]))[0].allowed


def test_match_modes_and_scoped_rules():
    held = [{"name": "r", "spec": {"permissions": ["x:read"]}}]
    any_rule = _perm("any", match_mode="any", required_permissions=["x:read", "y:read"])
    assert _check(_gov(roles=held, tool_permissions=[any_rule]))[0].allowed
    all_rule = _perm("all", required_permissions=["x:read", "y:read"])
    denied, _ = _check(_gov(roles=held, tool_permissions=[all_rule]))
    assert denied.reason == "policy permission denied for tool=web-search rule=all required=y:read"
    other_agent = _perm("scoped", apply_mode="scoped", target_agents=["someone-else"], required_permissions=["z"])
    # a rule scoped to another agent does not apply: the default permissions are required instead
    fallback, _ = _check(_gov(roles=held, tool_permissions=[other_agent]))
    assert fallback.rule == "AgentRole/default-permissions" and "required=tool:web_search:invoke" in fallback.reason


@pytest.mark.parametrize("rules,verdict", [
    ([{"operation_class": "write", "verdict": "deny"}], "deny"),
    ([{"operation_class": "*", "verdict": "approval_required"}], "approval_required"),
    ([{"operation_class": "read", "verdict": "deny"}, {"operation_class": "*", "verdict": "allow"}], "allow"),
])
def test_operation_rules_per_operation_class(rules, verdict):
    decision, _ = _check(_gov(tool_permissions=[_perm("ops", operation_rules=rules)]))
    assert decision.verdict == verdict
    if verdict == "deny":
        assert decision.reason == "policy operation denied for tool=web-search"


def test_a_missing_permission_denies_before_any_approval_rule():
    rule = _perm("both", required_permissions=["web:write"],
                 operation_rules=[{"operation_class": "*", "verdict": "approval_required"}])
    decision, governor = _check(_gov(roles=[{"name": "r", "spec": {"permissions": []}}], tool_permissions=[rule]))
    assert decision.code == "tool_permission_denied"
    assert [r["decision"] for r in governor.audit] == ["denied"]


def _approval(phase="Approved", digest=None, version="ToolPermission/ops#v1", expires=4e9, name="ta-1"):
    return {"name": name, "phase": phase, "tool": "web-search", "digest": digest or args_digest("web-search", ARGS),
            "policy_version": version, "expires_at": expires, "decided_by": "alice"}


def test_an_approval_is_bound_to_the_tool_the_arguments_the_rule_version_and_its_expiry():
    rule = _perm("ops", operation_rules=[{"operation_class": "*", "verdict": "approval_required"}])
    pending, _ = _check(_gov(tool_permissions=[rule]))
    assert pending.code == "approval_pending" and pending.policy_version == "ToolPermission/ops#v1"
    granted, governor = _check(_gov(tool_permissions=[rule], approvals=[_approval()]))
    assert granted.allowed and granted.rule == "ToolApproval/ta-1"
    # key order does not change the digest; other arguments do
    assert _check(_gov(tool_permissions=[rule], approvals=[_approval()]), args=' {"input":"q3"}')[0].allowed
    other = _check(_gov(tool_permissions=[rule], approvals=[_approval()]), args=json.dumps({"input": "all"}))[0]
    assert other.code == "approval_pending"
    changed = _check(_gov(tool_permissions=[rule], approvals=[_approval(version="ToolPermission/ops#v2")]))[0]
    assert changed.code == "approval_pending"
    late = _check(_gov(tool_permissions=[rule], approvals=[_approval(expires=1.0)]))[0]
    assert late.code == "approval_expired"
    assert _check(_gov(tool_permissions=[rule], approvals=[_approval(phase="Denied")]))[0].code == "approval_denied"


def test_the_dialect_require_approval_asks_for_calls_that_use_the_grant():
    policy = {"name": "a-governance", "namespace": "default", "version": "AgentPolicy/a-governance#1",
              "spec": {"apply_mode": "scoped", "target_agents": ["a"], "require_approval": ["issue_tracker:write"]}}
    role = {"name": "a-grants", "spec": {"permissions": ["tool:web-search:invoke", "capability:web.read",
                                                          "issue_tracker:write"]}}
    asks = _gov(policies=[policy], roles=[role], tool_grants={"web-search": ["issue_tracker:write"]})
    assert _check(asks)[0].code == "approval_pending"
    reads = _gov(policies=[policy], roles=[role], tool_grants={"web-search": ["compliance_docs:read"]})
    assert _check(reads)[0].allowed
    other_ns = {**policy, "namespace": "team-b"}
    assert _check(_gov(policies=[other_ns], roles=[role], tool_grants={"web-search": ["issue_tracker:write"]}))[0].allowed


def test_a_raising_rule_denies_the_call():
    def broken(call):
        raise RuntimeError("secret=hunter2 exploded")

    decision, governor = _check(_gov(), tool_rules=(*TOOL_RULES[:2], broken, *TOOL_RULES[2:]))
    assert not decision.allowed and decision.code == "governance_error" and decision.rule == "rule/broken"
    assert "hunter2" not in json.dumps(governor.audit)
    assert governor.audit[-1]["decision"] == "denied"


def test_malformed_governance_data_denies_instead_of_allowing():
    bad_policy = {"name": "p", "namespace": "default", "version": "x",
                  "spec": {"apply_mode": "global", "blocked_tools": 5}}
    decision, _ = _check(_gov(policies=[bad_policy]))
    assert decision.code == "governance_error" and decision.rule == "rule/blocked_tool"
    bad_rule = _perm("p", operation_rules=[{"operation_class": "*", "verdict": "maybe"}])
    assert _check(_gov(tool_permissions=[bad_rule]))[0].code == "governance_error"
    model = Governor(_gov(policies=[{"name": "p", "namespace": "default", "spec": {"apply_mode": "global",
                                                                                     "allowed_models": 7}}]), agent="a")
    assert model.check_model(1, "gpt-4o", [], 0, 10).code == "governance_error"


# -- end to end, in-process ----------------------------------------------------------------

def _agent(name: str, **spec) -> dict:
    return {"kind": "Agent", "metadata": {"name": name}, "spec": {"model_ref": "openai-default", **spec}}


def _system(agents: list[str]) -> dict:
    graph = {a: {"next": b} for a, b in zip(agents, agents[1:])}
    return {"kind": "AgentSystem", "metadata": {"name": "sys"}, "spec": {"agents": agents, "graph": graph}}


class CountingMock(MockProvider):
    def __init__(self):
        self.calls = 0

    async def complete(self, endpoint, request):
        self.calls += 1
        return await super().complete(endpoint, request)


@pytest.mark.parametrize("parallel", [None, 1])
async def test_a_disallowed_model_is_denied_before_the_call(parallel):
    store = MemoryStore()
    mock = CountingMock()
    await apply(store, [mock_endpoint(), _agent("a"), _system(["a"]),
                        {"kind": "AgentPolicy", "metadata": {"name": "models"},
                         "spec": {"apply_mode": "scoped", "target_systems": ["sys"], "allowed_models": ["gpt-4o-mini"]}}])
    done = await run_task(store, task("t", "sys"), parallel=parallel,
                          runtime_=runtime(gateway=ModelGateway({"mock": mock})))
    status = done["status"]
    assert status["errorCode"] == "model_not_allowed" and mock.calls == 0
    assert 'policy "models" disallows model "gpt-4o" (model_ref="openai-default") for agent "a"' in status["lastError"]
    assert any(r["type"] == "policy_violation" and r["error_code"] == "model_not_allowed" for r in status["trace"])


class PolicyAfterFirstTurn(LocalAgentRuntime):
    """Applies a policy to the store as soon as agent ``a1``'s turn is done (as a user would)."""

    def __init__(self, store, policy: dict, **kwargs):
        super().__init__(tools=default_tool_runner(LOOPBACK), **kwargs)
        self.store, self.policy = store, policy

    async def run_turn(self, request):
        result = await super().run_turn(request)
        if request.agent["metadata"]["name"] == "a1":
            await apply(self.store, [self.policy])
        return result


async def test_a_policy_applied_while_a_task_runs_governs_its_next_turn():
    """The engine reads configuration from a cache; it must still see a policy applied a moment ago."""
    store = MemoryStore()
    mock = CountingMock()
    await apply(store, [mock_endpoint(), _agent("a1"), _agent("a2"), _system(["a1", "a2"])])
    policy = {"kind": "AgentPolicy", "metadata": {"name": "models"},
              "spec": {"apply_mode": "global", "allowed_models": ["gpt-4o-mini"]}}
    done = await run_task(store, task("t", "sys"),
                          runtime_=PolicyAfterFirstTurn(store, policy, gateway=ModelGateway({"mock": mock})))
    status = done["status"]
    assert status["errorCode"] == "model_not_allowed", status.get("lastError")
    assert mock.calls == 1  # a1 ran before the policy existed; a2 was denied before its call
    assert 'for agent "a2"' in status["lastError"]


async def test_a_blocked_declared_tool_stops_the_agent():
    store = MemoryStore()
    with ToolServer().running() as server:
        await apply(store, [mock_endpoint(), _agent("a", tools=["filesystem_delete"]), _system(["a"]),
                            {"kind": "Tool", "metadata": {"name": "filesystem_delete"}, "spec": {"type": "http"}},
                            {"kind": "AgentPolicy", "metadata": {"name": "cost-policy"},
                             "spec": {"apply_mode": "global", "blocked_tools": ["filesystem_delete"]}}],
                    tool_url=server.url)
        done = await run_task(store, task("t", "sys"))
    assert done["status"]["errorCode"] == "tool_blocked" and server.calls == []
    assert 'policy "cost-policy" blocks tool "filesystem_delete" for agent "a"' in done["status"]["lastError"]


@pytest.mark.parametrize("parallel", [None, 1])
async def test_max_tokens_per_run_stops_before_the_over_budget_call(parallel):
    store = MemoryStore()
    mock = CountingMock()
    # the first agent's call costs ~34 tokens; the second's prompt alone (with the handoff) ~60
    await apply(store, [mock_endpoint(), _agent("a1", prompt="First."), _agent("a2", prompt="Second."),
                        _system(["a1", "a2"]),
                        {"kind": "AgentPolicy", "metadata": {"name": "budget"},
                         "spec": {"apply_mode": "scoped", "target_tasks": ["t"], "max_tokens_per_run": 60}}])
    done = await run_task(store, task("t", "sys"), parallel=parallel,
                          runtime_=runtime(gateway=ModelGateway({"mock": mock})))
    status = done["status"]
    assert status["errorCode"] == "token_budget_exceeded", status.get("lastError")
    assert "token budget exceeded" in status["lastError"] and "budget=60" in status["lastError"]
    assert mock.calls == 1  # the over-budget call was never made
    used = int(status["output"]["tokens_used_total"])
    assert 0 < used <= 60
    (denied,) = await store.list_audit(code="token_budget_exceeded")
    assert denied["agent"] == "a2" and denied["rule"] == "AgentPolicy/budget"


async def test_an_mcp_synced_tool_is_governed_like_any_tool():
    store = MemoryStore()
    mcp_tool = {"kind": "Tool", "metadata": {"name": "everything-echo"},
                "spec": {"type": "mcp", "mcp_server_ref": "everything", "mcp_tool_name": "echo"}}
    await apply(store, [mock_endpoint(), mcp_tool, _agent("a", tools=["everything-echo"], roles=["reader"]),
                        {"kind": "AgentRole", "metadata": {"name": "reader"}, "spec": {"permissions": ["x:read"]}},
                        _system(["a"])])
    done = await run_task(store, task("t", "sys", "call everything-echo"))
    assert done["status"]["errorCode"] == "tool_permission_denied"
    assert "required=tool:everything_echo:invoke" in done["status"]["lastError"]


def test_built_in_memory_tools_need_no_role_permission_but_can_still_be_blocked():
    memory_tool = {"metadata": {"name": "memory.write"}, "spec": {"type": "memory"}}
    role = {"name": "r", "spec": {"permissions": ["tool:web_search:invoke"]}}
    assert _check(_gov(roles=[role]), tool=memory_tool)[0].allowed  # roles govern the agent's other tools
    blocking = {"name": "no-writes", "version": "AgentPolicy/no-writes#v1", "spec": {"apply_mode": "global", "blocked_tools": ["memory.write"]}}
    denied, _ = _check(_gov(roles=[role], policies=[blocking]), tool=memory_tool)
    assert denied.code == "tool_blocked"
